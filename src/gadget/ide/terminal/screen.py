"""Where the chat's output goes and its input comes from: one interface, two screens.

The stream of a turn has a *growing line* (thinking, printed as it comes), a
*preview* (the response paragraph not complete yet, later replaced by its
Markdown rendering) and whole renderables (paragraphs, tool panels, prompts).
Notes (status lines, command output, menus) are not part of the stream.

- `PlainScreen` (stdin is a pipe or a file, or TERM=dumb): everything is
  written to stdout as it comes; a note ends the growing line first. Nothing is
  typed while it prints, so nothing can interleave.
- `TtyScreen` (`tty`): the input line stays at the bottom (prompt_toolkit); the
  growing line and the preview are shown just above it, and whole lines are
  committed above those. A note is committed above the growing line instead of
  breaking it, so neither typing nor notes ever split a streamed word.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import sys
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from rich.console import Console, RenderableType
from rich.text import Text

from gadget.ide.terminal.lines import LineReader

#: The prompt of the read-eval loop on an interactive terminal.
PROMPT = "› "  # noqa: RUF001 (a prompt sign, not a typo for ">")


class Screen(Protocol):
    """The output and input of one `gadget chat`."""

    #: For notes and menus: whatever it prints is committed as whole lines.
    console: Console
    #: Called on Ctrl-C while a line is being read (else Ctrl-C interrupts the command).
    on_interrupt: Callable[[], None] | None

    def grow(self, text: Text) -> None:
        """Append to the growing line of the stream (shown as it comes, kept as it is)."""
        ...

    def end_line(self) -> None:
        """The growing line is complete."""
        ...

    def preview(self, text: str) -> None:
        """Show `text` as in progress (it will be replaced by its rendering); "" clears it."""
        ...

    def show(self, renderable: RenderableType) -> None:
        """Print a renderable of the stream, after the growing line."""
        ...

    def note(self, renderable: RenderableType) -> None:
        """Print a line outside the stream."""
        ...

    def hint(self, text: str | None) -> None:
        """Ask for something else than a prompt on the input line (None: a prompt again)."""
        ...

    def bell(self) -> None:
        """Call the person's attention (a card waits for an answer)."""
        ...

    async def readline(self, prompt: str = "") -> str | None:
        """The next typed line, or `None` at the end of input."""
        ...

    async def password(self, prompt: str) -> str:
        """A line typed without being shown."""
        ...


class PlainScreen:
    """Writes to a console as things come; reads lines from a `LineReader`."""

    def __init__(self, console: Console, reader: LineReader) -> None:
        self.console = console
        self.on_interrupt: Callable[[], None] | None = None
        self._reader = reader
        self._at_line_start = True

    def grow(self, text: Text) -> None:
        """Print `text` now, without a newline."""
        if text.plain:
            self.console.print(text, end="", soft_wrap=True)
            self._at_line_start = text.plain.endswith("\n")

    def end_line(self) -> None:
        """End the growing line with a newline, if one is open."""
        if not self._at_line_start:
            self.console.print()
            self._at_line_start = True

    def preview(self, text: str) -> None:
        """Nothing: a pipe or log gets the rendering only."""

    def show(self, renderable: RenderableType) -> None:
        """Print `renderable` on a line of its own."""
        self.end_line()
        self.console.print(renderable)

    def note(self, renderable: RenderableType) -> None:
        """Print `renderable` on a line of its own (the growing line goes on after it)."""
        self.show(renderable)

    def hint(self, text: str | None) -> None:
        """Say what the next line answers (there is no input line to change)."""
        if text:
            self.note(Text(text.strip(), style="bold"))

    def bell(self) -> None:
        """Nothing: a pipe or a log has no bell."""

    async def readline(self, prompt: str = "") -> str | None:
        """Show `prompt`, then the next line of stdin."""
        if prompt:
            self.console.print(Text(prompt, style="bold"), end="")
        return await self._reader.readline()

    async def password(self, prompt: str) -> str:
        """`getpass` on the controlling terminal (stdin is left to it meanwhile)."""
        with self._reader.paused():
            return await asyncio.to_thread(getpass.getpass, prompt)


def interactive() -> bool:
    """Whether stdin and stdout are a terminal that can keep an input line apart."""
    dumb = os.environ.get("TERM", "") in {"", "dumb"}
    return not dumb and sys.stdin.isatty() and sys.stdout.isatty()


@contextlib.asynccontextmanager
async def open_screen(console: Console) -> AsyncIterator[Screen]:
    """A `TtyScreen` on an interactive terminal, else a `PlainScreen` on `console`."""
    if interactive():
        from gadget.ide.terminal.tty import TtyScreen

        async with TtyScreen() as tty:
            yield tty
        return
    async with LineReader(sys.stdin.fileno()) as reader:
        yield PlainScreen(console, reader)
