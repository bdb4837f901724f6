"""Keep the collector's passes short: collect the young often, freeze what lasts.

A full pass (generation 2) walks every tracked object of the process, so with a
thousand connected pairs it stops the event loop for hundreds of milliseconds
(measured: 9 passes of 161-523 ms in 14 s of streaming at 1,000 pairs,
docs/performance.md). So the survivors of every pass of generation 1 or 2 are moved
to the permanent generation (`gc.freeze()`): what lives long (sockets, turns,
sessions) is frozen soon after it is made, and no full pass walks it again.

That left the young passes long (10-50 ms): CPython starts one when the objects made
outnumber those freed by 700, and a hub that frees old objects as fast as it makes new
ones (text sealed and written, packets sent) lets 60,000-70,000 young objects pile up
between passes. So the hub also collects by the clock: generation 0 every
`young_every_s` (20 ms) and generation 1 every `middle_every` of those (100 ms), each
walking only what was made since (a few thousand objects, about a millisecond).

Frozen objects are still freed by reference counting; only garbage cycles among them
would stay, so every `thaw_every_s` they are thawed (`gc.unfreeze()`) and the next full
pass walks, frees and freezes everything once (one long pass per period, by default an
hour).
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
#: Seconds between two passes of the youngest generation made by the clock.
YOUNG_EVERY_S = 0.02
#: Every this many of those, the pass is of generation 1 instead (its survivors frozen).
MIDDLE_EVERY = 5


class FreezeSurvivors:
    """The policy above, installed by :meth:`start` and removed by :meth:`close`."""

    def __init__(
        self,
        thaw_every_s: float = THAW_EVERY_S,
        generation: int = FREEZE_FROM_GENERATION,
        young_every_s: float = YOUNG_EVERY_S,
        middle_every: int = MIDDLE_EVERY,
    ) -> None:
        self.thaw_every_s = thaw_every_s
        self.generation = generation
        self.young_every_s = young_every_s
        self.middle_every = middle_every
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._clock: asyncio.Task[None] | None = None
        self.freezes = 0
        #: Passes made by the clock, by generation.
        self.timed = [0, 0]

    def start(self) -> None:
        """Freeze what start-up made, and the survivors of every pass of `generation` or
        older from now on."""
        gc.freeze()
        self._loop = asyncio.get_running_loop()
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)
        self._task = self._loop.create_task(self._thaw(), name="gc-thaw")
        self._clock = self._loop.create_task(self._young(), name="gc-young")

    async def close(self) -> None:
        """Stop freezing (what is frozen stays so)."""
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
        for task in (self._task, self._clock):
            if task is None:
                continue
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = self._clock = None

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

    async def _young(self) -> None:
        """Collect the young generations by the clock (see the module docstring)."""
        n = 0
        while True:
            await asyncio.sleep(self.young_every_s)
            n += 1
            generation = 1 if n % self.middle_every == 0 else 0
            gc.collect(generation)
            self.timed[generation] += 1
