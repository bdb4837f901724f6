"""Server processes as seen from the load generator: start, CPU time, stop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class ServerProcess:
    """A running `bench.relay.serve` process on a loopback port."""

    kind: str
    proc: asyncio.subprocess.Process
    url: str

    def cpu_seconds(self) -> float:
        """User + system CPU time of the whole process (every thread) so far."""
        with open(f"/proc/{self.proc.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS

    async def stop(self, timeout: float = 15) -> None:
        """SIGTERM (graceful: the hub drains its recorder), SIGKILL after `timeout` s."""
        if self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def start_server(
    kind: str, home: Path, cpu: int | None, plain_asyncio: bool, profile: Path | None = None
) -> ServerProcess:
    """Start a hub or bare relay process (pinned to `cpu`) and wait for its port."""
    cmd = [sys.executable, "-m", "bench.relay.serve", kind, str(home)]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    if plain_asyncio:
        cmd.append("--asyncio")
    if profile is not None:
        cmd += ["--profile", str(profile)]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
    except TimeoutError:
        line = b""
    if not line.startswith(b"PORT "):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise RuntimeError(f"{kind} server did not start (exit code {proc.returncode})")
    port = int(line.split()[1])
    return ServerProcess(kind, proc, f"http://127.0.0.1:{port}")


@functools.cache
def pin_cpus() -> tuple[int | None, int | None]:
    """(server CPU, client CPU): the first two CPUs we may use, or no pinning with one.

    Read once per process: the benches pin themselves to the client CPU before they start
    their servers, and a second reading would then see that one CPU only (and start the
    servers unpinned, inheriting the client's CPU: both on one core).
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[0], cpus[1]
