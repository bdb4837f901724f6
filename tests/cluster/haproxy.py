"""Debian's HAProxy in front of hub subprocesses, configured from the shipped deploy/haproxy.cfg.

:func:`render` rewrites only what a test must: addresses (the frontend on a free loopback
port, one ``server`` line per hub port, the stats page on another free port), a faster
health-check interval, and the global lines that need root (chroot, user, admin socket).
Everything else (timeouts, WebSocket tunnelling, health checks, the cookie) is what an
operator runs. In a test::

    lb = await start_haproxy(procs, [hub1.settings.port, hub2.settings.port])
    await lb.wait_status({"hub1": "UP", "hub2": "UP"})
    api = procs.client(lb.url)
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import re
import shutil
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
import pytest

from tests.fakes.processes import ManagedProcess, Processes
from tests.test_local import free_port

__all__ = ["DEPLOY_CFG", "HaProxy", "haproxy_binary", "render", "start_haproxy"]

DEPLOY_CFG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg"
_DEBIAN_HAPROXY = "/usr/sbin/haproxy"
#: Global settings that need root or write outside the test's directory.
_PRIVILEGED = re.compile(r"^\s+(chroot|user|group|stats socket)\b")
_SECTION = re.compile(r"^(global|defaults|frontend|backend|listen)\b\s*(\S*)")


def haproxy_binary() -> str:
    """Debian's haproxy, or a skip saying how to get it."""
    found = shutil.which("haproxy") or (
        _DEBIAN_HAPROXY if os.access(_DEBIAN_HAPROXY, os.X_OK) else None
    )
    if found is None:
        pytest.skip(f"HAProxy is not installed ({_DEBIAN_HAPROXY}): apt-get install haproxy")
    return found


def render(
    backends: Sequence[int],
    port: int,
    stats_port: int,
    *,
    check_inter: str = "200ms",
    template: str | None = None,
) -> str:
    """`template` (deploy/haproxy.cfg) for hubs on 127.0.0.1:`backends`, served on `port`.

    Raises ValueError when the template lacks a line this rewrites, so a changed deploy
    file cannot silently test something else.
    """
    lines = (DEPLOY_CFG.read_text() if template is None else template).splitlines()
    out: list[str] = []
    section, done = "", set()
    for line in lines:
        head = _SECTION.match(line)
        if head:
            section = " ".join(filter(None, head.groups()))
        body = line.strip()
        if section == "global" and _PRIVILEGED.match(line):
            continue
        if section in ("frontend gadget", "frontend stats") and body.startswith("bind "):
            line = f"    bind 127.0.0.1:{port if section == 'frontend gadget' else stats_port}"
            done.add(section)
        elif section == "backend hubs" and body.startswith("default-server "):
            line = re.sub(r"\binter \S+", f"inter {check_inter}", line)
            done.add("default-server")
        elif section == "backend hubs" and body.startswith("server "):
            if "server" not in done:
                out += [f"    server hub{i} 127.0.0.1:{p} cookie hub{i}"
                        for i, p in enumerate(backends, 1)]  # fmt: skip
                done.add("server")
            continue
        out.append(line)
    missing = {"frontend gadget", "frontend stats", "default-server", "server"} - done
    if missing:
        raise ValueError(f"expected the deploy config to have {sorted(missing)}; it has not")
    return "\n".join(out) + "\n"


class HaProxy:
    """`haproxy -f CFG -db` (foreground) in front of hubs on loopback `backends` ports."""

    def __init__(self, backends: Sequence[int], workdir: Path, check_inter: str = "200ms") -> None:
        """Writes the rendered config to `workdir`; the process logs to workdir/haproxy.log."""
        self.port, self.stats_port = free_port(), free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "haproxy.cfg"
        self.config.write_text(
            render(backends, self.port, self.stats_port, check_inter=check_inter)
        )
        argv = [haproxy_binary(), "-f", str(self.config), "-db"]
        self.process = ManagedProcess("haproxy", argv, os.environ, workdir / "haproxy.log")

    @property
    def url(self) -> str:
        """The load balancer's URL: what clients connect to."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 30) -> None:
        """Start it and wait until its stats page answers (both ports are then bound)."""
        await self.process.start()
        async with asyncio.timeout(timeout):
            while self.process.running:
                with contextlib.suppress(httpx.TransportError):
                    await self.servers()
                    return
                await asyncio.sleep(0.05)
        raise self.process.failure(f"exited with code {await self.process.wait()}")

    async def stop(self, timeout: float = 15) -> int:
        """Soft-stop it (SIGUSR1: stop listening, let open connections end); its exit code."""
        self.process.send_signal(signal.SIGUSR1)
        return await self.process.wait(timeout)

    async def servers(self) -> dict[str, str]:
        """Each hub server's state as HAProxy sees it: UP, DOWN, `UP 1/2` (rising)..."""
        async with httpx.AsyncClient(timeout=5) as http:
            r = await http.get(f"http://127.0.0.1:{self.stats_port}/;csv")
        r.raise_for_status()
        rows = csv.DictReader(r.text.removeprefix("# ").splitlines())
        return {
            row["svname"]: row["status"]
            for row in rows
            if row["pxname"] == "hubs" and row["svname"] not in ("FRONTEND", "BACKEND")
        }

    async def wait_status(self, expected: Mapping[str, str], timeout: float = 30) -> None:
        """Until every named server has its expected state (health checks take a while)."""
        seen: dict[str, str] = {}
        try:
            async with asyncio.timeout(timeout):
                while True:
                    seen = await self.servers()
                    if all(seen.get(name) == state for name, state in expected.items()):
                        return
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise self.process.failure(f"servers {seen}, expected {dict(expected)}") from None


async def start_haproxy(
    procs: Processes, backends: Sequence[int], check_inter: str = "200ms"
) -> HaProxy:
    """A started HAProxy whose process `procs` stops and reports with the test's others."""
    lb = HaProxy(backends, procs.root / "haproxy", check_inter)
    procs.add(lb.process)
    await lb.start()
    return lb
