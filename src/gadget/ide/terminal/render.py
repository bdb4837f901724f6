"""How turns look: thinking dimmed as it comes, responses as Markdown, tool calls as panels.

Thinking grows the screen's growing line delta by delta. A response streams a
paragraph at a time: each paragraph (never a half-open code fence) is rendered
as Markdown as soon as the next one starts, the rest when the block ends;
meanwhile an interactive screen previews the paragraph in progress. No cursor
tricks are needed for that, so a pipe or a log gets the same text. Model text
always goes through `markdown.inert` (no terminal control from the model).
"""

from __future__ import annotations

from rich.panel import Panel
from rich.text import Text

from gadget.ide.terminal import changes as files
from gadget.ide.terminal.markdown import SafeMarkdown, inert
from gadget.ide.terminal.screen import Screen
from gadget.ide.terminal.tools import cut as truncate
from gadget.ide.terminal.tools import tool_panel
from gadget.ide.terminal.usage import Tally, turn_line
from gadget.protocol import (
    ApprovalRecord,
    BlockMode,
    BlockOut,
    FileChange,
    ToolCallOut,
    TurnOut,
    TurnStatus,
)

__all__ = ["TurnRenderer", "is_cancel", "split_paragraphs", "truncate"]


def is_cancel(message: str | None) -> bool:
    """Whether a failed turn's message says it was cancelled.

    A stored turn says so itself (`"cancelled": true`); the live
    `workOrderComplete(turnId, false, "cancelled")` says it only in its message.
    """
    return (message or "").startswith("cancelled")


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
    """Prints one session's stream on a `Screen`; tracks the open block so blocks never run together."""

    def __init__(self, screen: Screen) -> None:
        self.screen = screen
        self._mode: BlockMode | None = None
        self._response = ""

    def _open(self, mode: BlockMode) -> None:
        if self._mode is not mode:
            self.end_block()
            self._mode = mode

    def end_block(self) -> None:
        """Finish the open block: end a thinking line, render the rest of a response."""
        if self._mode is BlockMode.RESPONDING:
            self.screen.preview("")
            if self._response.strip():
                self.screen.show(SafeMarkdown(self._response))
        self._response = ""
        self.screen.end_line()
        self._mode = None

    def thinking(self, delta: str) -> None:
        """A reasoning delta, dimmed, shown as it comes."""
        self._open(BlockMode.THINKING)
        self.screen.grow(Text(inert(delta), style="dim italic"))

    def response(self, delta: str) -> None:
        """A response delta: complete paragraphs are rendered as Markdown right away."""
        self._open(BlockMode.RESPONDING)
        done, self._response = split_paragraphs(self._response + delta)
        if done.strip():
            self.screen.show(SafeMarkdown(done))
        self.screen.preview(inert(self._response))

    def tool_call(
        self,
        call_id: str,
        name: str,
        params: str,
        result: str,
        approval: ApprovalRecord | None = None,
    ) -> None:
        """A finished tool call as a panel (with who answered, when it waited for an answer)."""
        self._open(BlockMode.TOOL)
        answer = approval.model_dump(mode="json") if approval is not None else None
        self.screen.show(tool_panel(name, params, result, answer))

    def note(self, message: str, style: str = "dim") -> None:
        """A line about the session (status, mode, lock), outside the stream."""
        self.screen.note(Text(inert(message), style=style))

    def prompt(self, text: str) -> None:
        """The prompt a turn answers."""
        self.end_block()
        self.screen.show(Text.assemble(("> ", "bold green"), (inert(text), "bold")))

    def turn(self, turn: TurnOut, live: bool = False) -> None:
        """A stored turn, or with `live` the running one so far (its last block stays open)."""
        self.prompt(turn.prompt)
        for block in turn.blocks:
            self.block(block)
        if live:
            return
        if turn.status is TurnStatus.ERROR:
            self.finished(False, turn.errorMessage, bool(turn.cancelled))
        else:
            self.end_block()
        self.epilogue(turn.changes, Tally.of(turn.stats), bool(turn.reverted))

    def block(self, block: BlockOut) -> None:
        """One stored block: text for thinking / responding, the call for a tool."""
        if isinstance(block.content, dict):
            call = ToolCallOut.model_validate(block.content)
            self.tool_call(call.callId, call.name, call.parameters, call.response, call.approval)
        elif block.mode is BlockMode.THINKING:
            self.thinking(block.content)
        elif block.mode is BlockMode.RESPONDING:
            self.response(block.content)

    def finished(self, success: bool, message: str | None, cancelled: bool = False) -> None:
        """The end of a turn: finished, cancelled, or failed with its message."""
        self.end_block()
        if success:
            line = Text("✓ turn finished", style="green")
        elif cancelled or is_cancel(message):
            line = Text(f"⊘ turn cancelled{_detail(message)}", style="yellow")
        else:
            line = Text(f"✗ turn failed: {inert(message or 'no reason given')}", style="bold red")
        self.screen.show(line)

    def card(self, panel: Panel) -> None:
        """A card that waits for the person (an approval): shown, with the terminal's bell."""
        self.end_block()
        self.screen.show(panel)
        self.screen.bell()

    def line(self, text: Text) -> None:
        """A line of the stream (an answer to a card)."""
        self.end_block()
        self.screen.show(text)

    def hint(self, text: str | None) -> None:
        """What the input line asks for (None: a prompt)."""
        self.screen.hint(text)

    def epilogue(
        self, changes: list[FileChange] | None, usage: Tally, reverted: bool = False
    ) -> None:
        """After a turn's end: the files it changed and its model usage, when known."""
        if changes:
            line = files.summary(changes)
            if reverted:
                line.append("  (undone)", style="yellow")
            self.screen.show(line)
        used = turn_line(usage)
        if used is not None:
            self.screen.show(used)


def _detail(message: str | None) -> str:
    """What a cancel's message adds: " (the drone was offline)", ": stopped by the user"."""
    message = (message or "").strip()
    if is_cancel(message):
        rest = message.removeprefix("cancelled").strip()
        return f" {inert(rest)}" if rest else ""
    return f": {inert(message)}" if message else ""
