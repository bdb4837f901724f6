"""Real `gadget hub` and `gadget drone` subprocesses for fault and cluster tests.

A test asks the ``procs`` fixture (tests/faults, tests/cluster, tests/fakes conftests) for
processes; each is started the way a person starts it (``python -m gadget.cli hub|drone``,
configured only by ``GADGET_*`` variables), waited for until it serves, and stopped at the
end (SIGTERM, then SIGKILL). What each printed (stdout and stderr, across restarts) is kept
and added to the report of a test that fails::

    async def test_x(procs: Processes, tmp_path: Path) -> None:
        hub = await procs.hub()                      # /healthz answers 200
        api = procs.client(hub.url)                  # tests.harness.HubClient: REST + sockets
        token = await api.signup("ann")
        drone_id, key = await api.create_drone(token, "box")
        settings = drone_settings(ws, llm.base_url, hub_url=hub.url, drone_id=drone_id,
                                  drone_key=key)
        drone = await procs.drone(settings, api, token)   # the hub lists it online
        await hub.kill()                             # SIGKILL
        await hub.start()                            # same port, same data directory
        await drone.wait_online(api, token)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import signal
import sys
from collections.abc import AsyncIterator, Generator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from pydantic_settings import BaseSettings

from gadget.config import DroneSettings, Settings
from tests.harness import HubClient, hub_settings
from tests.test_local import free_port

__all__ = [
    "DroneProcess",
    "HubProcess",
    "ManagedProcess",
    "Output",
    "ProcessError",
    "Processes",
    "procs",
    "pytest_runtest_makereport",
    "settings_env",
]

_POLL_S = 0.05
#: Seconds a hub or drone gets to become ready: a start is mostly imports, which take
#: 5-15 s on a loaded 2-core machine.
READY_S = 60.0
GADGET = (sys.executable, "-m", "gadget.cli")


P = TypeVar("P", bound="ManagedProcess")


class ProcessError(Exception):
    """A subprocess did not do what the test needed (exited, never became ready, hung)."""


def settings_env(settings: BaseSettings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a subprocess that reads exactly `settings` (plus `extra`)."""
    env = dict(os.environ)
    prefix = str(settings.model_config.get("env_prefix", ""))
    for name in type(settings).model_fields:
        key, value = f"{prefix}{name}".upper(), getattr(settings, name)
        if value is None:
            env.pop(key, None)  # unset here means the child's default, as in `settings`
        elif isinstance(value, bool):
            env[key] = "true" if value else "false"
        elif isinstance(value, str | int | float | Path):
            env[key] = str(value)
        else:
            env[key] = json.dumps(value, default=str)  # pydantic-settings parses JSON
    env.update(extra or {})
    return env


class Output:
    """What a process printed (stdout and stderr), kept in a log file across its restarts.

    A file, not a pipe: nothing blocks when nobody reads, a grandchild that keeps the
    descriptor open cannot hold up an exit, and the log outlives the test in tmp_path.
    """

    def __init__(self, name: str, path: Path) -> None:
        self.name, self.path = name, path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()

    def mark(self, text: str) -> None:
        """A line of our own (a start, a signal, an exit), set apart by dashes."""
        with self.path.open("a") as log:  # O_APPEND, like the child's: lines never overlap
            log.write(f"--- {self.name}: {text} ---\n")

    def text(self) -> str:
        """All output so far."""
        return self.path.read_text(errors="replace")

    @property
    def lines(self) -> list[str]:
        """All output so far, line by line."""
        return self.text().splitlines()

    def tail(self, count: int = 60) -> str:
        """The last `count` lines."""
        return "\n".join(self.lines[-count:])

    async def wait_for(self, pattern: str, timeout: float = 30, since: int = 0) -> str:
        """The first line from index `since` on that matches the regex `pattern`."""
        regex = re.compile(pattern)
        async with asyncio.timeout(timeout):
            while True:  # polled: a file has no event to wait on
                for line in self.lines[since:]:
                    if regex.search(line):
                        return line
                await asyncio.sleep(_POLL_S)


class ManagedProcess:
    """A subprocess that can be signalled, killed and started again; its output is kept."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log: Path,
        cwd: Path | None = None,
    ) -> None:
        """`log` is the file its output goes to (appended to on each start)."""
        self.name, self.argv, self.env, self.cwd = name, list(argv), dict(env), cwd
        self.output = Output(name, log)
        self.starts = 0
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        """The pid of the current (or last) run."""
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        """Start it (again); returns once it is spawned, not once it is ready."""
        if self.running:
            raise ProcessError(f"{self.name} is already running (pid {self.pid})")
        self.starts += 1
        self.output.mark(f"start #{self.starts}: {shlex.join(self.argv)}")
        with self.output.path.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv, env=self.env, cwd=self.cwd, stdin=asyncio.subprocess.DEVNULL,
                stdout=log, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
        self.output.mark(f"pid {self._proc.pid}")

    def send_signal(self, sig: signal.Signals) -> None:
        """Send `sig` if it runs."""
        if self._proc is not None and self.running:
            self.output.mark(f"sending {sig.name}")
            self._proc.send_signal(sig)

    async def wait(self, timeout: float = 30) -> int:
        """Its exit code, once it has exited (ProcessError after `timeout` s)."""
        if self._proc is None:
            raise ProcessError(f"{self.name} was never started")
        if self._proc.returncode is not None:
            return self._proc.returncode
        try:
            code = await asyncio.wait_for(self._proc.wait(), timeout)
        except TimeoutError:
            raise self.failure(f"still running after {timeout} s") from None
        self.output.mark(f"exited with code {code}")
        return code

    async def kill(self) -> int:
        """SIGKILL (a crash: nothing is flushed); the exit code (-9)."""
        self.send_signal(signal.SIGKILL)
        return await self.wait()

    async def terminate(self, timeout: float = 15) -> int:
        """SIGTERM and its exit code; SIGKILL and ProcessError if it outlives `timeout`."""
        self.send_signal(signal.SIGTERM)
        try:
            return await self.wait(timeout)
        except ProcessError:
            await self.kill()
            raise

    def failure(self, what: str) -> ProcessError:
        """An error saying `what` went wrong, with the end of the process's output."""
        return ProcessError(
            f"{self.name} (pid {self.pid}): {what}\n"
            f"--- last output of {self.name} ({self.output.path}) ---\n{self.output.tail()}"
        )


class HubProcess(ManagedProcess):
    """`gadget hub` with `settings` (a fixed port: a restart serves the same URL and data)."""

    def __init__(self, settings: Settings, log: Path, name: str = "hub") -> None:
        super().__init__(name, [*GADGET, "hub"], settings_env(settings), log)
        self.settings = settings
        self.url = f"http://{settings.host}:{settings.port}"

    async def start(self, timeout: float = READY_S) -> None:
        """Start it and wait until `/healthz` answers 200."""
        await super().start()
        await self.wait_healthy(timeout)

    async def wait_healthy(self, timeout: float = READY_S) -> None:
        """Until `GET /healthz` answers 200 (ProcessError if it exits or times out)."""
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as http:
            try:
                async with asyncio.timeout(timeout):
                    while self.running:
                        with contextlib.suppress(httpx.TransportError):
                            if (await http.get("/healthz")).status_code == 200:
                                return
                        await asyncio.sleep(_POLL_S)
            except TimeoutError:
                raise self.failure(f"/healthz did not answer 200 within {timeout} s") from None
        code = await self.wait()
        raise self.failure(f"exited with code {code} before /healthz answered 200")

    async def restart(self, timeout: float = READY_S) -> None:
        """SIGKILL it if it runs, then start it on the same port and data directory."""
        if self.running:
            await self.kill()
        await self.start(timeout)


class DroneProcess(ManagedProcess):
    """`gadget drone` with `settings`, ready once the hub lists it online."""

    def __init__(
        self, settings: DroneSettings, hub: HubClient, token: str, log: Path, name: str = "drone"
    ) -> None:
        """`hub` and `token` (its owner's) are how readiness is checked, over REST."""
        super().__init__(name, [*GADGET, "drone"], settings_env(settings), log)
        self.settings, self.hub, self.token = settings, hub, token

    async def start(self, timeout: float = READY_S, wait_online: bool = True) -> None:
        """Start it and (unless told not to) wait until the hub lists it online."""
        await super().start()
        if wait_online:
            await self.wait_online(timeout)

    async def online(self) -> bool:
        """Whether `GET /api/drones` shows this drone online now."""
        r = await self.hub.http.get("/api/drones", headers=self.hub.bearer(self.token))
        r.raise_for_status()
        mine = [d for d in r.json() if d["_id"] == self.settings.drone_id]
        return bool(mine and mine[0].get("online"))

    async def wait_online(self, timeout: float = READY_S) -> None:
        """Until the hub lists it online (ProcessError if it exits or times out)."""
        try:
            async with asyncio.timeout(timeout):
                while self.running:
                    with contextlib.suppress(httpx.TransportError):
                        if await self.online():
                            return
                    await asyncio.sleep(_POLL_S)
        except TimeoutError:
            raise self.failure(f"not listed online by the hub within {timeout} s") from None
        code = await self.wait()
        raise self.failure(f"exited with code {code} before the hub listed it online")


class Processes:
    """The subprocesses and hub clients of one test, all stopped and closed at the end."""

    def __init__(self, root: Path) -> None:
        """Hubs keep their data directories under `root` (one per hub name), logs in root/logs."""
        self.root = root
        self.started: list[ManagedProcess] = []
        self._clients: list[HubClient] = []

    def add(self, proc: P) -> P:
        """Track `proc` (stopped and reported with the others); returns it."""
        self.started.append(proc)
        return proc

    async def hub(self, name: str = "hub", start: bool = True, **overrides: Any) -> HubProcess:
        """A hub on a free port with its own home under `root`; `overrides` are Settings."""
        values: dict[str, Any] = {"port": free_port(), **overrides}
        settings = hub_settings(self.root / name, **values)
        proc = self.add(HubProcess(settings, self.log(name), name))
        if start:
            await proc.start()
        return proc

    async def drone(
        self,
        settings: DroneSettings,
        hub: HubClient,
        token: str,
        name: str = "drone",
        wait_online: bool = True,
        timeout: float = READY_S,
    ) -> DroneProcess:
        """A started drone (listed online by `hub`, unless told not to wait)."""
        proc = self.add(DroneProcess(settings, hub, token, self.log(name), name))
        await proc.start(timeout, wait_online)
        return proc

    def log(self, name: str) -> Path:
        """Where the process called `name` writes its output."""
        return self.root / "logs" / f"{name}.log"

    def client(self, url: str) -> HubClient:
        """A REST and Socket.IO client of the hub at `url`, closed at the end."""
        client = HubClient(url)
        self._clients.append(client)
        return client

    def sections(self) -> list[tuple[str, str]]:
        """(title, output) of every process, for a test report."""
        return [(f"output of {p.name}", p.output.text()) for p in self.started]

    async def close(self) -> None:
        """Close the clients, then stop every process (SIGTERM, SIGKILL if it lingers)."""
        clients, self._clients = self._clients, []
        for client in clients:
            await client.close()

        async def stop(proc: ManagedProcess) -> None:
            if proc.running:
                with contextlib.suppress(ProcessError):
                    await proc.terminate(timeout=10)

        await asyncio.gather(*(stop(p) for p in self.started))

    async def __aenter__(self) -> Processes:
        return self

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        await self.close()
        if exc is not None:  # outside the fixture, the output travels with the error
            for title, text in self.sections():
                exc.add_note(f"--- {title} ---\n{text}")


_GROUP = pytest.StashKey[Processes]()


@pytest.fixture
async def procs(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Processes]:
    """The test's subprocesses; their output is added to the report when the test fails."""
    group = Processes(tmp_path / "procs")
    request.node.stash[_GROUP] = group
    try:
        yield group
    finally:
        await group.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Add every process's output to the report of a failed phase (import it in a conftest)."""
    report = yield
    group = item.stash.get(_GROUP, None)
    if group is not None and report.failed:
        report.sections.extend(group.sections())
    return report
