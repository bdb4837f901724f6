"""Medians over rounds, the table, the cross-node hop's cost and the projection for N nodes."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.relay.workloads import Latency, Throughput

#: Configurations, in the order measured and shown.
CONFIGS = ("one", "same", "cross")
TITLES = {
    "one": "one node (no Redis)",
    "same": "2 nodes, IDE and drone on A",
    "cross": "2 nodes, IDE on A, drone on B",
}


@dataclass
class Round:
    """One configuration's figures from one round."""

    one: Throughput
    ten: Throughput
    paced: Latency
    #: CPU µs per delivered event of each metered process (10 streams): node A, node B, Redis.
    split: list[float]


@dataclass
class Results:
    """Every round of every configuration, and how the run was set up."""

    rounds: dict[str, list[Round]] = field(default_factory=lambda: {c: [] for c in CONFIGS})
    setup: dict[str, str] = field(default_factory=dict)
    streams: int = 0
    rate: float = 0.0

    def median(self, config: str, pick: Callable[[Round], float]) -> float:
        """The median over rounds of one figure of one configuration."""
        return statistics.median(pick(r) for r in self.rounds[config])

    def part(self, config: str, index: int) -> float:
        """Median µs/event of process `index` (0: node A, 1: node B, 2: Redis); 0 if absent."""
        rounds = self.rounds[config]
        if not rounds or len(rounds[0].split) <= index:
            return 0.0
        return statistics.median(r.split[index] for r in rounds)


def table(res: Results) -> str:
    """The Markdown table of medians."""
    paced = f"{res.streams} streams x {res.rate:g} tok/s"
    rows: list[tuple[str, Callable[[str], float], str]] = [
        ("events/s, 1 stream unpaced", lambda c: res.median(c, lambda r: r.one.events_per_s),
         "{:,.0f}"),
        ("events/s, 10 streams unpaced", lambda c: res.median(c, lambda r: r.ten.events_per_s),
         "{:,.0f}"),
        ("CPU µs/event, all processes, 10 streams",
         lambda c: res.median(c, lambda r: r.ten.cpu_us_per_event), "{:.1f}"),
        ("  node A (the IDEs' node)", lambda c: res.part(c, 0), "{:.1f}"),
        ("  node B", lambda c: res.part(c, 1), "{:.1f}"),
        ("  Redis server", lambda c: res.part(c, 2), "{:.1f}"),
        (f"p50 ms, {paced}", lambda c: res.median(c, lambda r: r.paced.p50_ms), "{:.2f}"),
        (f"p99 ms, {paced}", lambda c: res.median(c, lambda r: r.paced.p99_ms), "{:.2f}"),
        (f"max ms, {paced}", lambda c: res.median(c, lambda r: r.paced.max_ms), "{:.1f}"),
    ]  # fmt: skip
    head = "| | " + " | ".join(TITLES[c] for c in CONFIGS) + " |"
    lines = [head, "|---" * (len(CONFIGS) + 1) + "|"]
    for label, value, fmt in rows:
        cells = [fmt.format(value(c)) if res.rounds[c] else "-" for c in CONFIGS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Costs:
    """CPU µs per delivered event, from the medians (10 unpaced streams)."""

    drone_node: float  # the node holding the drone's socket (cross: node B)
    ide_node: float  # the node holding the IDE's socket (cross: node A)
    bystander: float  # a node with neither (same: node B), which hears every emit
    redis: float  # the Redis server with two subscribed nodes
    one_node: float  # one node with the in-process manager

    @classmethod
    def of(cls, res: Results) -> Costs:
        return cls(res.part("cross", 1), res.part("cross", 0), res.part("same", 1),
                   res.part("cross", 2), res.part("one", 0))  # fmt: skip


def hop(res: Results) -> str:
    """What the cross-node hop costs per event, in CPU and in latency."""
    total = {c: res.median(c, lambda r: r.ten.cpu_us_per_event) for c in ("same", "cross")}
    p99 = {c: res.median(c, lambda r: r.paced.p99_ms) for c in CONFIGS}
    one = res.median("one", lambda r: r.ten.cpu_us_per_event)
    return (
        f"cross-node hop: {total['cross'] - total['same']:+.1f} CPU µs/event over IDE and "
        f"drone on one node of the cluster, {total['cross'] - one:+.1f} over one node without "
        f"Redis; p99 {p99['cross'] - p99['same']:+.2f} ms and {p99['cross'] - p99['one']:+.2f} ms"
    )


def projection(res: Results, counts: tuple[int, ...] = (1, 2, 4, 8, 16)) -> str:
    """Events/s N nodes can deliver, one core each, streams spread evenly over nodes.

    An event costs the drone's node, the IDE's node, and every other node a bystander's
    share (python-socketio's Redis manager sends every emit to every node); Redis's cost
    is taken as growing with its subscribers (an upper bound: half of it is one publish).
    """
    c = Costs.of(res)
    lines = ["| nodes | node CPU µs/event (sum) | events/s, nodes | Redis ceiling | events/s |",
             "|---|---|---|---|---|"]  # fmt: skip
    for n in counts:
        if n == 1:
            nodes_cost, redis = c.one_node, 0.0
        else:
            nodes_cost = c.drone_node + c.ide_node + (n - 2) * c.bystander
            redis = c.redis * n / 2
        capacity = n * 1e6 / nodes_cost if nodes_cost else float("inf")
        ceiling = 1e6 / redis if redis else float("inf")
        lines.append(
            f"| {n} | {nodes_cost:.1f} | {capacity:,.0f} | "
            f"{'-' if redis == 0 else f'{ceiling:,.0f}'} | {min(capacity, ceiling):,.0f} |"
        )
    return "\n".join(lines)
