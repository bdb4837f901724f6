"""`uv run python -m bench.login_storm [--quick]`: stream p99 with and without a login storm.

One hub process (pinned to the first CPU, the load generator to the second, as
bench.relay does), one user's drones each streaming `response` tokens at a paced
rate through a locked session to an IDE (bench.relay's clients and paced workload:
latency is drone emit -> IDE receive), and a storm of concurrent logins of other
users over REST. Every round measures the stream quietly and under the storm,
alternating which goes first, and prints both p99s and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import statistics
import tempfile
from pathlib import Path

from bench.login_storm.storm import Storm, StormResult
from bench.relay.__main__ import contention, log
from bench.relay.clients import Stream, hub_streams
from bench.relay.servers import ServerProcess, pin_cpus, start_server
from bench.relay.workloads import Latency, paced

#: The issue's bound on stream p99 under a storm of 50 concurrent logins.
TARGET_P99_MS = 20.0
PAUSE_S = 0.5


@dataclasses.dataclass
class Options:
    rounds: int
    streams: int
    rate: float
    logins: int
    warmup: float
    duration: float
    pin: bool


@dataclasses.dataclass
class Round:
    quiet: Latency
    storm: Latency
    logins: StormResult


def parse(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(prog="python -m bench.login_storm", description=__doc__)
    p.add_argument("--quick", action="store_true", help="one short round (~40 s)")
    p.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    p.add_argument("--streams", type=int, default=20, help="paced streams (default 20)")
    p.add_argument("--rate", type=float, default=25, help="tokens/s per stream (default 25)")
    p.add_argument("--logins", type=int, default=50, help="concurrent logins (default 50)")
    p.add_argument(
        "--no-pin",
        action="store_true",
        help="let the hub and the load generator use every CPU (default: one each)",
    )
    a = p.parse_args(argv)
    return Options(
        rounds=1 if a.quick else max(1, min(a.rounds, 20)),
        streams=max(1, min(a.streams, 500)),
        rate=a.rate,
        logins=max(1, min(a.logins, 500)),
        warmup=0.5 if a.quick else 1.0,
        duration=3.0 if a.quick else 5.0,
        pin=not a.no_pin,
    )


async def one_round(
    i: int, streams: list[Stream], server: ServerProcess, storm: Storm, o: Options
) -> Round:
    """The stream alone and under the storm; round `i` decides which goes first."""

    async def quiet() -> Latency:
        return await paced(streams, server, o.rate, o.warmup, o.duration)

    async def stormy() -> tuple[Latency, StormResult]:
        # The storm covers the whole paced run, its warm-up included.
        storming = asyncio.create_task(storm.run(o.warmup + o.duration + 0.2))
        latency = await paced(streams, server, o.rate, o.warmup, o.duration)
        return latency, await storming

    if i % 2 == 0:
        calm = await quiet()
        await asyncio.sleep(PAUSE_S)
        busy, logins = await stormy()
    else:
        busy, logins = await stormy()
        await asyncio.sleep(PAUSE_S)
        calm = await quiet()
    await asyncio.sleep(PAUSE_S)
    return Round(calm, busy, logins)


async def run(o: Options) -> tuple[list[Round], dict[str, str]]:
    server_cpu, client_cpu = pin_cpus() if o.pin else (None, None)
    setup = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "pinning": f"hub CPU {server_cpu}, clients CPU {client_cpu}",
        "load": f"{o.streams} streams x {o.rate:g} tok/s, {o.warmup:g} s warm-up + "
        f"{o.duration:g} s; storm: {o.logins} users logging in back to back",
        "before": contention(),
    }
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="bench-login-storm-") as tmp:
        server = await start_server("hub", Path(tmp) / "hub", server_cpu, plain_asyncio=False)
        streams: list[Stream] = []
        try:
            log("hub up; connecting streams and registering the storm's users")
            streams = await hub_streams(server.url, o.streams, window=64)
            storm = await Storm.register(server.url, o.logins)
            for i in range(o.rounds):
                log(f"round {i + 1}/{o.rounds}")
                rounds.append(await one_round(i, streams, server, storm, o))
        finally:
            await asyncio.gather(*(s.close() for s in streams))
            await server.stop()
    setup["after"] = contention()
    return rounds, setup


def _cell(values: list[float], fmt: str) -> str:
    text = fmt.format(statistics.median(values))
    if len(values) > 1:
        text += f" ({fmt.format(min(values))}-{fmt.format(max(values))})"
    return text


def table(rounds: list[Round], o: Options) -> str:
    """Median over rounds (min-max in brackets) of the stream's latency, quiet and stormy."""
    rows = [
        ("p50 ms", lambda lat: lat.p50_ms, "{:.2f}"),
        ("p99 ms", lambda lat: lat.p99_ms, "{:.2f}"),
        ("max ms", lambda lat: lat.max_ms, "{:.1f}"),
        ("hub CPU %", lambda lat: lat.cpu_share * 100, "{:.0f}"),
    ]
    lines = ["| stream latency | no logins | login storm | storm/none |", "|---|---:|---:|---:|"]
    for label, pick, fmt in rows:
        calm = [pick(r.quiet) for r in rounds]
        busy = [pick(r.storm) for r in rounds]
        ratio = statistics.median(busy) / max(statistics.median(calm), 1e-9)
        lines.append(f"| {label} | {_cell(calm, fmt)} | {_cell(busy, fmt)} | {ratio:.2f} |")
    lost = sum(r.quiet.lost + r.storm.lost for r in rounds)
    lines.append(f"| tokens not arrived 5 s after the last send | | {lost} | |")
    logins = [r.logins for r in rounds]
    lines += [
        "",
        f"| the storm ({o.logins} concurrent logins) | |",
        "|---|---:|",
        f"| logins answered per s | {_cell([s.per_s for s in logins], '{:.1f}')} |",
        f"| login p50 ms | {_cell([s.p50_ms for s in logins], '{:.0f}')} |",
        f"| login p99 ms | {_cell([s.p99_ms for s in logins], '{:.0f}')} |",
        f"| logins not answered 200 | {sum(s.failed for s in logins)} |",
    ]
    return "\n".join(lines)


def verdict(rounds: list[Round]) -> str:
    """Whether the stream's p99 under the storm stays within the target."""
    calm = statistics.median(r.quiet.p99_ms for r in rounds)
    busy = statistics.median(r.storm.p99_ms for r in rounds)
    ok = "ok" if busy <= TARGET_P99_MS else "ABOVE TARGET"
    return (
        f"stream p99: {calm:.2f} ms without logins, {busy:.2f} ms under the storm "
        f"(ratio {busy / max(calm, 1e-9):.2f}; target under the storm <= {TARGET_P99_MS:g} ms: {ok})"
    )


def main(argv: list[str] | None = None) -> None:
    o = parse(argv)
    rounds, setup = asyncio.run(run(o))
    for key, value in setup.items():
        print(f"{key}: {value}")
    print()
    print(table(rounds, o))
    print()
    print(verdict(rounds))


if __name__ == "__main__":
    main()
