"""Keep the collector's full passes short: freeze what survived each one.

A full pass (generation 2) walks every tracked object of the process, so with a
thousand connected pairs it stops the event loop for hundreds of milliseconds
(measured: 3 passes of up to 480 ms in 12 s of streaming at 1,000 pairs,
docs/performance.md). After each full pass the survivors are moved to the permanent
generation (`gc.freeze()`): the next pass walks only what was made since. Frozen
objects are still freed by reference counting; only garbage cycles among them would
stay, so every `thaw_every_s` they are thawed (`gc.unfreeze()`) and the next full pass
walks, frees and freezes everything once (one long pass per period, by default an hour).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

logger = logging.getLogger(__name__)

#: Seconds between two thaws (one full walk of every object).
THAW_EVERY_S = 3600.0


class FreezeAfterFullPasses:
    """The policy above, installed by :meth:`start` and removed by :meth:`close`."""

    def __init__(self, thaw_every_s: float = THAW_EVERY_S) -> None:
        self.thaw_every_s = thaw_every_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.freezes = 0

    def start(self) -> None:
        """Freeze what start-up made, and every full pass' survivors from now on."""
        gc.freeze()
        self._loop = asyncio.get_running_loop()
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)
        self._task = self._loop.create_task(self._thaw(), name="gc-thaw")

    async def close(self) -> None:
        """Stop freezing (what is frozen stays so)."""
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info.get("generation") == 2 and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed under us
                self._loop.call_soon_threadsafe(self._freeze)

    def _freeze(self) -> None:
        gc.freeze()
        self.freezes += 1

    async def _thaw(self) -> None:
        while True:
            await asyncio.sleep(self.thaw_every_s)
            logger.debug("thawing %d frozen objects for one full pass", gc.get_freeze_count())
            gc.unfreeze()
