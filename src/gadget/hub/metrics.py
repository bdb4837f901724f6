"""`GET /metrics`: the hub's figures in Prometheus' text format, one registry per app.

Cheap on the relay path: the hub's parts count into plain dicts and :class:`Histogram`
lists (an integer added, no object allocated, no lock), and everything is turned into
metric families only when /metrics is scraped (:meth:`Metrics.collect`). State that
the hub already keeps (connected sockets, live turns, bytes not yet stored, database
failures) is read at scrape time, never copied. The event-loop lag is measured by a
small task (:class:`LoopLag`) that sleeps a fixed interval and records how late it
woke. docs/operations.md lists every metric.

Access (:func:`allowed`): with `GADGET_METRICS_TOKEN` set, only `Authorization: Bearer
<token>`; without it, only clients on the loopback that did not come through a proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import ipaddress
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

if TYPE_CHECKING:
    from gadget.hub.bus import Bus
    from gadget.hub.sockets.base import Dispatcher
    from gadget.hub.state.drones import Drones
    from gadget.hub.state.ides import Ides
    from gadget.hub.stream.recorder import Recorder
    from gadget.hub.stream.writer import Writer
    from gadget.store.batch import Outcome, TurnWrite

__all__ = ["CONTENT_TYPE", "Histogram", "LoopLag", "Metrics", "allowed"]

#: The media type of the text exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Seconds: from well under a millisecond (an event relayed) to a stalled loop.
SECONDS_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
#: Turns (rows) written by one batch of the writer.
ROWS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
#: How often the lag task wakes (it measures by how much each sleep overshoots).
LAG_INTERVAL_S = 0.01

#: Event name → how many; a plain dict so the hot path is one `get` and one store.
Counts = dict[str, int]


class Histogram:
    """A histogram without locks: `observe` adds one to the bucket of a value."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = tuple(sorted(bounds))
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one value."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        """How many values were observed."""
        return sum(self.counts)

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative (upper bound, count) pairs, +Inf last."""
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip([*map(_le, self.bounds), "+Inf"], self.counts, strict=True):
            running += n
            buckets.append((bound, running))
        return buckets

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        """As a Prometheus histogram (cumulative buckets)."""
        return HistogramMetricFamily(name, doc, buckets=self.buckets(), sum_value=self.sum)


def _le(bound: float) -> str:
    return repr(float(bound))


@dataclass
class LoopLag:
    """How late the event loop wakes a task that sleeps `interval` seconds, over and over.

    `last` is the latest lag, `hist` every lag, and :meth:`take_max` the largest since
    it was last taken (each scrape of /metrics takes it).
    """

    interval: float = LAG_INTERVAL_S
    last: float = 0.0
    peak: float = 0.0
    hist: Histogram = field(default_factory=lambda: Histogram(SECONDS_BUCKETS))
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start measuring (in the running loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def close(self) -> None:
        """Stop measuring."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def take_max(self) -> float:
        """The largest lag since the previous call."""
        peak, self.peak = self.peak, 0.0
        return max(peak, self.last)

    async def _run(self) -> None:
        clock = time.perf_counter
        while True:
            began = clock()
            await asyncio.sleep(self.interval)
            lag = max(0.0, clock() - began - self.interval)
            self.last = lag
            self.peak = max(self.peak, lag)
            self.hist.observe(lag)


@dataclass(eq=False)
class GcPauses:
    """How long the collector's passes stop the process, by generation (gc.callbacks).

    Installed by :meth:`start` and removed by :meth:`stop` (the callbacks are the
    interpreter's, so nothing is registered before the hub starts).
    """

    hist: dict[int, Histogram] = field(
        default_factory=lambda: {g: Histogram(SECONDS_BUCKETS) for g in range(3)}
    )
    peak: float = 0.0
    _began: float = 0.0

    def start(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def take_max(self) -> float:
        """The longest pass since the previous call."""
        peak, self.peak = self.peak, 0.0
        return peak

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        took = time.perf_counter() - self._began
        self.hist[info["generation"]].observe(took)
        self.peak = max(self.peak, took)


@dataclass(eq=False)
class Metrics:
    """Every figure of one hub process, read from the parts that own them at each scrape.

    The dispatcher counts events in and times the relay, the bus counts events out,
    the writer reports each batch here (:meth:`batch`) and its commits
    (:meth:`committed`); the rest is read from the drones', IDEs', recorder's and
    writer's own state.
    """

    drones: Drones
    ides: Ides
    recorder: Recorder
    writer: Writer
    bus: Bus
    dispatcher: Dispatcher
    batch_rows: Histogram = field(default_factory=lambda: Histogram(ROWS_BUCKETS))
    batch_seconds: Histogram = field(default_factory=lambda: Histogram(SECONDS_BUCKETS))
    #: Turns whose end was stored, by status ("finished", "error", "cancelled").
    turns_ended: Counts = field(default_factory=dict)
    lag: LoopLag = field(default_factory=LoopLag)
    gc: GcPauses = field(default_factory=GcPauses)
    registry: CollectorRegistry = field(init=False)

    def __post_init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self.writer.on_batch = self.batch

    def batch(self, rows: int, seconds: float) -> None:
        """The writer committed a batch of `rows` turns in `seconds`."""
        self.batch_rows.observe(rows)
        self.batch_seconds.observe(seconds)

    async def committed(self, pairs: Iterable[tuple[TurnWrite, Outcome]]) -> None:
        """The writer's commit callback: count the turn ends it stored."""
        from gadget.store.batch import EndTurn, Outcome

        for write, outcome in pairs:
            if outcome is not Outcome.APPLIED:
                continue
            for op in write.ops:
                if isinstance(op, EndTurn):
                    status = "cancelled" if op.cancelled else op.status.value
                    self.turns_ended[status] = self.turns_ended.get(status, 0) + 1

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return bytes(generate_latest(self.registry))

    # -- the collector -----------------------------------------------------------
    def describe(self) -> list[Metric]:
        """Nothing to describe ahead (the registry asks collectors with auto_describe)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Every metric family, read now."""
        yield from self._connections()
        yield from self._events()
        yield self.dispatcher.relay.family(
            "gadget_relay_seconds", "Drone stream event in the hub until queued to its IDEs."
        )
        yield from self._writes()
        yield from self._turns()
        yield from self._loop()

    def _connections(self) -> Iterator[Metric]:
        yield _gauge("gadget_drones_connected", "Drone sockets on this node.", len(self.drones))
        yield _gauge("gadget_ides_connected", "IDE sockets on this node.", len(self.ides))

    def _events(self) -> Iterator[Metric]:
        received = CounterMetricFamily(
            "gadget_events_in",
            "Client events received, by sender and name.",
            labels=("source", "event"),
        )
        for source, counts in self.dispatcher.received.items():
            for event, n in sorted(counts.items()):
                received.add_metric((source, event), n)
        yield received
        yield _counter_by(
            "gadget_events_out",
            "Events queued to sockets (one per recipient), by name.",
            "event",
            self.bus.sent,
        )

    def _writes(self) -> Iterator[Metric]:
        health = self.writer.health
        yield self.batch_rows.family(
            "gadget_write_batch_rows", "Turns written by one batch of the writer."
        )
        yield self.batch_seconds.family(
            "gadget_write_batch_seconds", "Time to commit one batch of the writer."
        )
        yield CounterMetricFamily(
            "gadget_database_errors", "Failed database writes (each retried).", health.failures
        )
        yield _gauge("gadget_database_up", "1 while the database takes writes.", int(health.ok))
        yield _gauge(
            "gadget_uncommitted_bytes",
            "Stream writes handed to the writer and not yet committed (not acknowledged).",
            health.uncommitted_bytes,
        )
        yield _gauge(
            "gadget_unsealed_bytes",
            "Stream events applied in memory, not yet handed to the writer.",
            self.recorder.unsealed_bytes,
        )

    def _turns(self) -> Iterator[Metric]:
        yield _gauge(
            "gadget_turns_live", "Turns recorded on this node (processing).", len(self.recorder)
        )
        yield _counter_by(
            "gadget_turns_ended",
            "Turns whose end was stored, by status.",
            "status",
            self.turns_ended,
        )

    def _loop(self) -> Iterator[Metric]:
        lag = self.lag
        yield _gauge("gadget_loop_lag_seconds", "The event loop's latest lag.", lag.last)
        yield _gauge(
            "gadget_loop_lag_max_seconds",
            "The event loop's largest lag since the previous scrape.",
            lag.take_max(),
        )
        yield lag.hist.family("gadget_loop_lag", "The event loop's lag (sleep overshoot).")
        passes = HistogramMetricFamily(
            "gadget_gc_pause_seconds", "Collector passes, by generation.", labels=("generation",)
        )
        for generation, hist in self.gc.hist.items():
            passes.add_metric((str(generation),), hist.buckets(), hist.sum)
        yield passes
        yield _gauge(
            "gadget_gc_pause_max_seconds",
            "The longest collector pass since the previous scrape.",
            self.gc.take_max(),
        )


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter_by(name: str, doc: str, label: str, counts: Mapping[str, int]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=(label,))
    for key, n in sorted(counts.items()):
        family.add_metric((key,), n)
    return family


def allowed(
    token: str | None,
    authorization: str | None,
    client_host: str | None,
    headers: Callable[[str], str | None],
) -> bool:
    """Whether a request may read /metrics (see the module docstring)."""
    if token:
        scheme, _, given = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode())
    if headers("x-forwarded-for") is not None or headers("forwarded") is not None:
        return False
    try:
        return client_host is not None and ipaddress.ip_address(client_host).is_loopback
    except ValueError:
        return False
