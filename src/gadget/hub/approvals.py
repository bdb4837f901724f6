"""Approvals: a drone's `toolApproval` reaches every IDE of the session, the first answer wins.

The request is a stream event (applied once, forwarded with its mark, durable as the
turn's `pendingApproval`); the answer is decided in the database (store/approvals.py),
so it holds across IDE sockets, hub restarts and nodes. The decision goes to the drone
(`approvalDecision({turnId, callId, decision})`) and to every IDE of the session (the
same with `by`, unmarked: every tab drops its card). A drone that reconnects while it
runs the turn gets again every answer it may have missed, and the session's mode.
"""

from __future__ import annotations

import logging
from typing import Any

from gadget.hub.bus import session_room
from gadget.hub.cluster import NodeHandler
from gadget.hub.core import Service
from gadget.hub.exceptions import NotFound, Refused
from gadget.hub.state.drones import DroneState
from gadget.hub.state.ides import IdeLink
from gadget.hub.stream.approvals import Asked
from gadget.hub.stream.live import LiveTurn
from gadget.protocol import ApprovalAnswer, DroneEvent, HubEvent, ToolApproval, mark
from gadget.store import approvals
from gadget.store.leases import Lease

logger = logging.getLogger(__name__)

_WHY_NOT = {
    "answered": "already answered",
    "ended": "turn {turn} has ended: no call of it waits for an answer",
    "replaced": "call {call} no longer waits for an answer (the drone asks about another call)",
    "none": "call {call} of turn {turn} does not wait for an answer",
}


class Approvals(Service):
    """Tool calls waiting for the person, and the person's answers."""

    async def asked(
        self,
        state: DroneState,
        live: LiveTurn,
        seq: int,
        request: ToolApproval,
        raw: dict[str, Any],
    ) -> None:
        """Apply a drone's `toolApproval` and forward it; answer at once if it was answered."""
        asking = live.ask(seq, request)
        self._drones.applied(live, 512 + len(request.parameters))
        await self._bus.to_room(
            session_room(live.chat_session_id), DroneEvent.TOOL_APPROVAL, raw, mark(live.id, seq)
        )
        if asking.kind is Asked.ANSWERED:
            decision, by = str(asking.data["decision"]), str(asking.data["by"])
            logger.info(
                "turn %s: call %s answered before the drone restarted: %s",
                live.id,
                request.callId,
                decision,
            )
            await self._decided(live.id, live.chat_session_id, request.callId, decision, by)

    async def answer(self, ide: IdeLink, lease: Lease, answer: ApprovalAnswer) -> None:
        """The person's answer to a pending call of the locked session's turn.

        Raises:
            NotFound: the turn is not one of the locked session's.
            Refused: the call does not wait (any more): "already answered" when an
                answer came first.
        """
        turn = await self._store.get_turn(answer.turnId)
        if turn is None or turn.chat_session_id != lease.chat_session_id:
            raise NotFound(f"unknown turn {answer.turnId} in this chat session")
        turn_id, call_id = answer.turnId, answer.callId

        def mirror(outcome: dict[str, Any] | str) -> None:
            live = self._drones.live(turn_id)
            if isinstance(outcome, dict) and live is not None:
                live.answered(call_id, outcome)

        outcome = await self._writer.transact(
            lambda s: approvals.answer(
                s,
                turn_id,
                call_id,
                answer.decision.value,
                ide.username,
                lock_row=self._store.lock_rows,
            ),
            timeout=self._settings.db_timeout_s,
            on_commit=mirror,
        )
        if isinstance(outcome, str):
            raise Refused(_WHY_NOT[outcome].format(turn=turn_id, call=call_id))
        if lease.owner_node != self._drones.node:  # the node recording the turn mirrors it
            payload = {"turnId": turn_id, "callId": call_id, "outcome": outcome}
            await self._cluster.send(lease.owner_node, "answered", payload)
        logger.info("turn %s: %s answered call %s: %s", turn_id, ide.username, call_id,
                    answer.decision.value)  # fmt: skip
        await self._decided(
            turn_id, turn.chat_session_id, call_id, answer.decision.value, ide.username
        )

    def node_handlers(self) -> dict[str, NodeHandler]:
        """What another node may tell the node recording a turn (hub/cluster.py)."""
        return {"answered": self._answered_elsewhere}

    async def _answered_elsewhere(self, payload: dict[str, Any]) -> None:
        live = self._drones.live(str(payload["turnId"]))
        if live is not None and isinstance(payload.get("outcome"), dict):
            live.answered(str(payload["callId"]), payload["outcome"])

    async def _decided(
        self, turn_id: str, chat_session_id: str, call_id: str, decision: str, by: str
    ) -> None:
        """Tell the drone running the turn (if it is online) and every IDE of the session."""
        chat = await self._store.get_chat_session(chat_session_id)
        if chat is not None and chat.drone_id is not None:
            await self._to_drone(chat.drone_id, turn_id, call_id, decision)
        payload = {"turnId": turn_id, "callId": call_id, "decision": decision, "by": by}
        await self._bus.to_session(chat_session_id, HubEvent.APPROVAL_DECISION, payload)

    async def _to_drone(self, drone_id: str, turn_id: str, call_id: str, decision: str) -> None:
        record = await self._drones.presence.drone(drone_id)
        if record is None or not record.get("online") or not record.get("sid"):
            return  # it gets the answer when it comes back (resume)
        payload = {"turnId": turn_id, "callId": call_id, "decision": decision}
        await self._bus.to_sid(str(record["sid"]), HubEvent.APPROVAL_DECISION, payload)

    async def resume(self, state: DroneState, live: LiveTurn) -> None:
        """A drone is back with its running turn: the answers it may have missed, its mode."""
        for call_id, decision in live.approvals.waiting(live.calls):
            payload = {"turnId": live.id, "callId": call_id, "decision": decision}
            await self._bus.to_sid(state.sid, HubEvent.APPROVAL_DECISION, payload)
        chat = await self._store.get_chat_session(live.chat_session_id)
        if chat is not None:
            await self._bus.to_sid(
                state.sid,
                HubEvent.SET_PERMISSION_MODE,
                {"turnId": live.id, "mode": chat.permission_mode},
            )
