"""Tokens mode: model-sized chunks through the REAL drone outbox, model chunk → IDE latency.

Each stream's drone side is `gadget.drone.outbox.Outbox` (the drone's own coalescing,
numbering and keep-until-acknowledged) sending over a `wire.Socket`: the scheduler hands
it one token (4-40 characters) at a time at the model's pace, the outbox merges tokens
for up to its window and sends `response` events carrying `{"turnId", "seq"}`; the hub's
`streamAck(turnId, seq)` goes back to `Outbox.ack`. The IDE side checks that the text it
receives is exactly the tokens generated, in order (coalescing joins whole tokens), and
takes each token's latency from the time the scheduler handed it to the outbox.

Ack figures (hub only; the bare relay acknowledges nothing): the delay from an event's
send to the `streamAck` covering it, and the outbox's depth (events and bytes kept,
sampled every 50 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
from collections import deque
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from bench.relay.clients import Stream
from bench.relay.servers import ServerProcess
from bench.relay.workloads import TICK_S, Meter, check
from gadget.drone.outbox import Outbox

#: Token lengths: what an LLM's stream deltas look like (a word piece to a short phrase).
MIN_TOKEN, MAX_TOKEN = 4, 40
SAMPLE_EVERY_S = 0.05


def _ignore(name: str, args: list[Any]) -> list[Any] | None:
    return None


#: Runs so far (each gets its own token character).
_RUNS = [0]


class WireEmitter:
    """What the outbox needs of a socketio.AsyncClient (`emit`), over a `wire.Socket`."""

    def __init__(self, stream: TokenStream) -> None:
        self._stream = stream

    async def emit(self, event: str, data: Any = None) -> None:
        args = data if isinstance(data, tuple) else (data,)
        sock = self._stream.base.drone
        if not sock.connected:
            import socketio

            raise socketio.exceptions.ConnectionError("socket closed")
        mark = args[-1] if args and isinstance(args[-1], dict) else None
        if mark is not None:
            self._stream.sent_at[mark["seq"]] = perf_counter()
        self._stream.events += 1
        sock.emit(event, *args)


@dataclass(eq=False)
class TokenStream:
    """One stream in tokens mode: the real outbox on the drone side, checks on the IDE side."""

    base: Stream
    turn_id: str
    window_ms: float
    rng: random.Random
    #: The last seq the hub applied for this turn (earlier runs on the same streams).
    first_seq: int = 0
    #: This run's token character: late events of an earlier run are told apart and ignored.
    char: str = "x"
    outbox: Outbox = field(init=False)
    runner: asyncio.Task[None] | None = None
    #: (token, handed-to-outbox time) not yet seen at the IDE.
    pending: deque[tuple[str, float]] = field(default_factory=deque)
    generated: int = 0
    delivered: int = 0
    events: int = 0
    misordered: int = 0
    latencies: list[tuple[float, float]] | None = None
    sent_at: dict[int, float] = field(default_factory=dict)
    ack_delays: list[float] | None = None
    acked_seq: int = 0

    def __post_init__(self) -> None:
        self.outbox = Outbox(WireEmitter(self), self.window_ms)  # type: ignore[arg-type]
        self.acked_seq = self.first_seq
        self._saved = (self.base.ide.on_event, self.base.drone.on_event)
        self.base.ide.on_event = self.on_ide_event
        self.base.drone.on_event = self.on_drone_event

    def start(self) -> None:
        self.outbox.begin_turn(self.turn_id, self.first_seq)
        self.outbox.online()
        self.runner = asyncio.get_running_loop().create_task(self.outbox.run())

    async def stop(self) -> int:
        """Stop sending; the seq of the last event sent (the next run continues from it)."""
        if self.runner is not None:
            self.runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.runner
        # Events still in flight (an overloaded server) must not reach the other workloads'
        # handler: the IDE ignores everything until the next run installs its own.
        self.base.ide.on_event = _ignore
        self.base.drone.on_event = self._saved[1]
        ended = self.outbox.end_turn()
        return ended[1] if ended else self.first_seq

    def token(self) -> None:
        """The model produced one token: hand it to the outbox."""
        text = self.char * self.rng.randint(MIN_TOKEN, MAX_TOKEN)
        self.pending.append((text, perf_counter()))
        self.generated += 1
        self.outbox.text("response", text)

    def on_ide_event(self, name: str, args: list[Any]) -> list[Any] | None:
        if name != "response" or not args or not isinstance(args[0], str):
            return None
        if not args[0].startswith(self.char):
            return None  # a late event of an earlier run
        content, now, pos = args[0], perf_counter(), 0
        while pos < len(content):
            if not self.pending:
                self.misordered += 1
                return None
            text, at = self.pending.popleft()
            if content[pos : pos + len(text)] != text:
                self.misordered += 1
                return None
            pos += len(text)
            self.delivered += 1
            if self.latencies is not None:
                self.latencies.append((at, now - at))
        return None

    def on_drone_event(self, name: str, args: list[Any]) -> list[Any] | None:
        if name == "processWorkOrder":
            return [True]
        if name == "streamAck" and len(args) >= 2 and args[0] == self.turn_id:
            seq, now = int(args[1]), perf_counter()
            for s in range(self.acked_seq + 1, seq + 1):
                at = self.sent_at.pop(s, None)
                if at is not None and self.ack_delays is not None:
                    self.ack_delays.append(now - at)
            self.acked_seq = max(self.acked_seq, seq)
            self.outbox.ack(self.turn_id, seq)
        return None


@dataclass
class TokenFigures:
    """One tokens-mode run on one server."""

    rate: float
    streams: int
    window_ms: float
    tokens_per_s: float
    events_per_s: float
    tokens_per_event: float
    cpu_share: float
    tokens_per_cpu_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    lost: int
    client_share: float
    ack_p50_ms: float | None = None
    ack_p99_ms: float | None = None
    depth_events_max: int | None = None
    depth_events_p50: float | None = None
    depth_bytes_max: int | None = None


async def _schedule(streams: list[TokenStream], rate: float, begin: float, stop: float) -> None:
    """Token k (of stream k mod N) at begin + k / (rate N): absolute due times, no drift."""
    step = 1 / rate / len(streams)
    total, done = int((stop - begin) / step), 0
    while done < total:
        await asyncio.sleep(max(begin + done * step - perf_counter(), TICK_S))
        due = min(total, max(done + 1, int((perf_counter() - begin) / step) + 1))
        for k in range(done, due):
            streams[k % len(streams)].token()
        done = due


async def _sample(streams: list[TokenStream], into: list[tuple[int, int]]) -> None:
    while True:
        await asyncio.sleep(SAMPLE_EVERY_S)
        for s in streams:
            into.append((len(s.outbox), s.outbox.unacked_bytes))


def _q(values: list[float], at: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[at - 1]


async def tokens(
    base: list[Stream],
    server: ServerProcess,
    rate: float,
    window_ms: float,
    warmup: float,
    duration: float,
) -> TokenFigures:
    """Stream `rate` tokens/s on every stream through real outboxes; figures after warm-up."""
    check(base, server.kind)
    acks = server.kind == "hub"
    rng = random.Random(7)
    _RUNS[0] += 1
    char = chr(ord("a") + _RUNS[0] % 26)
    streams = [TokenStream(b, b.turn_id, window_ms, rng, b.seq, char) for b in base]
    for s in streams:
        s.start()
    depth: list[tuple[int, int]] = []
    begin = perf_counter() + 0.1
    sender = asyncio.create_task(_schedule(streams, rate, begin, begin + warmup + duration))
    await asyncio.sleep(begin + warmup - perf_counter())
    for s in streams:
        s.latencies, s.ack_delays = [], ([] if acks else None)
    sampler = asyncio.create_task(_sample(streams, depth)) if acks else None
    a, tok_a, ev_a = Meter(base, server), sum(s.delivered for s in streams), _events(streams)
    await sender
    b, tok_b, ev_b = Meter(base, server), sum(s.delivered for s in streams), _events(streams)
    lost = await _drain(streams)
    if sampler is not None:
        sampler.cancel()
    for s in streams:
        s.base.seq = await s.stop()
    check(base, server.kind)
    misordered = sum(s.misordered for s in streams)
    if misordered:
        raise RuntimeError(f"{misordered} token events out of order or altered ({server.kind})")
    counted = (tok_b - tok_a, ev_b - ev_a, lost)
    return _figures(streams, server, rate, window_ms, (a, b), counted, depth, begin + warmup)


def _events(streams: list[TokenStream]) -> int:
    return sum(s.events for s in streams)


async def _drain(streams: list[TokenStream], timeout: float = 5) -> int:
    for _ in range(int(timeout / 0.01)):
        if all(s.delivered >= s.generated for s in streams):
            break
        await asyncio.sleep(0.01)
    return sum(s.generated - s.delivered for s in streams)


def _figures(
    streams: list[TokenStream],
    server: ServerProcess,
    rate: float,
    window_ms: float,
    meters: tuple[Meter, Meter],
    counted: tuple[int, int, int],
    depth: list[tuple[int, int]],
    since: float,
) -> TokenFigures:
    a, b = meters
    delivered, events, lost = counted
    wall, cpu = b.wall - a.wall, b.server - a.server
    lat = [x for s in streams for at, x in (s.latencies or []) if at >= since]
    if not lat:
        raise RuntimeError(f"no token latencies ({server.kind})")
    fig = TokenFigures(
        rate=rate,
        streams=len(streams),
        window_ms=window_ms,
        tokens_per_s=delivered / wall,
        events_per_s=events / wall,
        tokens_per_event=delivered / max(events, 1),
        cpu_share=cpu / wall,
        tokens_per_cpu_s=delivered / cpu if cpu > 0 else float("nan"),
        p50_ms=_q(lat, 50) * 1e3,
        p99_ms=_q(lat, 99) * 1e3,
        max_ms=max(lat) * 1e3,
        lost=lost,
        client_share=(b.client - a.client) / wall,
    )
    delays = [x for s in streams for x in (s.ack_delays or [])]
    if delays:
        fig.ack_p50_ms, fig.ack_p99_ms = _q(delays, 50) * 1e3, _q(delays, 99) * 1e3
    if depth:
        fig.depth_events_max = max(d for d, _ in depth)
        fig.depth_events_p50 = statistics.median(d for d, _ in depth)
        fig.depth_bytes_max = max(n for _, n in depth)
    return fig
