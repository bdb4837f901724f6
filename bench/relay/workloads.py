"""The two workloads, run on the same client code against either server.

- unpaced: every stream sends as fast as its window allows (at most `window`
  tokens not yet received by its IDE), so the relay, not the client's send
  buffer, sets the pace; received events/s are counted over a fixed interval
  after a warm-up, with the CPU time of the server process and of the load
  generator over the same interval.
- paced: every stream sends `rate` tokens/s, phases spread evenly over one
  period; one scheduler sends each token at its absolute due time (catching
  up if late, never drifting); the IDE computes each token's latency from the
  send time it carries.

Both check that every token arrived, in its stream's order.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from dataclasses import dataclass
from time import perf_counter

from bench.relay.clients import Stream
from bench.relay.servers import ServerProcess

#: The paced scheduler wakes at most this often and sends every token then due.
TICK_S = 0.001


@dataclass
class Throughput:
    """Received events/s at the IDEs; server and load-generator CPU over the same interval."""

    events_per_s: float
    cpu_us_per_event: float
    cpu_share: float
    client_us_per_event: float


@dataclass
class Latency:
    """Send → IDE latency percentiles (ms) of the paced workload."""

    p50_ms: float
    p99_ms: float
    max_ms: float
    samples: int
    lost: int
    cpu_share: float
    client_share: float
    client_us_per_event: float
    #: Worst delay of a send behind its schedule (the generator keeping up).
    send_lag_ms: float


class Meter:
    """Events received, server CPU, load-generator CPU and wall time at one instant."""

    def __init__(self, streams: list[Stream], server: ServerProcess) -> None:
        self.events = sum(s.received for s in streams)
        self.server = server.cpu_seconds()
        self.client = time.process_time()
        self.wall = perf_counter()


def check(streams: list[Stream], kind: str) -> None:
    """Fail clearly if a socket dropped or a stream's tokens came out of order."""
    dropped = sum(not s.connected for s in streams)
    if dropped:
        raise RuntimeError(f"{dropped} of {len(streams)} streams lost a socket ({kind})")
    misordered = sum(s.misordered for s in streams)
    if misordered:
        raise RuntimeError(f"{misordered} tokens arrived out of order ({kind})")


async def drain(streams: list[Stream], timeout: float = 10) -> int:
    """Wait until every sent token arrived (or `timeout` s); returns how many did not."""
    for _ in range(int(timeout / 0.01)):
        if all(s.received >= s.sent for s in streams):
            break
        await asyncio.sleep(0.01)
    return sum(s.sent - s.received for s in streams)


async def _pump(s: Stream, stop_at: float) -> None:
    while perf_counter() < stop_at:
        if s.sent - s.received >= s.window:
            s.space.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await s.space.wait()
            continue
        s.send()


async def unpaced(
    streams: list[Stream], server: ServerProcess, warmup: float, duration: float
) -> Throughput:
    """Events/s relayed with every stream sending as fast as its window allows."""
    check(streams, server.kind)
    stop_at = perf_counter() + warmup + duration + 0.05
    pumps = [asyncio.create_task(_pump(s, stop_at)) for s in streams]
    await asyncio.sleep(warmup)
    a = Meter(streams, server)
    await asyncio.sleep(duration)
    b = Meter(streams, server)
    await asyncio.gather(*pumps)
    lost = await drain(streams)
    if lost:
        raise RuntimeError(f"{lost} tokens never reached the IDEs ({server.kind})")
    check(streams, server.kind)
    events = max(b.events - a.events, 1)
    return Throughput(
        events / (b.wall - a.wall),
        (b.server - a.server) / events * 1e6,
        (b.server - a.server) / (b.wall - a.wall),
        (b.client - a.client) / events * 1e6,
    )


async def _schedule(streams: list[Stream], rate: float, begin: float, stop_at: float) -> float:
    """Send token k (stream k mod N) at begin + k / (rate N); returns the worst lag (s).

    Due times are absolute (no drift from sleep overshoot); a wake-up sends every
    token due by then, and wake-ups are at least `TICK_S` apart (fewer timer
    wake-ups for the generator; each token still carries its real send time).
    """
    step = 1 / rate / len(streams)
    total = int((stop_at - begin) / step)
    done, lag = 0, 0.0
    for _ in range(total + 1):  # each pass sends at least one token
        if done >= total:
            break
        await asyncio.sleep(max(begin + done * step - perf_counter(), TICK_S))
        now = perf_counter()
        due = min(total, max(done + 1, int((now - begin) / step) + 1))
        lag = max(lag, now - (begin + done * step))
        for k in range(done, due):
            streams[k % len(streams)].send()
        done = due
    return lag


async def paced(
    streams: list[Stream], server: ServerProcess, rate: float, warmup: float, duration: float
) -> Latency:
    """Latency percentiles with every stream sending `rate` tokens/s."""
    check(streams, server.kind)
    begin = perf_counter() + 0.1
    for s in streams:
        s.latencies = []
    sender = asyncio.create_task(_schedule(streams, rate, begin, begin + warmup + duration))
    await asyncio.sleep(begin + warmup - perf_counter())
    a = Meter(streams, server)
    lag = await sender
    b = Meter(streams, server)
    lost = await drain(streams, timeout=5)
    check(streams, server.kind)
    kept = [lat for s in streams for at, lat in (s.latencies or []) if at >= begin + warmup]
    for s in streams:
        s.latencies = None
    if not kept:
        raise RuntimeError(f"no latency samples ({server.kind})")
    q = statistics.quantiles(kept, n=100, method="inclusive")
    wall, events = b.wall - a.wall, max(b.events - a.events, 1)
    return Latency(
        p50_ms=q[49] * 1e3,
        p99_ms=q[98] * 1e3,
        max_ms=max(kept) * 1e3,
        samples=len(kept),
        lost=lost,
        cpu_share=(b.server - a.server) / wall,
        client_share=(b.client - a.client) / wall,
        client_us_per_event=(b.client - a.client) / events * 1e6,
        send_lag_ms=lag * 1e3,
    )
