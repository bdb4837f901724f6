"""The agent under the person's control (issue 10): approvals, permissions, changes, usage, model.

Typed commands (`/permissions`, `/diff`, `/undo`, `/model`, `/usage`) and the
answer to an approval card, plus the hub's events about them: the session's
permission mode or model changed (`permissionModeChanged`, `modelChanged`), a
call was answered (`approvalDecision`), a turn was undone (`turnReverted`).
Every IDE of the session gets those, so a change made in the web IDE shows here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from gadget.ide.terminal import changes as files
from gadget.ide.terminal.api import HubApi, Json
from gadget.ide.terminal.approval import HINT, parse_answer
from gadget.ide.terminal.exceptions import HubRefused
from gadget.ide.terminal.markdown import inert
from gadget.ide.terminal.render import TurnRenderer
from gadget.ide.terminal.stream import SessionStream
from gadget.ide.terminal.usage import Tally, session_line
from gadget.protocol import (
    HubEvent,
    IdeEvent,
    PermissionMode,
    RevertConflict,
    RevertOutcome,
    TurnOut,
    TurnStatus,
)

#: A command: its argument text → whether to keep going.
Command = Callable[[str], Awaitable[bool]]

#: What each permission mode lets the agent do unasked.
PERMISSIONS = {
    PermissionMode.AUTO: "every tool runs unasked",
    PermissionMode.ASK: "commands, writes, edits and MCP tools not marked read-only wait for you",
    PermissionMode.READ_ONLY: "only reading tools run; the others are refused",
}


class Chat(Protocol):
    """What the controls need of the chat client."""

    api: HubApi
    view: TurnRenderer
    stream: SessionStream
    drone: Json
    project: Json
    chat_id: str | None

    async def call(self, event: IdeEvent, *args: Any) -> Any:
        """Emit with an ack; a refusal raises `HubRefused`."""
        ...


class _Changed(BaseModel):
    """`permissionModeChanged({chatSession, mode})`, `modelChanged({chatSession, model})`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    chatSession: str
    mode: PermissionMode | None = None
    model: str | None = None


class _Reverted(BaseModel):
    """`turnReverted({turnId, reverted, conflicts})`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    turnId: str
    reverted: bool
    conflicts: list[RevertConflict] = []


class Controls:
    """The session's permission mode and model, its turns' changes and usage, approvals."""

    def __init__(self, chat: Chat) -> None:
        self.chat = chat
        #: The chat session as REST last said (permissionMode, model, usage).
        self.session: Json = {}
        self._reverting: set[str] = set()

    def events(self) -> dict[str, Callable[..., None]]:
        """Hub events: name → handler."""
        return {
            HubEvent.APPROVAL_DECISION: self.chat.stream.approvals.decided,
            HubEvent.PERMISSION_MODE_CHANGED: self.on_mode_changed,
            HubEvent.MODEL_CHANGED: self.on_model_changed,
            HubEvent.TURN_REVERTED: self.on_reverted,
        }

    def commands(self) -> dict[str, Command]:
        """Typed commands: name → handler."""
        return {
            "/permissions": self.cmd_permissions,
            "/diff": self.cmd_diff,
            "/undo": self.cmd_undo,
            "/model": self.cmd_model,
            "/usage": self.cmd_usage,
        }

    def _say(self, message: str, style: str = "dim") -> None:
        self.chat.view.note(message, style)

    async def refresh(self) -> Json:
        """The chat session's REST JSON, fetched again."""
        chats = await self.chat.api.chat_sessions(str(self.chat.project["_id"]))
        self.session = next((c for c in chats if c.get("_id") == self.chat.chat_id), {})
        return self.session

    def header(self) -> str:
        """`permissions ask · model qwen3:8b (the drone's default)` for the session's first line."""
        mode = self.session.get("permissionMode", "?")
        return f"permissions {mode} · model {self._model_label()}"

    def _default_model(self) -> str | None:
        model = self.chat.drone.get("model")
        return str(model["name"]) if isinstance(model, dict) and model.get("name") else None

    def _model_label(self) -> str:
        chosen = self.session.get("model")
        if isinstance(chosen, str):
            return chosen
        default = self._default_model()
        return f"{default} (the drone's default)" if default else "the drone's default"

    # Approvals --------------------------------------------------------------------------

    async def answer(self, line: str) -> None:
        """A line typed while a card waits: allow, deny or allow for the session."""
        pending = self.chat.stream.approvals.pending
        decision = parse_answer(line)
        if pending is None:
            return
        if decision is None:
            self._say(f"expected {HINT.strip()} for the waiting call, or /cancel", "yellow")
            return
        try:
            await self.chat.call(
                IdeEvent.ANSWER_APPROVAL, pending.turn_id, pending.call_id, decision.value
            )
        except HubRefused as exc:  # the first answer won: its approvalDecision says whose
            self._say(f"not answered: {exc.reason}", "yellow")

    # Permission mode and model ----------------------------------------------------------

    def on_mode_changed(self, payload: Any) -> None:
        """The session's permission mode changed (here or in another IDE)."""
        changed = _Changed.model_validate(payload)
        if changed.chatSession != self.chat.chat_id or changed.mode is None:
            return
        self.session["permissionMode"] = changed.mode.value
        self._say(f"· permissions: {changed.mode.value} ({PERMISSIONS[changed.mode]})")

    def on_model_changed(self, payload: Any) -> None:
        """The session's model changed: it counts from the next turn."""
        changed = _Changed.model_validate(payload)
        if changed.chatSession != self.chat.chat_id:
            return
        self.session["model"] = changed.model
        self._say(f"· model: {inert(self._model_label())}, from the next turn")

    async def cmd_permissions(self, arg: str) -> bool:
        """/permissions [auto|ask|read-only]."""
        modes = [m.value for m in PermissionMode]
        if not arg:
            await self.refresh()
            current = self.session.get("permissionMode")
            for mode in PermissionMode:
                mark = "*" if mode.value == current else " "
                self._say(f"{mark} {mode.value:<9} {PERMISSIONS[mode]}", "")
            self._say(f"/permissions {'|'.join(modes)} changes it")
            return True
        if arg not in modes:
            self._say(f"expected /permissions {'|'.join(modes)}, got {arg!r}", "yellow")
            return True
        try:
            await self.chat.call(IdeEvent.SET_PERMISSION_MODE, arg)
        except HubRefused as exc:
            self._say(f"✗ permissions {arg} refused: {exc.reason}", "yellow")
        return True

    async def cmd_model(self, arg: str) -> bool:
        """/model lists the drone's models; /model N|NAME|default chooses one."""
        models = [str(m) for m in self.chat.drone.get("models") or []]
        if not arg:
            await self.refresh()
            self._list_models(models)
            return True
        choice: str | None = arg
        if arg == "default":
            choice = None
        elif arg.isdigit():
            if not 1 <= int(arg) <= len(models):
                self._say(f"expected /model N with N from 1 to {len(models)}, got {arg}", "yellow")
                return True
            choice = models[int(arg) - 1]
        try:
            await self.chat.call(IdeEvent.SET_MODEL, choice)
        except HubRefused as exc:
            self._say(f"✗ model {arg} refused: {exc.reason}", "yellow")
        return True

    def _list_models(self, models: list[str]) -> None:
        chosen = self.session.get("model")
        self._say(f"model of this session: {inert(self._model_label())}", "")
        if not models:
            self._say("the drone lists no models (its endpoint has no /models): /model NAME")
        for n, name in enumerate(models, 1):
            mark = "*" if name == chosen else " "
            self._say(f"{mark} {n}) {inert(name)}", "")
        self._say("/model N or /model NAME chooses, /model default goes back to the drone's")

    # Usage ------------------------------------------------------------------------------

    async def cmd_usage(self, arg: str) -> bool:
        """/usage: the session's tokens, model calls and cost.

        Summed over the session's turns as REST gives them (a live turn, or one whose
        end is not stored yet, from the hub's memory), not from the chat session's
        stored `usage`, which a turn that just ended is not in yet.
        """
        turns = await self.chat.api.turns(str(self.chat.chat_id))
        total = Tally()
        for turn in turns:
            total.merge(Tally.of(turn.get("stats")))
        running = self.chat.stream.turn_id
        stream = self.chat.stream.turns.find(running) if running else None
        self.chat.view.screen.note(
            session_line(total, len(turns), stream.shown.usage if stream is not None else None)
        )
        return True

    # Changes ----------------------------------------------------------------------------

    async def _changed_turn(self) -> TurnOut | None:
        """The session's last ended turn that changed files (None: none did)."""
        stored = await self.chat.api.turns(str(self.chat.chat_id))
        for raw in reversed(stored):
            try:
                turn = TurnOut.model_validate(raw)
            except ValidationError:
                continue
            if turn.status is not TurnStatus.PROCESSING and turn.changes:
                return turn
        return None

    async def cmd_diff(self, arg: str) -> bool:
        """/diff: the last turn's changes, a diff per file; /diff N: file N whole."""
        turn = await self._changed_turn()
        if turn is None or not turn.changes:
            self._say("no turn of this session has changed files yet")
            return True
        only = None
        if arg:
            if not arg.isdigit() or not 1 <= int(arg) <= len(turn.changes):
                count = len(turn.changes)
                self._say(f"expected /diff N with N from 1 to {count}, got {arg!r}", "yellow")
                return True
            only = int(arg)
        self.chat.view.screen.note(files.diffs(turn.prompt, turn.changes, only))
        if turn.reverted:
            self._say("this turn is undone: /undo re-applies it", "yellow")
        return True

    async def cmd_undo(self, arg: str) -> bool:
        """/undo: undo the last turn's changes; again: re-apply them."""
        turn = await self._changed_turn()
        if turn is None:
            self._say("no turn of this session has changed files yet: nothing to undo")
            return True
        self._say(f"{'re-applying' if turn.reverted else 'undoing'} the turn > {turn.prompt[:80]}…")
        self._reverting.add(turn.id)
        try:
            value = await self.chat.call(IdeEvent.REVERT_TURN, turn.id)
        except HubRefused as exc:
            self._say(f"✗ not undone: {exc.reason}", "yellow")
            return True
        finally:
            self._reverting.discard(turn.id)
        try:
            outcome = RevertOutcome.model_validate(value)
        except ValidationError:
            self._say(f"the hub's answer to revertTurn was not understood: {value!r}", "yellow")
            return True
        what = f"the turn > {turn.prompt[:80]}"
        self.chat.view.screen.note(files.reverted(what, outcome, undo=not turn.reverted))
        return True

    def on_reverted(self, payload: Any) -> None:
        """A turn of the session was undone or re-applied (an /undo here prints its own)."""
        done = _Reverted.model_validate(payload)
        if done.turnId in self._reverting:
            return
        outcome = RevertOutcome(reverted=done.reverted, conflicts=done.conflicts)
        self.chat.view.screen.note(files.reverted(f"turn {done.turnId}", outcome, undo=None))
