"""`uv run python -m bench.relay [--quick] [--tokens]`: hub vs bare relay, and block append cost.

`--tokens` runs the tokens mode instead (bench/relay/tokens.py): model-sized tokens at
`--rates` tokens/s per stream through the real drone outbox, on both servers.

Starts the hub and a bare python-socketio relay in their own processes (pinned
to the first CPU, the load generator to the second), connects the same
clients to both, and runs every workload on both, alternating which server
goes first each round. Prints a Markdown table of medians over the rounds.
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

from bench.relay import report
from bench.relay.blocks import append_cost
from bench.relay.clients import Stream, bare_streams, hub_streams
from bench.relay.servers import ServerProcess, pin_cpus, start_server
from bench.relay.tokens import TokenFigures, tokens
from bench.relay.workloads import paced, unpaced

KINDS = ("hub", "bare")
PAUSE_S = 0.5  # between workloads: the hub's recorder flushes what is buffered


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
    reps: int
    plain_asyncio: bool
    json_path: Path | None
    tokens: bool = False
    #: Tokens mode: (tokens/s per stream, streams) pairs, and coalescing windows (ms).
    loads: tuple[tuple[float, int], ...] = ()
    windows: tuple[float, ...] = (15.0,)


def parse(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__)
    p.add_argument("--quick", action="store_true", help="one short round (~30 s)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of every workload (default 3)")
    p.add_argument("--streams", type=int, default=100, help="streams of the paced workload")
    p.add_argument("--rate", type=float, default=50, help="tokens/s per paced stream")
    p.add_argument("--window", type=int, default=64, help="unacked tokens per unpaced stream")
    p.add_argument(
        "--asyncio", action="store_true", help="serve both on asyncio's own loop instead of uvloop"
    )
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--tokens", action="store_true", help="the tokens mode (real drone outbox)")
    p.add_argument(
        "--loads",
        default="50x200,200x200,1000x80",
        help="tokens mode: RATExSTREAMS,... (tokens/s per stream x streams)",
    )
    p.add_argument(
        "--windows",
        default="15",
        help="tokens mode: outbox coalescing windows in ms, comma-separated",
    )
    a = p.parse_args(argv)
    quick = bool(a.quick)
    loads = tuple(
        (float(r), int(n)) for r, n in (item.split("x") for item in a.loads.split(",") if item)
    )
    return Options(
        tokens=a.tokens,
        loads=loads,
        windows=tuple(float(w) for w in a.windows.split(",") if w),
        rounds=1 if quick else max(1, min(a.rounds, 20)),
        warmup=0.5 if quick else 1.0,
        duration=2.0 if quick else 3.0,
        streams=max(10, min(a.streams, 500)),
        rate=a.rate,
        window=max(2, a.window),
        reps=100 if quick else 400,
        plain_asyncio=a.asyncio,
        json_path=a.json,
    )


async def one_round(streams: list[Stream], server: ServerProcess, o: Options) -> report.Round:
    one = await unpaced(streams[:1], server, o.warmup, o.duration)
    await asyncio.sleep(PAUSE_S)
    ten = await unpaced(streams[:10], server, o.warmup, o.duration)
    await asyncio.sleep(PAUSE_S)
    lat = await paced(streams[: o.streams], server, o.rate, o.warmup, o.duration + 1)
    await asyncio.sleep(PAUSE_S)
    return report.Round(one, ten, lat)


async def relay_rounds(workdir: Path, o: Options, results: report.Results) -> None:
    server_cpu, _ = pin_cpus()
    servers: dict[str, ServerProcess] = {}
    streams: dict[str, list[Stream]] = {}
    try:
        for kind in KINDS:
            servers[kind] = await start_server(kind, workdir / kind, server_cpu, o.plain_asyncio)
        log("servers up; connecting clients")
        streams["bare"] = await bare_streams(servers["bare"].url, o.streams, o.window)
        streams["hub"] = await hub_streams(servers["hub"].url, o.streams, o.window)
        for i in range(o.rounds):
            for kind in KINDS if i % 2 == 0 else KINDS[::-1]:
                log(f"round {i + 1}/{o.rounds}: {kind}")
                results.rounds[kind].append(await one_round(streams[kind], servers[kind], o))
    finally:
        for group in streams.values():
            await asyncio.gather(*(s.close() for s in group))
        for server in servers.values():
            await server.stop()


def describe(o: Options) -> dict[str, str]:
    server_cpu, client_cpu = pin_cpus()
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "pinning": f"server CPU {server_cpu}, clients CPU {client_cpu}",
        "clients": "bench.relay.wire (raw Engine.IO/Socket.IO over websockets' sans-I/O protocol)",
        "loop": "asyncio" if o.plain_asyncio else "uvloop (as `gadget hub`)",
        "load": f"rounds {o.rounds}, {o.warmup:g} s warm-up + {o.duration:g} s per unpaced "
        f"figure, window {o.window}; paced {o.streams} x {o.rate:g} tok/s for {o.duration + 1:g} s",
        "before": contention(),
    }


def contention() -> str:
    """Load average and CPU pressure: other work on the machine skews every figure."""
    text = "loadavg " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    with contextlib.suppress(OSError), open("/proc/pressure/cpu") as fh:
        text += ", CPU pressure " + fh.readline().split(" ", 1)[1].strip()
    return text


async def token_rounds(workdir: Path, o: Options) -> list[tuple[str, TokenFigures]]:
    """Every (load, window) in tokens mode on both servers, alternating which goes first."""
    server_cpu, _ = pin_cpus()
    servers: dict[str, ServerProcess] = {}
    streams: dict[str, list[Stream]] = {}
    out: list[tuple[str, TokenFigures]] = []
    most = max(n for _, n in o.loads)
    try:
        for kind in KINDS:
            servers[kind] = await start_server(kind, workdir / kind, server_cpu, o.plain_asyncio)
        streams["bare"] = await bare_streams(servers["bare"].url, most, o.window)
        streams["hub"] = await hub_streams(servers["hub"].url, most, o.window)
        log(f"servers up, {most} streams each")
        i = 0
        for rate, n in o.loads:
            for window in o.windows:
                for kind in KINDS if i % 2 == 0 else KINDS[::-1]:
                    log(f"tokens {rate:g}/s x {n} streams, window {window:g} ms: {kind}")
                    fig = await tokens(
                        streams[kind][:n], servers[kind], rate, window, o.warmup, o.duration
                    )
                    out.append((kind, fig))
                    await asyncio.sleep(PAUSE_S)
                i += 1
    finally:
        for group in streams.values():
            await asyncio.gather(*(s.close() for s in group))
        for server in servers.values():
            await server.stop()
    return out


async def run_tokens(o: Options) -> list[tuple[str, TokenFigures]]:
    _, client_cpu = pin_cpus()
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    with tempfile.TemporaryDirectory(prefix="bench-tokens-") as tmp:
        return await token_rounds(Path(tmp), o)


async def run(o: Options) -> report.Results:
    results = report.Results(setup=describe(o))
    _, client_cpu = pin_cpus()
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp:
        await relay_rounds(Path(tmp), o, results)
        log("append cost")
        results.append = await append_cost(Path(tmp), o.reps)
    results.setup["after"] = contention()
    return results


def main(argv: list[str] | None = None) -> None:
    o = parse(argv)
    if o.tokens:
        setup = describe(o)
        figures = asyncio.run(run_tokens(o))
        setup["after"] = contention()
        for key, value in setup.items():
            print(f"{key}: {value}")
        print()
        print(report.tokens_table(figures))
        if o.json_path is not None:
            rows = [{"server": k, **dataclasses.asdict(f)} for k, f in figures]
            o.json_path.write_text(json.dumps(rows, indent=2))
        return
    results = asyncio.run(run(o))
    for key, value in results.setup.items():
        print(f"{key}: {value}")
    print()
    print(report.table(results, f"{o.streams} streams x {o.rate:g} tok/s"))
    print()
    print(report.verdict(results))
    if o.json_path is not None:
        o.json_path.write_text(json.dumps(dataclasses.asdict(results), indent=2))


if __name__ == "__main__":
    main()
