"""Keep the collector's full passes short: freeze what survives the middle generation.

A full pass (generation 2) walks every tracked object of the process, so with a
thousand connected pairs it stops the event loop for hundreds of milliseconds
(measured: 3 passes of up to 480 ms in 12 s of streaming at 1,000 pairs,
docs/performance.md). Freezing the survivors of each full pass (`gc.freeze()`) left
the first pass after a thousand pairs were set up walking all of them (90-130 ms).
So the survivors of every pass of generation 1 or 2 are moved to the permanent
generation: what lives long (sockets, turns, sessions) is frozen soon after it is
made, and a full pass walks only what aged since the last freeze. Frozen objects are
still freed by reference counting; only garbage cycles among them would stay, so
every `thaw_every_s` they are thawed (`gc.unfreeze()`) and the next full pass walks,
frees and freezes everything once (one long pass per period, by default an hour).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

logger = logging.getLogger(__name__)

#: Seconds between two thaws (one full walk of every object).
THAW_EVERY_S = 3600.0


#: Passes of this generation or older freeze their survivors.
FREEZE_FROM_GENERATION = 1


class FreezeSurvivors:
    """The policy above, installed by :meth:`start` and removed by :meth:`close`."""

    def __init__(
        self, thaw_every_s: float = THAW_EVERY_S, generation: int = FREEZE_FROM_GENERATION
    ) -> None:
        self.thaw_every_s = thaw_every_s
        self.generation = generation
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.freezes = 0

    def start(self) -> None:
        """Freeze what start-up made, and the survivors of every pass of `generation` or
        older from now on."""
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
        if phase == "stop" and info.get("generation", 0) >= self.generation and self._loop:
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
