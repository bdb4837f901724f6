"""Lines of stdin as an asyncio queue, so typing works while a turn streams."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Iterator
from types import TracebackType

CHUNK = 65536


class LineReader:
    """Reads a file descriptor into a queue of lines; `None` marks the end of input.

    A tty or pipe is watched with the loop's `add_reader`, so nothing blocks and
    the reader can be paused for `getpass`. What epoll cannot watch (a regular
    file, /dev/null) is read by a daemon thread instead.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = b""
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._eof = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def __aenter__(self) -> LineReader:
        self._start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop()

    def _start(self) -> None:
        if self._loop is not None or self._thread is not None or self._eof:
            return
        loop = asyncio.get_running_loop()
        try:
            loop.add_reader(self._fd, self._on_readable)
        except (PermissionError, ValueError):
            self._thread = threading.Thread(target=self._pump, args=(loop,), daemon=True)
            self._thread.start()
            return
        self._loop = loop

    def _stop(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop = None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leave the fd alone inside the block (for `getpass`, which reads the tty itself)."""
        self._stop()
        try:
            yield
        finally:
            self._start()

    def _pump(self, loop: asyncio.AbstractEventLoop) -> None:
        data = b"-"
        while data:
            try:
                data = os.read(self._fd, CHUNK)
            except OSError:
                data = b""
            try:
                loop.call_soon_threadsafe(self._feed, data)
            except RuntimeError:  # the loop is closed: the command is over
                return

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        self._feed(data)

    def _feed(self, data: bytes) -> None:
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
