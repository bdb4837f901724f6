"""The processes of the cluster benchmark: hub nodes on one PostgreSQL and one Redis.

Each node is `bench.relay.serve hub` (the production uvicorn settings, uvloop) with the
`GADGET_*` variables of a several-node deployment; a group of processes (the nodes, and
the Redis server when it is on this machine) is metered by its CPU time from /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from bench.relay.servers import ServerProcess

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/0"
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (every thread) so far."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


@dataclass
class Group:
    """Processes metered together (what bench.relay.workloads calls a server)."""

    kind: str
    pids: Sequence[int]

    def cpu_seconds(self) -> float:
        """Their CPU time so far, summed."""
        return sum(cpu_seconds(pid) for pid in self.pids)

    def each(self) -> list[float]:
        """Each one's CPU time so far."""
        return [cpu_seconds(pid) for pid in self.pids]


async def start_node(home: Path, cpu: int | None, env: dict[str, str]) -> ServerProcess:
    """A hub process with `env` (pinned to `cpu`), once it accepts connections."""
    cmd = [sys.executable, "-m", "bench.relay.serve", "hub", str(home)]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, env={**os.environ, **env}
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 90)
    except TimeoutError:
        line = b""
    if not line.startswith(b"PORT "):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise RuntimeError(f"a hub node did not start (exit code {proc.returncode})")
    return ServerProcess("hub", proc, f"http://127.0.0.1:{int(line.split()[1])}")


@contextlib.asynccontextmanager
async def database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database (dropped afterwards): its SQLAlchemy URL."""
    try:
        admin = await asyncpg.connect(f"{PG_SERVER}/test", timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise SystemExit(f"PostgreSQL is needed at {PG_SERVER}/test: {exc}") from None
    name = f"gadget_bench_{secrets.token_hex(5)}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_URL}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _here(pid: int) -> bool:
    """Whether process `pid` runs on this machine (its /proc entry can be read)."""
    return os.path.exists(f"/proc/{pid}/stat")


@contextlib.asynccontextmanager
async def redis_namespace() -> AsyncIterator[tuple[str, int | None]]:
    """A namespace of its own (its keys deleted afterwards) and the Redis server's pid
    when it runs on this machine (its CPU is part of the cost)."""
    client = aioredis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        info = await client.info("server")
    except (OSError, aioredis.RedisError) as exc:
        await client.aclose()
        raise SystemExit(f"Redis is needed at {REDIS_URL}: {exc}") from None
    pid = int(info.get("process_id", 0))
    namespace = f"gadget-bench-{secrets.token_hex(5)}"
    try:
        yield namespace, pid if pid and _here(pid) else None
    finally:
        keys = [k async for k in client.scan_iter(match=f"{namespace}:*", count=500)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
