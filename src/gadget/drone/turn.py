"""One work order, start to end: agent mode, the agent's run, memory, changes, completion, idle.

The agent runs with the chat session's model and behind its permission gate (the work
order's mode; a call that must ask waits for the person through the hub), with the
drone's MCP tools next to the built-in ones. The workspace is checkpointed before and
after the turn; the files the turn changed go to the hub (`turnChanges`) before its
`workOrderComplete`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Literal

from gadget.drone.agent.approvals import PermissionGate, SessionGrants
from gadget.drone.agent.loop import Agent
from gadget.drone.agent.tools import default_toolbox
from gadget.drone.asker import HubAsker
from gadget.drone.checkpoints import Change
from gadget.drone.events import TurnEvents
from gadget.drone.exceptions import CheckpointError, DroneError
from gadget.drone.history import ChatHistory
from gadget.drone.workorder import WorkOrder
from gadget.protocol import DroneEvent, PermissionMode, WorkspaceMode

if TYPE_CHECKING:
    from gadget.drone.client import Drone

__all__ = ["TurnRunner"]

logger = logging.getLogger(__name__)

#: Characters of one file's diff sent with the turn's changes; the rest is cut with a note.
DIFF_LIMIT = 200 * 1024
#: Characters of diffs sent for one turn in all; files beyond it are listed without one.
DIFFS_LIMIT = 2 * 1024 * 1024


class TurnRunner:
    """Runs one accepted work order on a drone; :meth:`cancel` ends it early."""

    task: asyncio.Task[None]

    def __init__(self, order: WorkOrder, drone: Drone) -> None:
        """Prepare the run (the drone starts :meth:`run` as a task)."""
        self.order = order
        self.drone = drone
        self.cancel_reason: str | None = None
        self._agent_task: asyncio.Task[object] | None = None
        self.asker = HubAsker(drone.outbox)
        self.gate = PermissionGate(
            order.permission_mode,
            turn_id=order.turn_id,
            asker=self.asker,
            grants=SessionGrants(drone.workspace.root, order.chat_session_id),
            timeout_s=drone.settings.approval_timeout_s,
        )
        #: The files the turn changed (None: no checkpoint was taken).
        self.changes: list[Change] | None = None
        #: The turn's `workOrderComplete` is sent: it only winds down from here.
        self.completed = False

    def cancel(self, reason: str) -> None:
        """End the agent now: its model stream is closed and its command's group killed."""
        if self.cancel_reason is None:
            self.cancel_reason = reason
            logger.info("ending turn %s: %s", self.order.turn_id, reason)
        if self._agent_task is not None:
            self._agent_task.cancel()

    def set_permission_mode(self, mode: PermissionMode) -> None:
        """The person changed the session's mode: it applies from the next call (and to a
        call waiting for an answer)."""
        logger.info("turn %s: permission mode %s", self.order.turn_id, mode.value)
        self.gate.set_mode(mode)

    async def run(self) -> None:
        """Agent mode, the agent, its changes, `workOrderComplete`, cache cleared once it is
        stored, idle."""
        drone, order = self.drone, self.order
        seq = order.turn.get("seq")
        # A retried attempt continues the numbering after what the hub applied.
        drone.outbox.begin_turn(order.turn_id, seq if type(seq) is int and seq >= 0 else 0)
        drone.set_mode(WorkspaceMode.AGENT)
        drone.forwarder.enabled = True
        logger.info("turn %s started", order.turn_id)
        history = ChatHistory(drone.workspace.root, order.chat_session_id)
        past = await asyncio.to_thread(history.load)
        agent = Agent(
            drone.model,
            default_toolbox(drone.mcp.tools()),
            drone.workspace,
            drone.settings,
            TurnEvents(drone.outbox, order.turn_id),
            model_name=order.model,
            gate=self.gate,
        )
        checkpointed = await self._checkpoint("begin")
        if self.cancel_reason is None:
            self._agent_task = asyncio.create_task(agent.run(order.prompt, past))
            try:
                await asyncio.wait({self._agent_task})
            finally:
                self._agent_task.cancel()
        success, message = self._outcome()
        if checkpointed and await self._checkpoint("finish") and self.changes is not None:
            changes = await self._changes_json(self.changes)
            drone.outbox.emit(DroneEvent.TURN_CHANGES, order.turn_id, changes)
        note = None if success else f"[this turn ended early: {message}]"
        await asyncio.to_thread(history.append, order.turn_id, agent.transcript(note))
        logger.info("turn %s %s", order.turn_id, "finished" if success else f"failed: {message}")
        drone.forwarder.enabled = False
        drone.outbox.emit(
            DroneEvent.WORK_ORDER_COMPLETE, order.turn_id, success, *([message] if message else [])
        )
        self.completed = True
        last = drone.outbox.end_turn()
        drone.set_mode(WorkspaceMode.IDLE)
        if last is not None:  # only a stored completion may remove the recovery cache
            await drone.outbox.acked(*last)
        await asyncio.to_thread(drone.cache.clear)

    async def _checkpoint(self, step: Literal["begin", "finish"]) -> bool:
        """Snapshot the workspace before or after the turn; a failure only costs the undo."""
        if not self.drone.settings.checkpoints:
            return False
        turn_id = self.order.turn_id
        try:
            if step == "begin":
                await self.drone.checkpoints.begin(turn_id)
            else:
                self.changes = await self.drone.checkpoints.finish(turn_id)
        except CheckpointError as exc:
            logger.warning("turn %s: no checkpoint (%s): %s", turn_id, step, exc)
            return False
        return True

    async def _changes_json(self, changes: list[Change]) -> list[dict[str, Any]]:
        """The changes as `turnChanges` sends them, each with its diff while they fit."""
        out, budget = [], DIFFS_LIMIT
        for change in changes:
            entry = change.to_json()
            if budget > 0:
                try:
                    diff = await self.drone.checkpoints.diff(self.order.turn_id, change.path)
                except CheckpointError as exc:
                    logger.warning("no diff of %s: %s", change.path, exc)
                else:
                    entry["diff"] = _cut(diff)
                    budget -= len(entry["diff"])
            out.append(entry)
        return out

    def _outcome(self) -> tuple[bool, str | None]:
        task = self._agent_task
        if self.cancel_reason is not None or task is None or task.cancelled():
            return False, self.cancel_reason or "cancelled"
        exc = task.exception()
        if exc is None:
            return True, None
        if isinstance(exc, DroneError):
            return False, str(exc)
        logger.error("turn %s failed unexpectedly", self.order.turn_id, exc_info=exc)
        return False, f"the drone failed: {type(exc).__name__}: {exc}"


def _cut(diff: str) -> str:
    """`diff`, or its first DIFF_LIMIT characters and a note saying how much was left out."""
    if len(diff) <= DIFF_LIMIT:
        return diff
    rest = len(diff) - DIFF_LIMIT
    return f"{diff[:DIFF_LIMIT]}\n[diff cut at 200 KB: {rest} more characters not shown]\n"
