"""`uv run python -m bench.cluster [--quick]`: one node against two nodes, same clients.

Starts, on one PostgreSQL server and one Redis server of this machine, a hub node
without Redis (its own database) and a cluster of two nodes (A and B, one database,
one Redis namespace); every hub process is pinned to the first CPU, the load generator
to the second (so two nodes get the one core that one node gets: the figures compare
costs, and the projection for N nodes is made from CPU per event). The same clients
(bench.relay's) then stream through three placements, in turns each round:

- one node: drone and IDE on the node without Redis;
- 2 nodes, same node: drone and IDE on node A (every emit still goes through Redis);
- 2 nodes, cross: IDE on node A, drone on node B (the cross-node hop).

Per-process CPU (/proc/<pid>/stat of each node, and of the Redis server) per delivered
event gives each node's share and the projection. Prints Markdown tables of medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from bench.cluster import report
from bench.cluster.nodes import REDIS_URL, Group, database, redis_namespace, start_node
from bench.cluster.streams import placed_streams
from bench.relay.__main__ import contention
from bench.relay.clients import Stream
from bench.relay.servers import ServerProcess, pin_cpus
from bench.relay.workloads import paced, unpaced

PAUSE_S = 0.5
_T0 = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _T0:5.1f} s] {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class Options:
    rounds: int
    warmup: float
    duration: float
    streams: int
    rate: float
    window: int
    json_path: Path | None


def parse(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__)
    p.add_argument("--quick", action="store_true", help="one short round (~1 min)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of every placement (default 3)")
    p.add_argument("--streams", type=int, default=20, help="streams of the paced workload")
    p.add_argument("--rate", type=float, default=50, help="tokens/s per paced stream")
    p.add_argument("--window", type=int, default=64, help="unacked tokens per unpaced stream")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = p.parse_args(argv)
    return Options(
        rounds=1 if a.quick else max(1, min(a.rounds, 20)),
        warmup=0.5 if a.quick else 1.0,
        duration=2.0 if a.quick else 3.0,
        streams=max(10, min(a.streams, 300)),
        rate=a.rate,
        window=max(2, a.window),
        json_path=a.json,
    )


async def one_round(streams: list[Stream], group: Group, o: Options) -> report.Round:
    one = await unpaced(streams[:1], group, o.warmup, o.duration)
    await asyncio.sleep(PAUSE_S)
    before, events = group.each(), sum(s.received for s in streams)
    ten = await unpaced(streams[:10], group, o.warmup, o.duration)
    after, delivered = group.each(), sum(s.received for s in streams) - events
    split = [(b - a) / max(delivered, 1) * 1e6 for a, b in zip(before, after, strict=True)]
    await asyncio.sleep(PAUSE_S)
    lat = await paced(streams[: o.streams], group, o.rate, o.warmup, o.duration + 1)
    await asyncio.sleep(PAUSE_S)
    return report.Round(one, ten, lat, split)


def _pid(server: ServerProcess) -> int:
    return int(server.proc.pid)


async def run_rounds(tmp: Path, o: Options, res: report.Results) -> None:
    cpu, _ = pin_cpus()
    nodes: list[ServerProcess] = []
    streams: dict[str, list[Stream]] = {}
    async with (
        database() as solo_db,
        database() as shared_db,
        redis_namespace() as (namespace, redis_pid),
    ):
        try:
            solo = await start_node(tmp / "one", cpu, {"GADGET_DATABASE_URL": solo_db})
            nodes.append(solo)
            env = {"GADGET_DATABASE_URL": shared_db, "GADGET_REDIS_URL": REDIS_URL,
                   "GADGET_REDIS_NAMESPACE": namespace}  # fmt: skip
            a = await start_node(tmp / "a", cpu, env)  # migrates the shared database first
            nodes.append(a)
            b = await start_node(tmp / "b", cpu, env)
            nodes.append(b)
            log("nodes up; connecting clients")
            n = max(o.streams, 10)
            streams |= await placed_streams(solo.url, {"one": (solo.url, solo.url)}, n, o.window)
            places = {"same": (a.url, a.url), "cross": (b.url, a.url)}
            streams |= await placed_streams(a.url, places, n, o.window)
            extra = [redis_pid] if redis_pid else []
            groups = {
                "one": Group("one node", [_pid(solo)]),
                "same": Group("same node", [_pid(a), _pid(b), *extra]),
                "cross": Group("cross", [_pid(a), _pid(b), *extra]),
            }
            for i in range(o.rounds):
                order = report.CONFIGS if i % 2 == 0 else report.CONFIGS[::-1]
                for config in order:
                    log(f"round {i + 1}/{o.rounds}: {report.TITLES[config]}")
                    res.rounds[config].append(await one_round(streams[config], groups[config], o))
        finally:
            for group in streams.values():
                await asyncio.gather(*(s.close() for s in group))
            for node in nodes:
                await node.stop()
    res.setup["redis"] = f"{REDIS_URL} (pid {redis_pid or 'not on this machine: not metered'})"


def describe(o: Options) -> dict[str, str]:
    server_cpu, client_cpu = pin_cpus()
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "pinning": f"every hub node CPU {server_cpu}, clients CPU {client_cpu}, Redis and "
        "PostgreSQL unpinned",
        "load": f"rounds {o.rounds}, {o.warmup:g} s warm-up + {o.duration:g} s per unpaced "
        f"figure, window {o.window}; paced {o.streams} x {o.rate:g} tok/s for {o.duration + 1:g} s",
        "before": contention(),
    }


async def run(o: Options) -> report.Results:
    res = report.Results(setup=describe(o), streams=o.streams, rate=o.rate)
    _, client_cpu = pin_cpus()
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        await run_rounds(Path(tmp), o, res)
    res.setup["after"] = contention()
    return res


def main(argv: list[str] | None = None) -> None:
    o = parse(argv)
    res = asyncio.run(run(o))
    for key, value in res.setup.items():
        print(f"{key}: {value}")
    print()
    print(report.table(res))
    print()
    print(report.hop(res))
    print()
    print(report.projection(res))
    if o.json_path is not None:
        with contextlib.suppress(OSError):
            o.json_path.write_text(json.dumps(dataclasses.asdict(res), indent=2))


if __name__ == "__main__":
    main()
