"""How turns look in a terminal: thinking dimmed, responses as Markdown, tool calls as panels.

Thinking streams character by character. A response streams a paragraph at a
time: each paragraph (never a half-open code fence) is rendered as Markdown as
soon as the next one starts, the rest when the block ends. That needs no cursor
tricks, so it looks the same in any pseudo-terminal, log or pipe.
"""

from __future__ import annotations

import json

from rich.console import Console, Group
from rich.markdown import Markdown
from rich.panel import Panel
from rich.text import Text

from gadget.protocol import BlockMode, BlockOut, ToolCallOut, TurnOut, TurnStatus

#: Lines and characters of a tool's parameters / result shown in its panel.
MAX_TOOL_LINES = 12
MAX_TOOL_CHARS = 1500


def _pretty(payload: str) -> str:
    """A JSON string shown readably: strings as themselves, short values on one line."""
    try:
        value = json.loads(payload)
    except ValueError:
        return payload
    if isinstance(value, str):
        return value
    compact = json.dumps(value, ensure_ascii=False)
    return compact if len(compact) <= 100 else json.dumps(value, indent=2, ensure_ascii=False)


def truncate(text: str, lines: int = MAX_TOOL_LINES, chars: int = MAX_TOOL_CHARS) -> str:
    """`text` cut to `lines` lines and `chars` characters, saying how much was left out."""
    kept = text[:chars].split("\n")[:lines]
    shown = "\n".join(kept)
    if len(shown) < len(text):
        rest = text[len(shown) :]
        more = rest.count("\n")
        shown += f"\n… ({more} more lines)" if more else f"… ({len(rest)} more characters)"
    return shown


def tool_panel(call_id: str, name: str, params: str, result: str) -> Panel:
    """A tool call as a panel: the tool's name, its parameters and its (truncated) result."""
    body = Group(
        Text(truncate(_pretty(params)), style="cyan"),
        Text("→ " + truncate(_pretty(result))),
    )
    return Panel(
        body,
        title=Text(f"⚙ {name}", style="bold cyan"),
        title_align="left",
        subtitle=Text(call_id, style="dim"),
        subtitle_align="right",
        border_style="cyan",
    )


def split_paragraphs(text: str) -> tuple[str, str]:
    """(complete paragraphs, the rest): the cut is a blank line outside any code fence."""
    cut = text.rfind("\n\n")
    while cut > 0:
        head = text[:cut]
        fences = sum(1 for line in head.split("\n") if line.lstrip().startswith("```"))
        if fences % 2 == 0:
            return head, text[cut + 2 :]
        cut = text.rfind("\n\n", 0, cut)
    return "", text


class TurnRenderer:
    """Prints one session's stream; tracks the open block so blocks never run together."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._mode: BlockMode | None = None
        self._response = ""
        self._at_line_start = True

    def _write(self, text: str, style: str = "") -> None:
        if text:
            self.console.print(
                text, style=style, end="", soft_wrap=True, markup=False, highlight=False
            )
            self._at_line_start = text.endswith("\n")

    def _open(self, mode: BlockMode) -> None:
        if self._mode is not mode:
            self.end_block()
            self._mode = mode

    def end_block(self) -> None:
        """Finish the open block: end a thinking line, render the rest of a response."""
        if self._mode is BlockMode.RESPONDING and self._response.strip():
            self.console.print(Markdown(self._response))
        self._response = ""
        if not self._at_line_start:
            self.console.print()
            self._at_line_start = True
        self._mode = None

    def thinking(self, delta: str) -> None:
        """A reasoning delta, dimmed, printed as it comes."""
        self._open(BlockMode.THINKING)
        self._write(delta, "dim italic")

    def response(self, delta: str) -> None:
        """A response delta: complete paragraphs are rendered as Markdown right away."""
        self._open(BlockMode.RESPONDING)
        done, self._response = split_paragraphs(self._response + delta)
        if done.strip():
            self.console.print(Markdown(done))

    def tool_call(self, call_id: str, name: str, params: str, result: str) -> None:
        """A finished tool call as a panel."""
        self._open(BlockMode.TOOL)
        self.console.print(tool_panel(call_id, name, params, result))

    def note(self, message: str, style: str = "dim") -> None:
        """A line about the session (status, mode, lock), outside any block."""
        self.end_block()
        self.console.print(Text(message, style=style))

    def prompt(self, text: str) -> None:
        """The prompt a turn answers."""
        self.end_block()
        self.console.print(Text.assemble(("> ", "bold green"), (text, "bold")))

    def turn(self, turn: TurnOut, live: bool = False) -> None:
        """A stored turn, or with `live` the running one so far (its last block stays open)."""
        self.prompt(turn.prompt)
        for block in turn.blocks:
            self.block(block)
        if live:
            return
        self.end_block()
        if turn.status is TurnStatus.ERROR:
            self.note(f"✗ turn failed: {turn.errorMessage or 'no reason given'}", "red")

    def block(self, block: BlockOut) -> None:
        """One stored block: text for thinking / responding, the call for a tool."""
        if isinstance(block.content, dict):
            call = ToolCallOut.model_validate(block.content)
            self.tool_call(call.callId, call.name, call.parameters, call.response)
        elif block.mode is BlockMode.THINKING:
            self.thinking(block.content)
        elif block.mode is BlockMode.RESPONDING:
            self.response(block.content)

    def finished(self, success: bool, message: str | None) -> None:
        """The end of a turn."""
        if success:
            self.note("✓ turn finished", "green")
        else:
            self.note(f"✗ turn failed: {message or 'no reason given'}", "bold red")
