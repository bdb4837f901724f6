"""A `gadget chat` process in a pseudo-terminal, read through a VT100 emulator."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import time
from pathlib import Path

import pexpect  # type: ignore[import-untyped]
import pyte  # type: ignore[import-untyped]

from tests.harness import Client, HubHarness

ROOT = Path(__file__).resolve().parents[2]
COLS = 120


class Terminal:
    """A `gadget chat` process in a pty, its output fed to a VT100 emulator (pyte).

    Assertions are on the emulated screen, as a person would read it: the
    input line's redraws do not count, and a streamed line counts once.
    Blocking reads run in a thread.
    """

    def __init__(
        self, *args: str, token: str | None = None, full_cli: bool = False, rows: int = 60
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GADGET_")}
        env.update(TERM="xterm-256color", COLUMNS=str(COLS), LINES=str(rows))
        # The emulator does not answer cursor position requests (a real terminal does).
        env.update(PYTHONUNBUFFERED="1", PROMPT_TOOLKIT_NO_CPR="1")
        if token is not None:
            env["GADGET_TOKEN"] = token
        self.child = pexpect.spawn(
            sys.executable,
            # `gadget.cli` imports every subcommand (seconds on a busy machine); the
            # package's own __main__ runs the same `chat` parser and command alone.
            ["-m", "gadget.cli", "chat", *args]
            if full_cli
            else ["-m", "gadget.ide.terminal", *args],
            cwd=str(ROOT),
            env=env,
            encoding="utf-8",
            codec_errors="replace",
            dimensions=(rows, COLS),
            timeout=15,
        )
        self.vt = pyte.HistoryScreen(COLS, rows, history=10_000)
        self._feed = pyte.Stream(self.vt)
        #: Everything the process wrote, escape sequences included.
        self.raw = io.StringIO()
        self._cursor = 0

    def _read(self, timeout: float) -> bool:
        """Feed what the process writes within `timeout` s to the emulator; False at its end."""
        try:
            data = self.child.read_nonblocking(65536, timeout=timeout)
        except pexpect.TIMEOUT:
            return True
        except pexpect.EOF:
            return False
        self.raw.write(data)
        self._feed.feed(data)
        return True

    def _rows(self) -> list[str]:
        """Every row the terminal has shown: scrolled off the top, then the screen."""
        old = ["".join(line[x].data for x in range(COLS)) for line in self.vt.history.top]
        return old + list(self.vt.display)

    def screen(self) -> str:
        """The terminal's text: every row, without trailing spaces or trailing empty rows."""
        return "\n".join(row.rstrip() for row in self._rows()).rstrip("\n")

    def _find(self, text: str) -> int:
        # Rows of fixed width: a row keeps its offset when rows scroll off the top.
        return "\n".join(self._rows()).find(text, self._cursor)

    def _wait(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        alive = True
        while True:
            found = self._find(text)
            if found >= 0:
                self._cursor = found + 1
                return True
            if not alive or time.monotonic() > deadline:
                return False
            alive = self._read(0.05)

    async def expect(self, text: str, timeout: float = 15, anywhere: bool = False) -> None:
        """Wait until `text` is on the screen after the place of the last match.

        With `anywhere`, before it too: a note is drawn above the growing line.
        """
        if anywhere:
            self._cursor = 0
        if not await asyncio.to_thread(self._wait, text, timeout):
            raise AssertionError(f"{text!r} was not shown; the screen:\n{self.screen()}")

    def send(self, line: str) -> None:
        """Type a line."""
        self.child.sendline(line)

    def _drain(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._read(0.1):
                return True
        return False

    async def exit_status(self, timeout: float = 15) -> int | None:
        """Wait for the process to end; its exit status."""
        if not await asyncio.to_thread(self._drain, timeout):
            raise AssertionError(f"still running after {timeout} s; the screen:\n{self.screen()}")
        self.child.close()
        status: int | None = self.child.exitstatus
        return status

    def close(self) -> None:
        """Kill the process if it still runs, and close the pty."""
        if not self.child.closed:
            self.child.close(force=True)


async def user_with_drone(hub: HubHarness, online: bool = True) -> tuple[str, str, Client | None]:
    """ann's token, her drone's id, and the scripted drone (connected when `online`)."""
    token = await hub.signup("ann")
    drone_id, key = await hub.create_drone(token, "buzz")
    drone = await hub.drone(drone_id, key) if online else None
    return token, drone_id, drone


async def next_turn(drone: Client, seen: int = 0) -> str:
    """The id of the drone's work order number `seen` (0-based), waiting for it."""
    await drone.log.wait_for(
        "processWorkOrder", lambda _: len(drone.log.of("processWorkOrder")) > seen
    )
    return str(drone.log.of("processWorkOrder")[seen][3]["_id"])
