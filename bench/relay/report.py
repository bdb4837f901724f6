"""Medians over rounds, and the table printed at the end of a run."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.relay.blocks import LARGE, SMALL, AppendCost
from bench.relay.tokens import TokenFigures
from bench.relay.workloads import Latency, Throughput

TARGET_RATIO = 0.6


@dataclass
class Round:
    """One server's figures from one round of every workload."""

    one: Throughput
    ten: Throughput
    paced: Latency


@dataclass
class Results:
    """Every round of both servers, the append cost and how the run was set up."""

    rounds: dict[str, list[Round]] = field(default_factory=lambda: {"hub": [], "bare": []})
    append: AppendCost | None = None
    setup: dict[str, str] = field(default_factory=dict)


@dataclass
class Row:
    label: str
    pick: Callable[[Round], float]
    fmt: str
    #: Whether a hub/bare ratio above 1 is the hub doing better (throughput) or worse.
    higher_is_better: bool


ROWS = [
    Row("events/s, 1 stream unpaced", lambda r: r.one.events_per_s, "{:,.0f}", True),
    Row("events/s, 10 streams unpaced", lambda r: r.ten.events_per_s, "{:,.0f}", True),
    Row("server CPU µs/event, 1 stream", lambda r: r.one.cpu_us_per_event, "{:.1f}", False),
    Row("server CPU µs/event, 10 streams", lambda r: r.ten.cpu_us_per_event, "{:.1f}", False),
    Row(
        "events per server CPU-s, 10 streams",
        lambda r: 1e6 / r.ten.cpu_us_per_event,
        "{:,.0f}",
        True,
    ),
    Row("p50 ms, 100 streams x 50 tok/s", lambda r: r.paced.p50_ms, "{:.2f}", False),
    Row("p99 ms, 100 streams x 50 tok/s", lambda r: r.paced.p99_ms, "{:.2f}", False),
    Row("max ms, 100 streams x 50 tok/s", lambda r: r.paced.max_ms, "{:.1f}", False),
    Row("server CPU %, 100 streams x 50 tok/s", lambda r: r.paced.cpu_share * 100, "{:.0f}", False),
    Row("client CPU µs/event, 10 streams", lambda r: r.ten.client_us_per_event, "{:.1f}", False),
    Row(
        "client CPU µs/event, 100 streams x 50 tok/s",
        lambda r: r.paced.client_us_per_event,
        "{:.1f}",
        False,
    ),
    Row(
        "client CPU %, 100 streams x 50 tok/s",
        lambda r: r.paced.client_share * 100,
        "{:.0f}",
        False,
    ),
    Row(
        "worst send lag ms, 100 streams x 50 tok/s", lambda r: r.paced.send_lag_ms, "{:.1f}", False
    ),
]


def median(rounds: list[Round], pick: Callable[[Round], float]) -> float:
    return statistics.median(pick(r) for r in rounds)


def _cell(rounds: list[Round], row: Row) -> str:
    values = [row.pick(r) for r in rounds]
    text = row.fmt.format(statistics.median(values))
    if len(values) > 1:
        text += f" ({row.fmt.format(min(values))}-{row.fmt.format(max(values))})"
    return text


#: How the paced rows are labelled; `table` puts the run's actual load in its place.
PACED = "100 streams x 50 tok/s"


def table(results: Results, paced: str = PACED) -> str:
    """The figures as a Markdown table (median over rounds, min-max in brackets)."""
    hub, bare = results.rounds["hub"], results.rounds["bare"]
    lines = [
        "| metric | hub | bare | hub/bare |",
        "|---|---:|---:|---:|",
    ]
    for row in ROWS:
        ratio = median(hub, row.pick) / max(median(bare, row.pick), 1e-9)
        label = row.label.replace(PACED, paced)
        lines.append(f"| {label} | {_cell(hub, row)} | {_cell(bare, row)} | {ratio:.2f} |")
    lost = sum(r.paced.lost for r in hub), sum(r.paced.lost for r in bare)
    lines.append(f"| paced tokens not arrived 5 s after the last send | {lost[0]} | {lost[1]} | |")
    if results.append is not None:
        a = results.append
        lines += [
            "",
            f"| append cost (first + second flush of a block, median of {a.reps}) | ms |",
            "|---|---:|",
            f"| block {SMALL:,} of a turn | {a.small_ms:.2f} |",
            f"| block {LARGE:,} of a turn | {a.large_ms:.2f} |",
            f"| ratio {LARGE:,} / {SMALL:,} | {a.ratio:.2f} |",
        ]
    return "\n".join(lines)


def verdict(results: Results) -> str:
    """Whether hub throughput meets the target fraction of bare, per stream count."""
    hub, bare = results.rounds["hub"], results.rounds["bare"]
    parts = []
    for label, pick in (("1 stream", ROWS[0].pick), ("10 streams", ROWS[1].pick)):
        ratio = median(hub, pick) / median(bare, pick)
        ok = "ok" if ratio >= TARGET_RATIO else "BELOW TARGET"
        parts.append(f"{label}: {ratio:.2f} ({ok})")
    return f"hub/bare throughput (target ≥ {TARGET_RATIO}): " + ", ".join(parts)


def _opt(value: float | None, fmt: str) -> str:
    return "" if value is None else fmt.format(value)


def tokens_table(figures: list[tuple[str, TokenFigures]]) -> str:
    """Tokens mode: one line per server and load, then the hub/bare ratios."""
    lines = [
        "| server | tok/s per stream x streams | window ms | tokens/s delivered | events/s "
        "| tokens/event | server CPU % | tokens per server CPU-s | p50 ms | p99 ms | max ms "
        "| ack p50 ms | ack p99 ms | outbox depth p50 / max events | max kept KiB | lost |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, f in figures:
        depth = (
            f"{f.depth_events_p50:g} / {f.depth_events_max}"
            if f.depth_events_max is not None
            else ""
        )
        kib = _opt(None if f.depth_bytes_max is None else f.depth_bytes_max / 1024, "{:,.0f}")
        lines.append(
            f"| {kind} | {f.rate:g} x {f.streams} | {f.window_ms:g} | {f.tokens_per_s:,.0f} "
            f"| {f.events_per_s:,.0f} | {f.tokens_per_event:.1f} | {f.cpu_share * 100:.0f} "
            f"| {f.tokens_per_cpu_s:,.0f} | {f.p50_ms:.2f} | {f.p99_ms:.2f} | {f.max_ms:.1f} "
            f"| {_opt(f.ack_p50_ms, '{:.0f}')} | {_opt(f.ack_p99_ms, '{:.0f}')} | {depth} "
            f"| {kib} | {f.lost} |"
        )
    hub = {(f.rate, f.streams, f.window_ms): f for k, f in figures if k == "hub"}
    bare = {(f.rate, f.streams, f.window_ms): f for k, f in figures if k == "bare"}
    lines += [
        "",
        "| load, window | hub/bare tokens per server CPU-s | hub/bare p99 |",
        "|---|---:|---:|",
    ]
    for key, h in hub.items():
        b = bare.get(key)
        if b is not None:
            lines.append(
                f"| {key[0]:g} x {key[1]}, {key[2]:g} ms "
                f"| {h.tokens_per_cpu_s / b.tokens_per_cpu_s:.2f} | {h.p99_ms / b.p99_ms:.2f} |"
            )
    return "\n".join(lines)
