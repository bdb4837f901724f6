"""Running a process's main coroutine on the fastest event loop available."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed (it halves the hub's cost per relayed event), else None."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], *, fast: bool = True) -> T:
    """Run `main` to completion, on uvloop when `fast` and available (docs/performance.md)."""
    with asyncio.Runner(loop_factory=loop_factory() if fast else None) as runner:
        return runner.run(main)
