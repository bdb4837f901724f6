"""What the hub asks of a drone, and what it answers about the stream (hub → drone events).

Work orders, workspace modes, cancel and termination; crash-recovery answers;
`streamAck` (these events are stored: forget them) and `error` replies (a gap or a
full hub: resend; another process took this drone's id: stop).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from gadget.drone.exceptions import CheckpointError, WorkOrderError
from gadget.drone.turn import TurnRunner
from gadget.drone.workorder import WorkOrder
from gadget.protocol import (
    MAX_ID,
    ApprovalDecision,
    CrashRecoveryResponse,
    DroneEvent,
    ErrorCode,
    HubEvent,
    PermissionMode,
    Ref,
    TurnOut,
    WorkspaceMode,
)

if TYPE_CHECKING:
    from gadget.drone.client import Drone

__all__ = ["EXIT_REPLACED", "HubRequests"]

logger = logging.getLogger(__name__)

#: The exit code of a drone that another process with its id replaced.
EXIT_REPLACED = 3
#: Seconds before events the full hub did not take are sent again.
FULL_RETRY_S = 1.0
#: Seconds a revert waits for a turn that has sent its end to finish winding down.
STOP_GRACE_S = 5.0


class HubRequests:
    """The handlers of every hub → drone event."""

    def __init__(self, drone: Drone) -> None:
        """Answer for `drone`."""
        self.drone = drone

    def table(self) -> dict[str, Callable[..., Awaitable[Any]]]:
        """Event name → handler."""
        return {
            HubEvent.PROCESS_WORK_ORDER: self.on_process_work_order,
            HubEvent.CRASH_RECOVERY_RESPONSE: self.on_crash_recovery_response,
            HubEvent.REQUEST_WORKSPACE_MODE: self.on_request_workspace_mode,
            HubEvent.CANCEL_WORK_ORDER: self.on_cancel_work_order,
            HubEvent.REQUEST_TERMINATION: self.on_request_termination,
            HubEvent.STREAM_ACK: self.on_stream_ack,
            HubEvent.ERROR: self.on_error,
            HubEvent.SET_PERMISSION_MODE: self.on_set_permission_mode,
            HubEvent.APPROVAL_DECISION: self.on_approval_decision,
            HubEvent.REVERT_TURN: self.on_revert_turn,
        }

    async def on_process_work_order(
        self, registration: Any, project: Any, chat_session: Any, turn: Any
    ) -> bool | tuple[bool, str]:
        """Accept a work order (and start it), or say why not."""
        drone = self.drone
        if drone.stopping:
            return False, "the drone is shutting down"
        runner = await self._winding_down()
        if runner is not None:
            return False, f"the drone is busy with turn {runner.order.turn_id}"
        if drone.mode == WorkspaceMode.USER:
            return False, "the workspace is in user mode; set it back to idle first"
        try:
            order = work_order(registration, project, chat_session, turn)
        except WorkOrderError as exc:
            return False, str(exc)
        runner = TurnRunner(order, drone)
        drone.runner = runner  # before any await: a second order is refused as busy
        try:
            await asyncio.to_thread(drone.cache.save, order)
        except OSError as exc:
            drone.runner = None
            return False, f"cannot write the work-order cache in {drone.workspace.root}: {exc}"
        drone.start_turn(runner)
        return True

    async def on_crash_recovery_response(self, data: Any) -> None:
        """The hub's answer about a turn: `retry` (it sends the order again) or `discard`."""
        try:
            answer = CrashRecoveryResponse.model_validate(data)
        except ValueError as exc:
            logger.warning("ignoring a malformed crashRecoveryResponse: %s", exc)
            return
        drone = self.drone
        running = drone.runner.order.turn_id if drone.runner is not None else None
        if answer.action == "discard":
            drone.outbox.discard(answer.turnId)
            if running == answer.turnId and drone.runner is not None:
                drone.runner.cancel("the hub ended this turn")
        cached = await asyncio.to_thread(drone.cache.load)
        if cached is not None and cached.turn_id == answer.turnId and running != answer.turnId:
            await asyncio.to_thread(drone.cache.clear)
        logger.info("crash recovery of turn %s: %s", answer.turnId, answer.action)

    async def on_request_workspace_mode(self, mode: Any) -> bool | tuple[bool, str]:
        """Switch to idle or user mode (agent mode starts with a work order)."""
        drone = self.drone
        try:
            wanted = WorkspaceMode(mode)
        except ValueError:
            return False, f"expected a mode of idle, user or agent, got {mode!r}"
        if drone.runner is not None or wanted == WorkspaceMode.AGENT:
            drone.outbox.emit(DroneEvent.WORKSPACE_MODE_CHANGED, drone.mode.value)
            why = (
                "an agent turn is running"
                if drone.runner
                else "agent mode starts with a work order"
            )
            return False, why
        drone.set_mode(wanted)
        return True

    async def on_cancel_work_order(self, turn_id: Any = None) -> bool:
        """End the running turn `turn_id`; False when no such turn runs (the hub ends it)."""
        runner = self.drone.runner
        if runner is None or (turn_id and turn_id != runner.order.turn_id):
            logger.info("cancelWorkOrder for %s: no such running turn", turn_id)
            return False
        runner.cancel("cancelled")
        return True

    async def _winding_down(self) -> TurnRunner | None:
        """The running turn, after waiting for one that has sent its end to finish.

        (The hub may store a turn's end and send the next request before the drone has
        heard that the end is stored.)
        """
        runner = self.drone.runner
        if runner is not None and runner.completed:
            await asyncio.wait({runner.task}, timeout=STOP_GRACE_S)
            runner = self.drone.runner
        return runner

    def _runner_of(self, payload: Any) -> TurnRunner | None:
        """The running turn a `{"turnId", ...}` payload is about, if it runs here."""
        runner = self.drone.runner
        if runner is None or not isinstance(payload, dict):
            return None
        return runner if payload.get("turnId") == runner.order.turn_id else None

    async def on_set_permission_mode(self, payload: Any = None) -> bool:
        """The running turn's permission mode changed (calls waiting are decided by it)."""
        runner = self._runner_of(payload)
        try:
            mode = PermissionMode(payload.get("mode")) if runner is not None else None
        except ValueError:
            mode = None
        if runner is None or mode is None:
            logger.info("setPermissionMode %r: no such running turn, or no such mode", payload)
            return False
        runner.set_permission_mode(mode)
        return True

    async def on_approval_decision(self, payload: Any = None) -> bool:
        """The person's answer to a tool call the running turn waits on."""
        runner = self._runner_of(payload)
        call_id = payload.get("callId") if isinstance(payload, dict) else None
        decision = payload.get("decision") if isinstance(payload, dict) else None
        if runner is None or not isinstance(call_id, str) or not isinstance(decision, str):
            logger.info("approvalDecision %r: no such running turn", payload)
            return False
        if decision not in {d.value for d in ApprovalDecision}:
            logger.warning("approvalDecision with an unknown decision %r", decision[:40])
        return runner.asker.decide(call_id, decision)

    async def on_revert_turn(self, turn_id: Any = None) -> tuple[bool, Any]:
        """Undo (or re-apply) a finished turn's changes: `(True, {reverted, conflicts, restored})`."""
        if not isinstance(turn_id, str) or not turn_id:
            return False, "expected a turnId"
        runner = await self._winding_down()
        if runner is not None:
            return False, f"turn {runner.order.turn_id} is running: wait for it to end"
        try:
            result = await self.drone.checkpoints.revert(turn_id)
        except CheckpointError as exc:
            return False, str(exc)
        logger.info(
            "turn %s %s: %d files restored, %d conflicts",
            turn_id,
            "reverted" if result.reverted else "re-applied",
            len(result.restored),
            len(result.conflicts),
        )
        outcome = result.to_json()
        return True, {k: outcome[k] for k in ("reverted", "conflicts", "restored")}

    async def on_request_termination(self, *_: Any) -> bool:
        """Stop the drone (exit 0)."""
        logger.info("termination requested by the hub")
        self.drone.exit_code = 0
        self.drone.stop("drone terminated")
        return True

    async def on_stream_ack(self, turn_id: Any = None, seq: Any = None) -> None:
        """Every event of `turn_id` up to `seq` is stored on the hub."""
        if isinstance(turn_id, str) and type(seq) is int:
            self.drone.outbox.ack(turn_id, seq)

    async def on_error(self, payload: Any = None, *_: Any) -> None:
        """A refusal from the hub; some say what to do."""
        if not isinstance(payload, dict):
            logger.warning("the hub reported an error: %s", payload)
            return
        code, message = payload.get("code"), payload.get("message")
        turn_id, expected = payload.get("turnId"), payload.get("expected")
        if code in (ErrorCode.GAP, ErrorCode.FULL, ErrorCode.LIMIT) and isinstance(turn_id, str):
            delay = 0.0 if code == ErrorCode.GAP else FULL_RETRY_S
            self.drone.outbox.resend(turn_id, int(expected or 0), delay)
            return
        if code == ErrorCode.REPLACED:
            logger.error("%s", message)
            self.drone.exit_code = EXIT_REPLACED
            self.drone.stop("replaced by another drone process", hard=True)
            return
        logger.warning("the hub refused %s: %s", payload.get("event"), message)


class _ChatSession(Ref):
    """The chatSession object of a work order: its mode and model (absent: a reference hub)."""

    permissionMode: PermissionMode = PermissionMode.AUTO
    model: Annotated[str, Field(min_length=1, max_length=MAX_ID)] | None = None


def work_order(registration: Any, project: Any, chat_session: Any, turn: Any) -> WorkOrder:
    """Validate processWorkOrder's arguments into a work order."""
    try:
        Ref.model_validate(registration)
        project_ref = Ref.model_validate(project)
        chat = _ChatSession.model_validate(chat_session)
        turn_out = TurnOut.model_validate(turn)
    except ValueError as exc:
        raise WorkOrderError(f"malformed work order: {exc}") from None
    return WorkOrder(
        workspace_id=project_ref.id,
        turn_id=turn_out.id,
        chat_session_id=chat.id,
        turn=dict(turn),
        permission_mode=chat.permissionMode,
        model=chat.model,
    )
