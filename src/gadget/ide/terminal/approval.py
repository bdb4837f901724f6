"""A tool call that waits for the person: its card, and the answer typed for it.

The drone asks (`toolApproval`, a numbered stream event) when the session's
permission mode is "ask" and the call would run a command, write or edit a file,
or use an MCP tool not marked read-only. The terminal prints a card with exactly
what would run (the whole command, the diff of an edit, the file a write would
create), rings the bell, and the input line asks `allow? a / d / s`. The first
answer from any IDE wins: the hub's `approvalDecision` (to every IDE) says who
answered, and the pending card is dropped wherever it was shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel, ConfigDict
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from gadget.ide.terminal.markdown import inert
from gadget.ide.terminal.tools import cut, diff_lines, parse_json, pretty, syntax, tool_title
from gadget.protocol import ApprovalDecision, PendingApproval, ToolApproval, TurnOut

#: Lines of a command, diff or file shown on a card (the rest is counted).
CARD_LINES = 200
#: What can be typed to answer, by decision.
ANSWERS = {
    "a": ApprovalDecision.ALLOW,
    "allow": ApprovalDecision.ALLOW,
    "y": ApprovalDecision.ALLOW,
    "yes": ApprovalDecision.ALLOW,
    "d": ApprovalDecision.DENY,
    "deny": ApprovalDecision.DENY,
    "n": ApprovalDecision.DENY,
    "no": ApprovalDecision.DENY,
    "s": ApprovalDecision.ALLOW_SESSION,
    "allow-session": ApprovalDecision.ALLOW_SESSION,
}
#: The input line's prompt while a card waits.
HINT = "allow? a(llow) / d(eny) / s(ession) "
_DONE = {
    ApprovalDecision.ALLOW.value: ("✓ allowed", "green"),
    ApprovalDecision.ALLOW_SESSION.value: ("✓ allowed for the session", "green"),
    ApprovalDecision.DENY.value: ("✗ denied", "yellow"),
}


@dataclass(frozen=True)
class Pending:
    """The call a turn waits on."""

    turn_id: str
    call_id: str
    name: str
    parameters: str
    server: str | None = None
    agent_id: str | None = None

    @classmethod
    def asked(cls, request: ToolApproval) -> Pending:
        """From the drone's `toolApproval`."""
        return cls(
            request.turnId,
            request.callId,
            request.name,
            request.parameters,
            request.server,
            request.agentId,
        )

    @classmethod
    def of_turn(cls, turn_id: str, pending: PendingApproval) -> Pending:
        """From a snapshot's or stored turn's `pendingApproval`."""
        return cls(
            turn_id, pending.callId, pending.name, pending.parameters, pending.server,
            pending.agentId,
        )  # fmt: skip

    def same_call(self, other: Pending) -> bool:
        """Whether `other` asks about the same thing (a restarted drone asks again)."""
        return (self.turn_id, self.name, self.parameters) == (
            other.turn_id,
            other.name,
            other.parameters,
        )


def parse_answer(line: str) -> ApprovalDecision | None:
    """The decision typed (`a`, `deny`, `s`…), or None when the line is not an answer."""
    return ANSWERS.get(line.strip().lower())


def decided_line(decision: str, by: str | None) -> Text:
    """`✓ allowed by ann`, `✗ denied by bob`."""
    label, style = _DONE.get(decision, (f"answered {inert(decision)}", "yellow"))
    return Text(f"{label}{f' by {inert(by)}' if by else ''}", style=style)


def card(pending: Pending) -> Panel:
    """The card: the tool, what exactly would run, and how to answer."""
    args = parse_json(pending.parameters)
    who = f"subagent {pending.agent_id} asks" if pending.agent_id else "the agent asks"
    title = Text.assemble(("⏸ ", "bold yellow"), tool_title(pending.name, args, pending.server))
    body = Group(
        _what(pending.name, args),
        Text(f"\n{who} to run this: a = allow · d = deny · s = allow {pending.name} for the session"
             " · Ctrl-C cancels the turn", style="bold yellow"),
    )  # fmt: skip
    return Panel(body, title=title, title_align="left", border_style="yellow")


def _what(name: str, args: object) -> RenderableType:
    """The exact command, the diff of an edit, the file a write writes, else the parameters."""
    if not isinstance(args, dict):
        return Text(cut(inert(pretty(args)), CARD_LINES), style="cyan")
    command, path = args.get("command"), args.get("path")
    if name == "run_command" and isinstance(command, str):
        rest = {k: v for k, v in args.items() if k != "command"}
        extra = Text(f"\n{inert(pretty(rest))}", style="dim") if rest else Text()
        return Text.assemble(("$ ", "bold"), (cut(inert(command), CARD_LINES), "bold"), extra)
    old, new = args.get("old", args.get("old_string")), args.get("new", args.get("new_string"))
    if name == "edit_file" and isinstance(old, str) and isinstance(new, str):
        styles = {"-": "red", "+": "green", " ": "dim"}
        lines = diff_lines(inert(old), inert(new))
        shown = [Text(f"{op} {line}", style=styles[op]) for op, line in lines[:CARD_LINES]]
        if len(lines) > len(shown):
            shown.append(Text(f"… ({len(lines) - len(shown)} more lines)", style="dim"))
        return Group(Text(f"edit {inert(str(path))}", style="bold"), *shown)
    content = args.get("content")
    if name == "write_file" and isinstance(content, str):
        code = cut(inert(content.rstrip("\n")), CARD_LINES, chars=CARD_LINES * 200)
        return Group(Text(f"write {inert(str(path))}", style="bold"), syntax(code, path))
    return Text(cut(inert(pretty(args)), CARD_LINES), style="cyan")


class ApprovalDecided(BaseModel):
    """Hub→IDE `approvalDecision({"turnId", "callId", "decision", "by"})`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    turnId: str
    callId: str
    decision: str
    by: str | None = None


class CardView(Protocol):
    """Where cards and answers are shown (a `render.TurnRenderer`)."""

    def card(self, panel: Panel) -> None:
        """Show a card and call the person's attention to it."""
        ...

    def line(self, text: Text) -> None:
        """A line of the stream."""
        ...

    def hint(self, text: str | None) -> None:
        """What the input line asks for (None: a prompt, as usual)."""
        ...


class Approvals:
    """The call waiting for an answer (a turn's drone asks about one call at a time)."""

    def __init__(self, view: CardView) -> None:
        self.view = view
        self.pending: Pending | None = None
        self._shown: set[tuple[str, str]] = set()
        self._decided: set[tuple[str, str]] = set()

    def reset(self) -> None:
        """Another session is shown."""
        self._drop()
        self._shown.clear()
        self._decided.clear()

    def asked(self, request: ToolApproval) -> None:
        """The drone's `toolApproval`."""
        self._ask(Pending.asked(request))

    def snapshot(self, turn: TurnOut) -> None:
        """A snapshot or stored turn ahead of the cursor: its pending call, or none any more."""
        if turn.pendingApproval is not None:
            self._ask(Pending.of_turn(turn.id, turn.pendingApproval))
            return
        pending = self.pending
        if pending is None or pending.turn_id != turn.id:
            return
        call = next((c for c in turn.toolCalls if c.callId == pending.call_id), None)
        if call is not None and call.approval is not None:
            self.view.line(decided_line(call.approval.decision.value, call.approval.by))
        else:
            self.view.line(Text("· the call waiting for an answer was answered elsewhere"))
        self._decided.add((pending.turn_id, pending.call_id))
        self._drop()

    def decided(self, payload: object) -> None:
        """The hub's `approvalDecision`: the first answer, from this IDE or another."""
        answer = ApprovalDecided.model_validate(payload)
        key = (answer.turnId, answer.callId)
        self._decided.add(key)
        if key in self._shown:
            self.view.line(decided_line(answer.decision, answer.by))
        if self.pending is not None and (self.pending.turn_id, self.pending.call_id) == key:
            self._drop()

    def ended(self, turn_id: str) -> None:
        """The turn ended (a cancel ends the wait): its card no longer waits."""
        if self.pending is not None and self.pending.turn_id == turn_id:
            self._drop()

    def _ask(self, pending: Pending) -> None:
        key = (pending.turn_id, pending.call_id)
        if key in self._decided or key in self._shown:
            return
        if self.pending is not None and self.pending.same_call(pending):
            self.view.line(Text("· the drone asks again about the same call (it restarted)"))
        else:
            self.view.card(card(pending))
        self.pending = pending
        self._shown.add(key)
        self.view.hint(HINT)

    def _drop(self) -> None:
        if self.pending is not None:
            self.pending = None
            self.view.hint(None)
