"""Events from IDEs (the reference's CodeSession): validate, authorize, call a service, reply."""

from __future__ import annotations

from typing import Any

from gadget.hub.bus import Bus, user_room
from gadget.hub.control import AgentControl
from gadget.hub.exceptions import Refused
from gadget.hub.sessions import Sessions
from gadget.hub.sockets.base import Handler, Reply
from gadget.hub.state.ides import IdeLink, Ides
from gadget.hub.turns import WorkOrders
from gadget.protocol import (
    MAX_CONTENT,
    MAX_ID,
    ApprovalAnswer,
    ArgsError,
    IdeEvent,
    Ref,
    parse_args,
    parse_mode,
    parse_permission_mode,
)


def _ref(value: Any, what: str) -> str:
    if not isinstance(value, dict):
        raise ArgsError(f"{what}: expected an object with _id, got {type(value).__name__}")
    return Ref.model_validate(value).id


def _chat_session_id(value: Any) -> str | None:
    """`null` or `{}` asks for a new chat session; `{"_id"}` resumes one."""
    if value is None or value == {}:
        return None
    return _ref(value, "chatSession")


def _id(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ArgsError(f"{what}: expected an id string, got {type(value).__name__}")
    if not 0 < len(value) <= MAX_ID:
        raise ArgsError(f"{what}: expected 1-{MAX_ID} characters, got {len(value)}")
    return value


class IdeHandlers:
    """One method per IDE→hub event; acks answer `(success, value or reason)`."""

    def __init__(
        self,
        ides: Ides,
        sessions: Sessions,
        turns: WorkOrders,
        control: AgentControl,
        bus: Bus,
    ) -> None:
        self._bus = bus
        self._ides = ides
        self._sessions = sessions
        self._turns = turns
        self._control = control

    def table(self) -> dict[str, Handler]:
        """The dispatch table: event name → handler."""
        return {
            IdeEvent.REQUEST_SESSION_LOCK: self.on_lock,
            IdeEvent.RELEASE_SESSION_LOCK: self.on_release,
            IdeEvent.REQUEST_WORKSPACE_MODE: self.on_mode,
            IdeEvent.SUBMIT_PROMPT: self.on_prompt,
            IdeEvent.CANCEL_WORK_ORDER: self.on_cancel,
            IdeEvent.REQUEST_TERMINATION: self.on_terminate,
            IdeEvent.SET_PERMISSION_MODE: self.on_permission_mode,
            IdeEvent.ANSWER_APPROVAL: self.on_answer,
            IdeEvent.REVERT_TURN: self.on_revert,
            IdeEvent.SET_MODEL: self.on_model,
            IdeEvent.WATCH_DRONES: self.on_watch,
        }

    def _ide(self, sid: str) -> IdeLink:
        link = self._ides.get(sid)
        if link is None:
            raise Refused("this IDE connection is closing")
        return link

    async def on_lock(self, sid: str, *args: Any) -> Reply:
        """requestSessionLock(registration, project, chatSession) → (True, chatSessionId)."""
        if len(args) != 3:
            raise ArgsError(
                f"expected 3 arguments (registration, project, chatSession), got {len(args)}"
            )
        drone_id = _ref(args[0], "registration")
        project_id = _ref(args[1], "project")
        chat_id = await self._sessions.lock(
            self._ide(sid), drone_id, project_id, _chat_session_id(args[2])
        )
        return (True, chat_id)

    async def on_release(self, sid: str, *args: Any) -> Reply:
        """releaseSessionLock() → (True,)."""
        await self._sessions.release(self._ide(sid))
        return (True,)

    async def on_mode(self, sid: str, *args: Any) -> Reply:
        """requestWorkspaceMode(mode) → the drone's answer: (True,) or (False, reason)."""
        await self._sessions.set_mode(self._ide(sid), parse_mode(args, "mode"))
        return (True,)

    async def on_prompt(self, sid: str, *args: Any) -> Reply:
        """submitPrompt(prompt) → (True, turnId)."""
        if len(args) != 1 or not isinstance(args[0], str) or not args[0].strip():
            raise ArgsError("prompt: expected one non-empty string")
        if len(args[0]) > MAX_CONTENT:
            raise ArgsError(f"prompt: longer than {MAX_CONTENT} characters")
        ide = self._ide(sid)
        lease = await self._sessions.locked(ide)
        return (True, await self._turns.submit(ide, lease, args[0]))

    async def on_cancel(self, sid: str, *args: Any) -> Reply:
        """cancelWorkOrder(turnId) → (True,); the turn ends as cancelled."""
        if len(args) != 1:
            raise ArgsError("expected one argument: turnId")
        turn_id = _id(args[0], "turnId")
        lease = await self._sessions.locked(self._ide(sid))
        await self._turns.cancel(lease, turn_id)
        return (True,)

    async def on_terminate(self, sid: str, *args: Any) -> Reply:
        """requestTermination(registrationId) → (success,); (False, reason) if unknown or offline."""
        if len(args) != 1:
            raise ArgsError("expected one argument: registrationId")
        drone_id = _id(args[0], "registrationId")
        return (await self._sessions.terminate(self._ide(sid).user_id, drone_id),)

    async def on_permission_mode(self, sid: str, *args: Any) -> Reply:
        """setPermissionMode(mode) → (True,); stored, and sent to a running turn."""
        mode = parse_permission_mode(args, "mode")
        lease = await self._sessions.locked(self._ide(sid))
        await self._control.controls.set_permission_mode(lease, mode)
        return (True,)

    async def on_answer(self, sid: str, *args: Any) -> Reply:
        """answerApproval(turnId, callId, decision) → (True,), or (False, "already answered")."""
        if len(args) != 3:
            raise ArgsError(f"expected 3 arguments (turnId, callId, decision), got {len(args)}")
        answer = parse_args(ApprovalAnswer, args)
        ide = self._ide(sid)
        lease = await self._sessions.locked(ide)
        await self._control.approvals.answer(ide, lease, answer)
        return (True,)

    async def on_revert(self, sid: str, *args: Any) -> Reply:
        """revertTurn(turnId) → (True, {reverted, conflicts, restored}) from the drone."""
        if len(args) != 1:
            raise ArgsError("expected one argument: turnId")
        turn_id = _id(args[0], "turnId")
        lease = await self._sessions.locked(self._ide(sid))
        outcome = await self._control.changes.revert(lease, turn_id)
        return (True, outcome.model_dump())

    async def on_model(self, sid: str, *args: Any) -> Reply:
        """setModel(model | null) → (True,); the session's next turns ask for it."""
        if len(args) != 1 or not (args[0] is None or isinstance(args[0], str)):
            raise ArgsError("model: expected one model name (a string), or null for the default")
        model = args[0]
        if model is not None and not 0 < len(model) <= MAX_ID:
            raise ArgsError(f"model: expected 1-{MAX_ID} characters, got {len(model)}")
        lease = await self._sessions.locked(self._ide(sid))
        await self._control.controls.set_model(lease, model)
        return (True,)

    async def on_watch(self, sid: str, *args: Any) -> Reply:
        """watchDrones(bool) → (True,); whether this socket gets every drone's `droneState`."""
        if len(args) != 1 or type(args[0]) is not bool:
            raise ArgsError("watchDrones expects one boolean")
        link = self._ide(sid)
        if args[0]:
            await self._bus.sio.enter_room(sid, user_room(link.user_id))
        else:
            await self._bus.sio.leave_room(sid, user_room(link.user_id))
        return (True,)
