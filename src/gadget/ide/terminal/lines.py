"""Lines of stdin as an asyncio queue, so typing works while a turn streams."""

from __future__ import annotations

import asyncio
import os
from types import TracebackType


class LineReader:
    """Reads a file descriptor with the event loop's reader callback; `None` marks EOF.

    `add_reader` keeps everything on the loop (no thread blocked in `readline` that
    could outlive the command); it needs a selectable fd: a tty, pipe or socket.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = b""
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._eof = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> LineReader:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._on_readable)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop = None

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._eof = True
            self._stop()
            if self._buffer:
                self._queue.put_nowait(self._buffer.decode(errors="replace"))
            self._queue.put_nowait(None)
            return
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._queue.put_nowait(line.decode(errors="replace").rstrip("\r"))

    async def readline(self) -> str | None:
        """The next line without its newline, or `None` at end of input."""
        if self._eof and self._queue.empty():
            return None
        return await self._queue.get()
