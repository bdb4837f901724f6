"""One work order, start to end: agent mode, the agent's run, memory, completion, idle again."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Literal

from gadget.drone.agent.loop import Agent
from gadget.drone.agent.tools import default_toolbox
from gadget.drone.checkpoints import Change, Checkpoints
from gadget.drone.events import TurnEvents
from gadget.drone.exceptions import CheckpointError, DroneError
from gadget.drone.history import ChatHistory
from gadget.drone.workorder import WorkOrder
from gadget.protocol import DroneEvent, WorkspaceMode

if TYPE_CHECKING:
    from gadget.drone.client import Drone

__all__ = ["TurnRunner"]

logger = logging.getLogger(__name__)


class TurnRunner:
    """Runs one accepted work order on a drone; :meth:`cancel` ends it early."""

    task: asyncio.Task[None]

    def __init__(self, order: WorkOrder, drone: Drone) -> None:
        """Prepare the run (the drone starts :meth:`run` as a task)."""
        self.order = order
        self.drone = drone
        self.cancel_reason: str | None = None
        self._agent_task: asyncio.Task[object] | None = None
        self.checkpoints = Checkpoints(drone.workspace.root)
        #: The files the turn changed (None: no checkpoint was taken).
        self.changes: list[Change] | None = None

    def cancel(self, reason: str) -> None:
        """End the agent now: its model stream is closed and its command's group killed."""
        if self.cancel_reason is None:
            self.cancel_reason = reason
            logger.info("ending turn %s: %s", self.order.turn_id, reason)
        if self._agent_task is not None:
            self._agent_task.cancel()

    async def run(self) -> None:
        """Agent mode, the agent, `workOrderComplete`, cache cleared once it is stored, idle."""
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
            default_toolbox(),
            drone.workspace,
            drone.settings,
            TurnEvents(drone.outbox),
        )
        checkpointed = await self._checkpoint("begin")
        if self.cancel_reason is None:
            self._agent_task = asyncio.create_task(agent.run(order.prompt, past))
            try:
                await asyncio.wait({self._agent_task})
            finally:
                self._agent_task.cancel()
        success, message = self._outcome()
        if checkpointed:
            await self._checkpoint("finish")
        note = None if success else f"[this turn ended early: {message}]"
        await asyncio.to_thread(history.append, order.turn_id, agent.transcript(note))
        logger.info("turn %s %s", order.turn_id, "finished" if success else f"failed: {message}")
        drone.forwarder.enabled = False
        drone.outbox.emit(
            DroneEvent.WORK_ORDER_COMPLETE, order.turn_id, success, *([message] if message else [])
        )
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
                await self.checkpoints.begin(turn_id)
            else:
                self.changes = await self.checkpoints.finish(turn_id)
        except CheckpointError as exc:
            logger.warning("turn %s: no checkpoint (%s): %s", turn_id, step, exc)
            return False
        return True

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
