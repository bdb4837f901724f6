"""Background tasks and named timers that are never orphaned."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)


class Tasks:
    """Holds a reference to every background task; named timers replace each other."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timers: dict[str, asyncio.Task[Any]] = {}

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run `coro` in the background; its failure is logged, never lost."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("task %s failed", task.get_name(), exc_info=task.exception())

    def start_timer(self, key: str, delay: float, fn: Callable[[], Awaitable[Any]]) -> None:
        """Run `fn` after `delay` seconds unless cancelled; replaces a timer of the same key."""
        self.cancel_timer(key)

        async def fire() -> None:
            await asyncio.sleep(delay)
            if self._timers.get(key) is asyncio.current_task():
                del self._timers[key]
            await fn()

        self._timers[key] = self.spawn(fire(), name=f"timer:{key}")

    def cancel_timer(self, key: str) -> bool:
        """Cancel the timer `key`; whether one was pending."""
        task = self._timers.pop(key, None)
        if task is None:
            return False
        task.cancel()
        return True

    async def close(self) -> None:
        """Cancel everything still running and wait for it to end."""
        self._timers.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
