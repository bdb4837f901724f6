"""Work orders: a prompt becomes a turn, goes to the drone, and ends finished or error."""

from __future__ import annotations

import logging
from typing import Any

from gadget.hub.bus import session_room
from gadget.hub.cluster import NodeHandler
from gadget.hub.core import Service
from gadget.hub.exceptions import HubError, NotFound, Refused
from gadget.hub.state.drones import DroneState
from gadget.hub.state.ides import IdeLink
from gadget.hub.stream.live import LiveTurn
from gadget.hub.views import chat_session_json, drone_json, project_json
from gadget.logs import log_context
from gadget.protocol import DroneEvent, HubEvent, TurnOut, TurnStatus, WorkspaceMode, mark
from gadget.store.leases import Lease

logger = logging.getLogger(__name__)


class WorkOrders(Service):
    """Creates turns, dispatches them to drones and closes them."""

    async def submit(self, ide: IdeLink, lease: Lease, prompt: str) -> str:
        """Create a turn for `prompt` in the IDE's locked session and send it to the drone."""
        record = await self._drones.presence.drone(lease.drone_id)
        if record is None or not record.get("online"):
            raise Refused("the drone is offline")
        if record.get("mode") == WorkspaceMode.USER.value:
            raise Refused("the workspace is in user mode: switch it back to idle to send prompts")
        chat = lease.chat_session_id or ""
        turn = await self._drones.claim(lease.drone_id, chat, ide.user_id, prompt)
        with log_context(turn=turn.id, drone=lease.drone_id):  # the dispatch task copies it
            await self._bus.to_session(chat, HubEvent.TURN_STARTED, turn.wire())
            self.dispatch(lease.drone_id, turn, str(record["sid"]))
        return turn.id

    def dispatch(self, drone_id: str, turn: TurnOut, sid: str) -> None:
        """Send `processWorkOrder` in the background; a refusal ends the turn as error."""
        self._tasks.spawn(self._dispatch(drone_id, turn, sid), name=f"dispatch:{turn.id}")

    async def _dispatch(self, drone_id: str, turn: TurnOut, sid: str) -> None:
        try:
            args = await self._work_order(drone_id, turn)
            ack = await self._bus.call(
                sid,
                HubEvent.PROCESS_WORK_ORDER,
                *args,
                timeout=self._settings.work_order_ack_timeout_s,
            )
        except HubError as exc:
            await self.fail(drone_id, turn.id, f"drone did not accept the work order: {exc}")
            return
        if not ack or ack[0] is not True:
            reason = ack[1] if len(ack) > 1 and isinstance(ack[1], str) else "refused"
            await self.fail(drone_id, turn.id, f"drone refused the work order: {reason}")

    async def _work_order(self, drone_id: str, turn: TurnOut) -> tuple[Any, ...]:
        """processWorkOrder's arguments: registration, project, chat session, turn."""
        drone = await self._store.get_drone(drone_id)
        chat = await self._store.get_chat_session(turn.chatSession)
        project = await self._store.get_project(chat.project_id) if chat else None
        if drone is None or chat is None or project is None:
            raise Refused("the drone, project or chat session of this turn no longer exists")
        return (drone_json(drone), project_json(project), chat_session_json(chat), turn.wire())

    async def complete(
        self, state: DroneState, live: LiveTurn, seq: int, args: tuple[Any, ...]
    ) -> None:
        """The drone ended its current turn: record it with its last events, tell the IDEs."""
        success, message = bool(args[1]), (args[2] if len(args) > 2 else None)
        status = TurnStatus.FINISHED if success else TurnStatus.ERROR
        error = None if success else (message or "the drone reported a failure")
        self._drones.end(state, live, seq, status, error)
        await self._bus.to_room(
            session_room(live.chat_session_id),
            DroneEvent.WORK_ORDER_COMPLETE,
            *args,
            mark(live.id, seq),
        )
        await self.publish(state.drone_id, state.owner_id)

    async def fail(
        self, drone_id: str | None, turn_id: str, message: str, *, cancelled: bool = False
    ) -> None:
        """End a turn its drone is not streaming, as error with `message`; tell the IDEs."""
        with log_context(turn=turn_id, drone=drone_id):
            await self._fail(drone_id, turn_id, message, cancelled)

    async def _fail(
        self, drone_id: str | None, turn_id: str, message: str, cancelled: bool
    ) -> None:
        logger.warning("turn %s failed: %s", turn_id, message)
        if not await self._drones.end_away(drone_id, turn_id, message, cancelled=cancelled):
            return
        turn = await self._store.get_turn(turn_id)
        if turn is not None:
            await self._bus.to_session(
                turn.chat_session_id, DroneEvent.WORK_ORDER_COMPLETE, turn_id, False, message
            )
        if drone_id is not None:
            drone = await self._store.get_drone(drone_id)
            if drone is not None:
                await self.publish(drone_id, drone.owner_id)

    def node_handlers(self) -> dict[str, NodeHandler]:
        """What another node may ask of the node recording a turn (hub/cluster.py)."""
        return {"snapshot": self._snapshot_asked, "cancel": self._cancel_asked}

    async def cancel(self, lease: Lease, turn_id: str) -> None:
        """Cancel the drone's current turn: the drone ends it; one it is not running ends now."""
        with log_context(turn=turn_id):
            await self._cancel(lease, turn_id)

    async def _cancel(self, lease: Lease, turn_id: str) -> None:
        if lease.current_turn_id != turn_id:
            raise NotFound(f"turn {turn_id} is not running on this session's drone")
        await self._drones.request_cancel(turn_id)
        if lease.owner_node != self._drones.node:  # its recorder ends it as a cancel too
            await self._cluster.send(lease.owner_node, "cancel", {"turnId": turn_id})
        if lease.retry_at is not None:
            await self.fail(lease.drone_id, turn_id, "cancelled", cancelled=True)
            return
        record = await self._drones.presence.drone(lease.drone_id)
        if record is None or not record.get("online"):
            await self.fail(
                lease.drone_id, turn_id, "cancelled (the drone was offline)", cancelled=True
            )
            return
        try:
            ack = await self._bus.call(
                str(record["sid"]), HubEvent.CANCEL_WORK_ORDER, turn_id, timeout=10
            )
        except Refused:
            ack = ()
        if ack and ack[0] is False:  # the drone does not run it (any more): end it here
            await self.fail(lease.drone_id, turn_id, "cancelled", cancelled=True)

    async def _cancel_asked(self, payload: dict[str, Any]) -> None:
        self._drones.cancel_seen(str(payload["turnId"]))

    async def snapshot_to(
        self, sid: str, drone_id: str, turn_id: str, chat_session_id: str, node: str | None
    ) -> None:
        """Send `turnSnapshot` of a live turn of `chat_session_id` to the IDE socket `sid`.

        The snapshot comes from `node`, the node recording the turn (its mirror holds
        what is not stored yet), when that is another live node: it emits it to `sid`
        through the manager, in order with the turn's stream, and the IDE's cursor
        drops what the snapshot already holds.
        """
        elsewhere = node is not None and node != self._drones.node
        if elsewhere and node in await self._drones.presence.live_nodes():
            payload = {"sid": sid, "droneId": drone_id, "turnId": turn_id,
                       "chatSession": chat_session_id}  # fmt: skip
            await self._cluster.send(node, "snapshot", payload)
            return
        await self._snapshot(sid, drone_id, turn_id, chat_session_id)

    async def _snapshot_asked(self, payload: dict[str, Any]) -> None:
        await self._snapshot(
            str(payload["sid"]),
            str(payload["droneId"]),
            str(payload["turnId"]),
            str(payload["chatSession"]),
        )

    async def _snapshot(self, sid: str, drone_id: str, turn_id: str, chat_session_id: str) -> None:
        turn = await self.turn(turn_id, drone_id)
        if turn is not None and turn.chatSession == chat_session_id:
            await self._bus.to_sid(sid, HubEvent.TURN_SNAPSHOT, turn.wire())

    async def turn(self, turn_id: str, drone_id: str | None = None) -> TurnOut | None:
        """The turn: live when this node records it (nothing unwritten is missing), else stored."""
        state = self._drones.here(drone_id) if drone_id else None
        if state is not None and state.live is not None and state.live.id == turn_id:
            return state.live.snapshot()
        live = self._drones.live(turn_id)
        if live is not None:
            return live.snapshot()
        return await self._store.turn_out(turn_id)

    async def turn_json(self, turn_id: str) -> dict[str, Any] | None:
        """The turn as JSON (REST)."""
        turn = await self.turn(turn_id)
        return turn.wire() if turn is not None else None
