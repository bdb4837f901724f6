"""`uv run python -m bench.capacity`: how many drone + IDE pairs one hub process holds.

The hub (`bench.relay.serve hub`: the real app, SQLite, uvloop, pinned to the first CPU)
and the load generator (pinned to the second). For N pairs (bench/capacity/pairs.py):
hub RSS per pair (locked, a turn processing), setup time, every pair streaming
`response` events at `--rate`/s (IDE latency p50/p99/max; the hub's own event-loop lag
and writer batches from its /metrics), then every drone socket dropped and reconnected
within `--spread` s (connects not accepted within `--wait` s count as failed). `--idle N`
instead connects N idle drones of one user: memory per drone and connect rate.

    uv run python -m bench.capacity --pairs 1000 --users distinct
    uv run python -m bench.capacity --pairs 1000 --users one
    uv run python -m bench.capacity --idle 10000
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.capacity import pairs as P
from bench.capacity.scrape import Scrape, lag_and_writes
from bench.relay.__main__ import contention
from bench.relay.servers import ServerProcess, pin_cpus, start_server

_T0 = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _T0:6.1f} s] {message}", file=sys.stderr, flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__)
    p.add_argument("--pairs", type=int, default=1000)
    p.add_argument("--users", choices=["distinct", "one"], default="distinct")
    p.add_argument("--concurrency", type=int, default=25, help="pairs set up at once")
    p.add_argument("--rate", type=float, default=2.0, help="events/s per pair while streaming")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of streaming measured")
    p.add_argument(
        "--spread", type=float, default=10.0, help="reconnects spread over (s): the goal's 10"
    )
    p.add_argument(
        "--wait",
        type=float,
        default=1.0,
        help="a connect's deadline (s): python-socketio's default 1 (gadget drone waits 10)",
    )
    p.add_argument("--idle", type=int, default=0, help="instead: N idle drones of one user")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--profile", type=Path, default=None, help="the hub under cProfile, stats here")
    p.add_argument("--no-storm", action="store_true", help="skip the reconnect storm")
    return p.parse_args(argv)


def _raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _users(hub_home: Path, a: argparse.Namespace) -> list[str] | None:
    """Distinct users are seeded before the hub starts; None: one user, signed up later."""
    if a.users == "distinct" and not a.idle:
        return await P.seed_users(hub_home, a.pairs)
    return None


async def _registered(url: str, a: argparse.Namespace, tokens: list[str] | None) -> list[P.Pair]:
    n = a.idle or a.pairs
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        if tokens is None:
            token = await P.signup(http, "bench")
            project = await P.project(http, token)
            pairs = [P.Pair(token, project) for _ in range(n)]
        else:
            projects = await P.bounded(
                [functools.partial(P.project, http, t) for t in tokens], a.concurrency
            )
            pairs = [P.Pair(t, pr) for t, pr in zip(tokens, projects, strict=True)]
        await P.bounded(
            [functools.partial(P.register, http, p, f"d{i}") for i, p in enumerate(pairs)],
            a.concurrency,
        )
    return pairs


def _pct(values: list[float], at: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[at - 1]


async def run_pairs(
    hub: ServerProcess, a: argparse.Namespace, tokens: list[str] | None
) -> dict[str, Any]:
    out: dict[str, Any] = {"pairs": a.pairs, "users": a.users}
    began, cpu = time.perf_counter(), hub.cpu_seconds()
    pairs = await _registered(hub.url, a, tokens)
    out["register_s"] = time.perf_counter() - began
    out["register_hub_cpu_s"] = hub.cpu_seconds() - cpu
    rss0 = await P.settle_rss(hub.proc.pid)
    log(f"{len(pairs)} drones registered in {out['register_s']:.1f} s; setting up pairs")
    began, cpu = time.perf_counter(), hub.cpu_seconds()
    await P.bounded([functools.partial(P.start_pair, hub.url, p) for p in pairs], a.concurrency)
    out["sockets_lock_prompt_s"] = time.perf_counter() - began
    out["sockets_lock_prompt_hub_cpu_s"] = hub.cpu_seconds() - cpu
    out["setup_s"] = out["register_s"] + out["sockets_lock_prompt_s"]
    out["setup_hub_cpu_s"] = out["register_hub_cpu_s"] + out["sockets_lock_prompt_hub_cpu_s"]
    rss1 = await P.settle_rss(hub.proc.pid, 2.0)
    out["rss_before_kib"], out["rss_after_kib"] = rss0, rss1
    out["kib_per_pair"] = (rss1 - rss0) / len(pairs)
    log(f"pairs up in {out['sockets_lock_prompt_s']:.1f} s; {out['kib_per_pair']:.0f} KiB/pair")
    scrape = Scrape(hub.url)
    await scrape.take()  # resets the hub's max loop lag
    cpu0, wall0 = hub.cpu_seconds(), time.perf_counter()
    lat = await P.stream(pairs, a.rate, 2.0, a.duration)
    cpu1, wall1 = hub.cpu_seconds(), time.perf_counter()
    after = await scrape.take()
    out.update(lag_and_writes(scrape.first, after))
    out["stream_cpu_share"] = (cpu1 - cpu0) / (wall1 - wall0)
    out["stream_hub_cpu_us_per_event"] = (cpu1 - cpu0) / max(1, sum(p.sent for p in pairs)) * 1e6
    out["stream_p50_ms"], out["stream_p99_ms"] = _pct(lat, 50) * 1e3, _pct(lat, 99) * 1e3
    out["stream_max_ms"] = max(lat) * 1e3 if lat else float("nan")
    out["stream_lost"] = sum(p.sent - p.received for p in pairs)
    out["stream_misordered"] = sum(p.misordered for p in pairs)
    log(
        f"streamed: p99 {out['stream_p99_ms']:.1f} ms, loop lag max {out['loop_lag_max_ms']:.1f} ms"
    )
    if a.no_storm:
        await P.close_all(pairs)
        return out
    cpu = hub.cpu_seconds()
    took, failed = await P.reconnect_storm(hub.url, pairs, a.spread, a.wait)
    out["reconnect_hub_cpu_s"] = hub.cpu_seconds() - cpu
    out["reconnect_failed"] = failed
    out["reconnect_p50_ms"] = _pct(took, 50) * 1e3
    out["reconnect_p99_ms"] = _pct(took, 99) * 1e3
    out["reconnect_max_ms"] = max(took) * 1e3 if took else float("nan")
    log(f"reconnect storm: {failed} failed")
    await P.close_all(pairs)
    return out


async def run_idle(hub: ServerProcess, a: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"idle": a.idle}
    began = time.perf_counter()
    pairs = await _registered(hub.url, a, None)
    out["register_s"] = time.perf_counter() - began
    rss0 = await P.settle_rss(hub.proc.pid)
    log(f"{a.idle} drones registered in {out['register_s']:.1f} s; connecting")
    began = time.perf_counter()
    took = await P.bounded(
        [functools.partial(P.connect_drone, hub.url, p) for p in pairs], max(a.concurrency, 100)
    )
    wall = time.perf_counter() - began
    rss1 = await P.settle_rss(hub.proc.pid, 2.0)
    out.update(
        connect_s=wall,
        connects_per_s=a.idle / wall,
        connect_p99_ms=_pct(took, 99) * 1e3,
        rss_before_kib=rss0,
        rss_after_kib=rss1,
        kib_per_drone=(rss1 - rss0) / a.idle,
    )
    await P.close_all(pairs)
    return out


async def main_async(a: argparse.Namespace) -> dict[str, Any]:
    _raise_file_limit()
    server_cpu, client_cpu = pin_cpus()
    with tempfile.TemporaryDirectory(prefix="bench-capacity-") as tmp:
        home = Path(tmp) / "hub"
        tokens = await _users(home, a)
        hub = await start_server("hub", home, server_cpu, False, a.profile)
        if client_cpu is not None:
            os.sched_setaffinity(0, {client_cpu})
        try:
            return await (run_idle(hub, a) if a.idle else run_pairs(hub, a, tokens))
        finally:
            await hub.stop()


def main(argv: list[str] | None = None) -> None:
    a = parse(argv)
    before = contention()
    out = asyncio.run(main_async(a))
    out["before"], out["after"] = before, contention()
    width = max(len(k) for k in out)
    for key, value in out.items():
        shown = f"{value:,.2f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")
    if a.json is not None:
        a.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
