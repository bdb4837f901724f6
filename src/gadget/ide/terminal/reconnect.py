"""Survive a dropped connection: reconnect with backoff and jitter, then take the lock again.

python-socketio's own reconnection gives up on a refused connect and knows
nothing of session locks, so the terminal runs its own loop: connect (forever,
with exponential backoff and jitter), then `requestSessionLock` for the same
session, retried every few seconds while the hub refuses it (e.g. the drone is
offline). A token the hub no longer accepts ends the chat with a clear message.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Protocol

from gadget.ide.terminal.api import HubApi
from gadget.ide.terminal.exceptions import HubRefused, HubUnreachable, LoginFailed, TerminalError
from gadget.ide.terminal.render import TurnRenderer

logger = logging.getLogger(__name__)

#: Seconds before the first reconnect attempt; doubled each failed attempt up to the cap.
RECONNECT_BASE_S = 0.5
RECONNECT_CAP_S = 10.0
#: Seconds between attempts at taking the lock again while the hub refuses it.
LOCK_RETRY_S = 2.0


def backoff(attempt: int, base: float = RECONNECT_BASE_S, cap: float = RECONNECT_CAP_S) -> float:
    """Seconds to wait before reconnect attempt number `attempt` (0-based): 50-100% of the step."""
    return min(cap, base * 2.0 ** min(attempt, 30)) * random.uniform(0.5, 1.0)


class Link(Protocol):
    """What the reconnect loop needs of the chat client."""

    api: HubApi
    view: TurnRenderer

    @property
    def connected(self) -> bool:
        """Whether the socket is connected now."""
        ...

    async def open_socket(self) -> None:
        """Open a new socket (`HubUnreachable` when refused)."""
        ...

    async def relock(self) -> None:
        """Lock the current session again and say so (`HubRefused` when refused)."""
        ...

    def fail(self, error: TerminalError) -> None:
        """End the chat with `error`."""
        ...


class Reconnector:
    """Runs one reconnect loop at a time for a `Link`."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether a reconnect is under way."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Reconnect, unless already reconnecting."""
        if not self.running:
            self._task = asyncio.create_task(self._run(), name="gadget-chat-reconnect")

    async def stop(self) -> None:
        """Give up reconnecting (/quit), and wait until the attempt under way is undone."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task})

    async def _run(self) -> None:
        try:
            await self._loop()
        except LoginFailed as exc:
            self._link.fail(exc)
        except Exception as exc:  # a bug must not leave the chat silently offline
            logger.exception("reconnecting failed")
            self._link.fail(TerminalError(f"reconnecting failed: {exc}"))

    async def _loop(self) -> None:
        attempt, refusal = 0, ""
        while True:
            if not self._link.connected:
                await asyncio.sleep(backoff(attempt))
                attempt += 1
                if not await self._connect():
                    continue
            try:
                await self._link.relock()
            except HubRefused as exc:
                if not self._link.connected:
                    continue
                if str(exc) != refusal:
                    refusal = str(exc)
                    self._link.view.note(
                        f"{exc} — retrying the lock every {LOCK_RETRY_S:g} s (/quit to exit)",
                        "yellow",
                    )
                await asyncio.sleep(LOCK_RETRY_S)
                continue
            return

    async def _connect(self) -> bool:
        """One attempt; a refused socket whose token the REST API refuses too is fatal."""
        try:
            await self._link.open_socket()
            return True
        except HubUnreachable as exc:
            logger.debug("reconnect: %s", exc)
        try:
            await self._link.api.me()
        except LoginFailed as exc:
            raise LoginFailed(
                f"{exc}: the token expired or was revoked while reconnecting;"
                " log in again (unset GADGET_TOKEN or pass --username)"
            ) from None
        except TerminalError as exc:
            logger.debug("reconnect: %s", exc)
        return False
