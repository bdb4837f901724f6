"""The two workloads, run on the same client code against either server.

- unpaced: every stream sends as fast as its window allows (at most `window`
  tokens not yet received by its IDE), so the relay, not the client's send
  queue, sets the pace; received events/s are counted over a fixed interval
  after a warm-up, with the server process's CPU time over the same interval.
- paced: every stream sends `rate` tokens/s (phases spread over one period);
  the IDE computes each token's latency from the send time it carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from dataclasses import dataclass
from time import perf_counter

from bench.relay.clients import Stream
from bench.relay.servers import ServerProcess


@dataclass
class Throughput:
    """Received events/s at the IDEs, and the server's CPU over the same interval."""

    events_per_s: float
    cpu_us_per_event: float
    cpu_share: float


@dataclass
class Latency:
    """Send → IDE latency percentiles (ms) of the paced workload."""

    p50_ms: float
    p99_ms: float
    max_ms: float
    samples: int
    lost: int
    cpu_share: float


async def _pump(s: Stream, stop_at: float) -> None:
    while perf_counter() < stop_at:
        if s.sent - s.received >= s.window:
            s.space.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await s.space.wait()
            continue
        await s.send()


async def drain(streams: list[Stream], timeout: float = 10) -> int:
    """Wait until every sent token arrived (or `timeout` s); returns how many did not."""
    for _ in range(int(timeout / 0.01)):
        if all(s.received >= s.sent for s in streams):
            break
        await asyncio.sleep(0.01)
    return sum(s.sent - s.received for s in streams)


def check_connected(streams: list[Stream]) -> None:
    """Fail clearly if a socket dropped (e.g. an overloaded machine missed a ping)."""
    dropped = sum(not (s.drone.connected and s.ide.connected) for s in streams)
    if dropped:
        raise RuntimeError(f"{dropped} of {len(streams)} streams lost a socket")


def _received(streams: list[Stream]) -> int:
    return sum(s.received for s in streams)


async def unpaced(
    streams: list[Stream], server: ServerProcess, warmup: float, duration: float
) -> Throughput:
    """Events/s relayed with every stream sending as fast as its window allows."""
    check_connected(streams)
    stop_at = perf_counter() + warmup + duration + 0.05
    pumps = [asyncio.create_task(_pump(s, stop_at)) for s in streams]
    await asyncio.sleep(warmup)
    n0, c0, t0 = _received(streams), server.cpu_seconds(), perf_counter()
    await asyncio.sleep(duration)
    n1, c1, t1 = _received(streams), server.cpu_seconds(), perf_counter()
    await asyncio.gather(*pumps)
    lost = await drain(streams)
    if lost:
        raise RuntimeError(f"{lost} tokens never reached the IDEs ({server.kind})")
    events = max(n1 - n0, 1)
    return Throughput(events / (t1 - t0), (c1 - c0) / events * 1e6, (c1 - c0) / (t1 - t0))


async def _paced(s: Stream, rate: float, start: float, stop_at: float) -> None:
    period = 1 / rate
    for k in range(int((stop_at - start) * rate) + 1):
        at = start + k * period
        if at >= stop_at:
            break
        delay = at - perf_counter()
        await asyncio.sleep(max(delay, 0))
        await s.send()


async def paced(
    streams: list[Stream], server: ServerProcess, rate: float, warmup: float, duration: float
) -> Latency:
    """Latency percentiles with every stream sending `rate` tokens/s."""
    check_connected(streams)
    begin = perf_counter() + 0.1
    stop_at = begin + warmup + duration
    for s in streams:
        s.latencies = []
    phase = 1 / rate / len(streams)
    senders = [
        asyncio.create_task(_paced(s, rate, begin + i * phase, stop_at))
        for i, s in enumerate(streams)
    ]
    await asyncio.sleep(begin + warmup - perf_counter())
    c0, t0 = server.cpu_seconds(), perf_counter()
    await asyncio.gather(*senders)
    c1, t1 = server.cpu_seconds(), perf_counter()
    lost = await drain(streams, timeout=5)
    kept = [lat for s in streams for at, lat in (s.latencies or []) if at >= begin + warmup]
    for s in streams:
        s.latencies = None
    if not kept:
        raise RuntimeError(f"no latency samples ({server.kind})")
    q = statistics.quantiles(kept, n=100, method="inclusive")
    return Latency(
        q[49] * 1e3, q[98] * 1e3, max(kept) * 1e3, len(kept), lost, (c1 - c0) / (t1 - t0)
    )
