"""An interactive terminal: the input line at the bottom, the stream above it (prompt_toolkit).

Whole lines are *committed*: written above the input line with prompt_toolkit's
`run_in_terminal`, which erases the prompt, writes, and draws it again. The
stream's growing line and the response preview are not committed yet: they are
drawn as part of the prompt's message, right above the input line, and redrawn
as they change. The growing line is word-wrapped; its full rows are committed
as soon as the next row starts, so a long thought never grows the bottom area.

Commits are queued in order and written by one task, so a burst of deltas costs
one redraw, and what was typed (echoed as a committed line when accepted) never
lands inside a streamed word. Log records and stderr are committed the same way,
and asyncio's own exception handler stays in place (prompt_toolkit's would stop
the chat at "Press ENTER to continue…").
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import sys
import termios
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TextIO, cast

from prompt_toolkit import PromptSession
from prompt_toolkit.application import run_in_terminal
from prompt_toolkit.formatted_text import ANSI
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from rich.console import Console, RenderableType
from rich.text import Text

from gadget.ide.terminal.screen import PROMPT

logger = logging.getLogger(__name__)

#: Rows of the response preview shown above the input line.
PREVIEW_ROWS = 4
_WORD = re.compile(r"\S+\s*|\s+")


class _Lines(io.TextIOBase):
    """A text file for rich: each complete line written is handed to `commit`."""

    def __init__(self, commit: Callable[[str], None]) -> None:
        super().__init__()
        self._commit = commit
        self._partial = ""

    def write(self, data: str) -> int:
        """Commit what is complete; keep a partial last line for later."""
        head, newline, self._partial = (self._partial + data).rpartition("\n")
        if newline:
            self._commit(head + newline)
        return len(data)

    def isatty(self) -> bool:
        """A terminal: rich keeps its colours."""
        return True

    def fileno(self) -> int:
        """The real stdout's descriptor (rich asks it for the terminal's size)."""
        return sys.__stdout__.fileno() if sys.__stdout__ else 1

    encoding = "utf-8"


def wrap_offsets(text: str, width: int, cell_len: Callable[[str], int]) -> list[int]:
    """Where greedy word wrapping at `width` cells breaks `text` (one line, no newline)."""
    breaks: list[int] = []
    column = 0
    for match in _WORD.finditer(text):
        start, end = match.span()
        if column and column + cell_len(text[start:end].rstrip()) > width:
            breaks.append(start)
            column = 0
        while cell_len(text[start:end].rstrip()) > width:  # fold a word longer than a row
            start += _fit(text[start:end], width, cell_len)
            breaks.append(start)
        column += cell_len(text[start:end])
    return breaks


def _fit(word: str, width: int, cell_len: Callable[[str], int]) -> int:
    """How many characters of `word` fit in `width` cells (at least one)."""
    used = 0
    for index, char in enumerate(word):
        used += cell_len(char)
        if used > width:
            return max(1, index)
    return len(word)


@contextlib.contextmanager
def quiet(fd: int) -> Iterator[None]:
    """Between prompts: no kernel echo or line editing (typeahead waits unseen), Ctrl-C signals.

    prompt_toolkit puts the terminal in raw mode only while a prompt runs; in
    between (a command awaiting the hub, the wait at the end of input) the
    kernel would echo keys into the stream and swallow a Ctrl-D.
    """
    try:
        old = termios.tcgetattr(fd)
    except termios.error:
        yield
        return
    new = termios.tcgetattr(fd)
    new[3] &= ~(termios.ICANON | termios.ECHO)
    new[6][termios.VMIN], new[6][termios.VTIME] = 1, 0
    termios.tcsetattr(fd, termios.TCSANOW, new)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, old)


class TtyScreen:
    """The `Screen` of an interactive terminal (see the module's docstring)."""

    def __init__(self) -> None:
        self.on_interrupt: Callable[[], None] | None = None
        self._pending: list[str] = []
        self._tail = Text()
        self._preview = ""
        self._prompt = PROMPT
        self._hint: str | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._session: PromptSession[str] | None = None
        self._restore = contextlib.ExitStack()
        self._file = _Lines(self._commit)
        self.console = Console(file=cast(TextIO, self._file), force_terminal=True, highlight=False)

    async def __aenter__(self) -> TtyScreen:
        self._session = PromptSession(erase_when_done=True, key_bindings=self._keys())
        self._restore.enter_context(quiet(sys.stdin.fileno()))
        self._capture_stderr()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.end_line()
        self._preview = ""
        if self._flusher is not None:
            self._flusher.cancel()
        self._restore.close()
        self._write_pending()

    def _capture_stderr(self) -> None:
        """Log records and stray stderr output are committed too, never drawn over the prompt."""
        errors = cast(TextIO, _Lines(self._commit))
        self._restore.enter_context(contextlib.redirect_stderr(errors))
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in {
                sys.__stderr__,
                sys.__stdout__,
            }:
                old = handler.setStream(errors)
                self._restore.callback(handler.setStream, old)

    def _keys(self) -> KeyBindings:
        keys = KeyBindings()

        @keys.add("c-c")
        def interrupt(event: KeyPressEvent) -> None:
            if self.on_interrupt is None:
                event.app.exit(exception=KeyboardInterrupt, style="class:aborting")
                return
            event.current_buffer.reset()
            self.on_interrupt()

        return keys

    # Output ------------------------------------------------------------------------------

    def grow(self, text: Text) -> None:
        """Append to the growing line; commit the rows it has completed."""
        self._tail.append_text(text)
        *complete, last = self._tail.split("\n", allow_blank=True)
        offsets = wrap_offsets(last.plain, max(10, self.console.width), self._cells)
        if offsets:
            *rows, last = last.divide(offsets)
            for row in rows:
                row.rstrip()  # the spaces at a wrap
            complete += rows
        self._tail = last
        for row in complete:
            self.console.print(row, soft_wrap=True)
        self._refresh()

    def end_line(self) -> None:
        """Commit the growing line."""
        if self._tail.plain:
            tail, self._tail = self._tail, Text()
            self.console.print(tail, soft_wrap=True)
        self._refresh()

    def preview(self, text: str) -> None:
        """Show the last rows of `text` above the input line ("" clears it)."""
        self._preview = text
        self._refresh()

    def show(self, renderable: RenderableType) -> None:
        """Commit a renderable of the stream, after the growing line."""
        self.end_line()
        self.console.print(renderable)

    def note(self, renderable: RenderableType) -> None:
        """Commit a line above the growing line, which goes on untouched."""
        self.console.print(renderable)

    def hint(self, text: str | None) -> None:
        """Put `text` before the input line's prompt sign (None: the prompt alone)."""
        self._hint = text
        self._refresh()

    def bell(self) -> None:
        """The terminal's bell."""
        self._commit("\a")

    def _cells(self, text: str) -> int:
        return Text(text).cell_len

    def _commit(self, text: str) -> None:
        self._pending.append(text)
        if not self._running():
            self._write_pending()
        elif self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())

    def _running(self) -> bool:
        return self._session is not None and self._session.app.is_running

    async def _flush(self) -> None:
        try:
            while self._pending and self._running():
                await run_in_terminal(self._write_pending, in_executor=False)
        except Exception:  # never lose output to a drawing problem
            logger.exception("drawing above the prompt failed")
        self._write_pending()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        text, self._pending = "".join(self._pending), []
        if self._session is None:
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        self._session.output.write_raw(text)
        self._session.output.flush()

    def _refresh(self) -> None:
        if self._running():
            assert self._session is not None
            self._session.app.invalidate()

    def _message(self) -> ANSI:
        """The prompt's message: the growing line or the preview, then the prompt itself."""
        width = max(10, self.console.width)
        with self.console.capture() as capture:
            if self._tail.plain:
                self.console.print(self._tail, soft_wrap=True)
            elif self._preview.strip():
                rows = Text(self._preview.strip(), style="dim").wrap(self.console, width)
                for row in rows[-PREVIEW_ROWS:]:
                    self.console.print(row, soft_wrap=True)
            if self._hint:
                self.console.print(Text(self._hint, style="bold yellow"), end="")
            self.console.print(Text(self._prompt, style="bold"), end="")
        return ANSI(capture.get())

    # Input -------------------------------------------------------------------------------

    async def readline(self, prompt: str = "") -> str | None:
        """Read a line below the stream; once accepted, it is committed as typed."""
        assert self._session is not None, "use TtyScreen as an async context manager"
        self._prompt = prompt or PROMPT
        try:
            line = await self._session.prompt_async(self._message, set_exception_handler=False)
        except EOFError:
            return None
        self.note(Text.assemble((self._prompt, "dim"), line))
        return line

    async def password(self, prompt: str) -> str:
        """Read a line shown as asterisks and not committed."""
        assert self._session is not None, "use TtyScreen as an async context manager"
        self._prompt = prompt
        try:
            return await self._session.prompt_async(
                self._message, is_password=True, set_exception_handler=False
            )
        except EOFError:
            return ""
