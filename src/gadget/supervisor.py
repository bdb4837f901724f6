"""The drone that `gadget up` started: watched, restarted with backoff, stopped once.

What the drone's exit code means here (see gadget.drone.cli):

- 0: it was told to stop (terminated from the IDE): not restarted.
- 2: it cannot start (a missing workspace, bad settings): `gadget up` stops with its message.
  The same happens without starting it when the `check` given finds a problem.
- 3: another drone process connected with the same id and replaced it: not restarted, the
  hub keeps running (two drones with one id would only replace each other forever).
- anything else, or killed by a signal: restarted after 1, 2, 4 … 30 seconds; the delay
  starts again at 1 s once a drone has run for a minute.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import IO

logger = logging.getLogger(__name__)

#: Bytes of the drone's stderr kept to explain an exit.
TAIL_BYTES = 8192
#: Lines of that tail shown in the explanation.
TAIL_LINES = 6
EXIT_TERMINATED, EXIT_CANNOT_START, EXIT_REPLACED = 0, 2, 3


class Outcome(enum.Enum):
    """Why :meth:`DroneSupervisor.run` returned."""

    STOPPED = "stopped"  # by :meth:`DroneSupervisor.stop`
    TERMINATED = "terminated"  # the drone exited 0 on its own
    CANNOT_START = "cannot start"  # exit code 2
    REPLACED = "replaced"  # exit code 3


def describe_exit(code: int) -> str:
    """`exited with code 1` or `was killed by SIGKILL`."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class DroneSupervisor:
    """Runs `command` as a child process until stopped, restarting it when it dies.

    `check` is asked before every start; a problem it returns ends supervision as
    :attr:`Outcome.CANNOT_START` with that message.
    """

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        *,
        drone_id: str,
        cwd: str | None = None,
        check: Callable[[], str | None] = lambda: None,
        first_delay: float = 1.0,
        max_delay: float = 30.0,
        stable_after: float = 60.0,
        stop_grace: float = 10.0,
        echo: IO[bytes] | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self._command = list(command)
        self._env = dict(env)
        self._drone_id = drone_id
        self._cwd, self._check = cwd, check
        self._first_delay, self._max_delay = first_delay, max_delay
        self._stable_after, self._stop_grace = stable_after, stop_grace
        self._echo = echo if echo is not None else sys.stderr.buffer
        self._preexec = preexec
        self._stopping = asyncio.Event()
        self._proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        """The running drone's process id, if one runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    async def run(self) -> Outcome:
        """Start the drone and keep it running; returns when it should not be restarted."""
        loop = asyncio.get_running_loop()
        failures = 0
        while not self._stopping.is_set():
            if problem := self._check():  # e.g. the workspace went away: no use starting it
                logger.error("the drone cannot start: %s", problem)
                return Outcome.CANNOT_START
            began = loop.time()
            try:
                code, tail = await self._run_once()
            except OSError as exc:  # the interpreter itself cannot be run
                logger.error("cannot start the drone (%s): %s", self._command[0], exc)
                return Outcome.CANNOT_START
            if self._stopping.is_set():
                return Outcome.STOPPED
            outcome = self._judge(code, tail)
            if outcome is not None:
                return outcome
            failures = 1 if loop.time() - began >= self._stable_after else failures + 1
            delay = min(self._first_delay * 2.0 ** (failures - 1), self._max_delay)
            logger.warning(
                "the drone %s; restarting it in %.0fs%s", describe_exit(code), delay, _shown(tail)
            )
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
            except TimeoutError:
                continue
        return Outcome.STOPPED

    def _judge(self, code: int, tail: list[str]) -> Outcome | None:
        """The outcome of an exit that ends supervision, after saying so; None to restart."""
        if code == EXIT_TERMINATED:
            logger.warning(
                "the drone stopped (terminated from the IDE?); the hub keeps running. "
                "Restart `gadget up` to start the drone again%s",
                _shown(tail),
            )
            return Outcome.TERMINATED
        if code == EXIT_REPLACED:
            logger.error(
                "the drone was replaced by another drone process using its id %s (a second "
                "`gadget up` for this folder, or `gadget drone --id %s` run by hand), so it is "
                "not restarted. The hub keeps running: use that drone, or stop it and restart "
                "`gadget up`%s",
                self._drone_id,
                self._drone_id,
                _shown(tail),
            )
            return Outcome.REPLACED
        if code == EXIT_CANNOT_START:
            logger.error("the drone cannot start%s", _shown(tail))
            return Outcome.CANNOT_START
        return None

    async def _run_once(self) -> tuple[int, list[str]]:
        """Run the drone once: (its exit code, the last lines of its stderr)."""
        self._proc = proc = await asyncio.create_subprocess_exec(
            *self._command,
            env=self._env,
            cwd=self._cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            # Its own session: a terminal's Ctrl-C reaches only `gadget up`, which stops it once.
            start_new_session=True,
            preexec_fn=self._preexec,
        )
        self.starts += 1
        if self._stopping.is_set():  # stop() came while it was starting
            self._terminate(proc)
        assert proc.stderr is not None
        tail = bytearray()
        pump = asyncio.create_task(self._pump(proc.stderr, tail))
        code = await proc.wait()
        # A grandchild may still hold the pipe open: what came so far is enough.
        await asyncio.wait({pump}, timeout=1.0)
        pump.cancel()
        lines = tail.decode(errors="replace").splitlines()
        return code, [line for line in lines if line.strip()][-TAIL_LINES:]

    async def _pump(self, stream: asyncio.StreamReader, tail: bytearray) -> None:
        """Copy the drone's stderr to ours, keeping its last bytes in `tail`."""
        while chunk := await stream.read(65536):
            self._echo.write(chunk)
            self._echo.flush()
            tail += chunk
            del tail[:-TAIL_BYTES]

    def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)

    async def stop(self, runner: asyncio.Task[Outcome]) -> None:
        """Stop the drone gracefully (SIGTERM, then SIGKILL after the grace) and `runner`."""
        self._stopping.set()
        proc = self._proc
        if proc is not None and proc.returncode is None:
            self._terminate(proc)
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), self._stop_grace)
            except TimeoutError:
                logger.warning("the drone did not stop within %.0fs: killed", self._stop_grace)
                proc.kill()
        await runner


def _shown(tail: list[str]) -> str:
    """The drone's last stderr lines, indented under the message (nothing when empty)."""
    if not tail:
        return "."
    return ". Its last lines:\n" + "\n".join(f"    {line}" for line in tail)
