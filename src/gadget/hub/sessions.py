"""Session locks, workspace modes and termination: the IDE side of a drone (the reference's
CodeSession). Every state change is a transition asked of the drones' owner."""

from __future__ import annotations

import logging
from typing import Any

from gadget.hub.bus import drone_room, session_room
from gadget.hub.controls import Controls
from gadget.hub.core import Core, Service
from gadget.hub.exceptions import NotFound, Refused
from gadget.hub.state.ides import IdeLink
from gadget.hub.turns import WorkOrders
from gadget.protocol import DroneEvent, HubEvent, WorkspaceMode
from gadget.store.leases import Lease
from gadget.store.tables import ChatSession, DroneRegistration

logger = logging.getLogger(__name__)


class Sessions(Service):
    """Who holds which drone, for which chat session; what an IDE may ask of it."""

    def __init__(self, core: Core, turns: WorkOrders, controls: Controls) -> None:
        super().__init__(core)
        self._turns = turns
        self._controls = controls

    async def lock(
        self, ide: IdeLink, drone_id: str, project_id: str, chat_session_id: str | None
    ) -> str:
        """Lock a drone for a (new or resumed) chat session; returns the chat session id."""
        drone = await self._own_drone(ide.user_id, drone_id)
        record = await self._drones.presence.drone(drone_id)
        if record is None or not record.get("online"):
            raise Refused(f"drone {drone.name} is offline: start it with `gadget drone`")
        project = await self._store.get_project(project_id)
        if project is None or project.owner_id != ide.user_id:
            raise NotFound(f"unknown project {project_id}")
        chat = await self._chat_session(ide, project_id, chat_session_id)
        mode = "ask"
        if chat is None:
            user = await self._store.get_user(ide.user_id)
            mode = (
                self._controls.default_mode(user)
                if user
                else self._settings.default_permission_mode
            ).value
        try:
            chat, lease, before = await self._drones.lock(
                drone_id, ide.user_id, chat, project_id, mode
            )
        except Refused as exc:
            raise Refused(f"drone {drone.name}: {exc}") from None
        if before is not None and before.chat_session_id not in (None, chat.id):
            await self._lock_lost(drone_id, f"session lock taken over by {ide.username}")
        await self._join(ide, drone_id, chat.id)
        if lease.current_turn_id is not None:
            await self._turns.snapshot_to(
                ide.sid, drone_id, lease.current_turn_id, chat.id, lease.owner_node
            )
        mode = str(record.get("mode") or WorkspaceMode.IDLE.value)
        await self._bus.to_sid(ide.sid, DroneEvent.WORKSPACE_MODE_CHANGED, mode)
        await self._bus.to_room(
            drone_room(drone_id), DroneEvent.STATUS, f"{drone.name} locked by {ide.username}"
        )
        await self.publish(drone_id, drone.owner_id)
        return chat.id

    async def _own_drone(self, user_id: str, drone_id: str) -> DroneRegistration:
        drone = await self._store.get_drone(drone_id)
        if drone is None or drone.owner_id != user_id:
            raise NotFound(f"unknown drone {drone_id}")
        return drone

    async def _chat_session(
        self, ide: IdeLink, project_id: str, chat_session_id: str | None
    ) -> ChatSession | None:
        """The chat session to resume (None: a new one, created with the lock)."""
        if chat_session_id is None:
            return None
        chat = await self._store.get_chat_session(chat_session_id)
        if chat is None or chat.user_id != ide.user_id:
            raise NotFound(f"unknown chat session {chat_session_id}")
        if chat.project_id != project_id:
            raise Refused(f"chat session {chat_session_id} belongs to another project")
        return chat

    async def _join(self, ide: IdeLink, drone_id: str, chat_session_id: str) -> None:
        """The IDE socket shows `chat_session_id` of `drone_id` (and nothing else)."""
        await self._leave(ide)
        ide.drone_id, ide.chat_session_id = drone_id, chat_session_id
        await self._bus.sio.enter_room(ide.sid, session_room(chat_session_id))
        await self._bus.sio.enter_room(ide.sid, drone_room(drone_id))
        await self._drones.presence.ide_joined(chat_session_id, ide.sid)

    async def _leave(self, ide: IdeLink) -> None:
        if ide.chat_session_id is not None:
            await self._bus.sio.leave_room(ide.sid, session_room(ide.chat_session_id))
            await self._drones.presence.ide_left(ide.chat_session_id, ide.sid)
        if ide.drone_id is not None:
            await self._bus.sio.leave_room(ide.sid, drone_room(ide.drone_id))
        ide.drone_id = ide.chat_session_id = None

    async def _lock_lost(self, drone_id: str, why: str) -> None:
        """The drone's lock went to another session (or away): its IDEs stop showing it."""
        await self._bus.to_room(drone_room(drone_id), DroneEvent.STATUS, why)
        for other in list(self._ides.showing_drone(drone_id)):
            await self._leave(other)
        # IDE sockets on other nodes leave the drone's room through the manager.
        await self._bus.sio.close_room(drone_room(drone_id))

    async def locked(self, ide: IdeLink) -> Lease:
        """The lease of the drone this IDE socket holds the lock of.

        Raises:
            Refused: the socket holds no lock (any more).
        """
        if ide.drone_id is None or ide.chat_session_id is None:
            raise Refused("no session lock: call requestSessionLock first")
        lease = await self._drones.lease(ide.drone_id)
        if lease is None or lease.chat_session_id != ide.chat_session_id:
            raise Refused("no session lock: call requestSessionLock first")
        if lease.user_id != ide.user_id:
            raise Refused("the session lock belongs to another user")
        return lease

    async def release(self, ide: IdeLink) -> None:
        """Release the lock this IDE socket holds."""
        lease = await self.locked(ide)
        if not await self._drones.release(lease.drone_id, ide.chat_session_id or ""):
            raise Refused("a turn is processing: cancel it or wait before releasing the lock")
        await self._lock_lost(lease.drone_id, f"session lock released by {ide.username}")
        await self.publish(lease.drone_id, ide.user_id)

    async def lock_expired(self, lease: Lease, owner_id: str) -> None:
        """The lock's IDEs stayed away past the grace period: release it (never mid-turn)."""
        chat = lease.chat_session_id
        if chat is None or not await self._drones.release(lease.drone_id, chat):
            return
        await self._lock_lost(lease.drone_id, "session lock released: its IDE stayed away")
        await self.publish(lease.drone_id, owner_id)

    async def ide_gone(self, ide: IdeLink) -> None:
        """An IDE socket disconnected: the lock's grace period starts if it was its last one."""
        self._ides.pop(ide.sid)
        drone_id, chat = ide.drone_id, ide.chat_session_id
        if chat is None or drone_id is None:
            return
        await self._drones.presence.ide_left(chat, ide.sid)
        if await self._drones.presence.ides(chat) == 0:
            await self._drones.ides_away(drone_id, chat)

    async def set_mode(self, ide: IdeLink, mode: WorkspaceMode) -> None:
        """Ask the locked drone for a workspace mode; its refusal is raised with its reason."""
        lease = await self.locked(ide)
        sid = await self._drone_sid(lease.drone_id)
        ack = await self._bus.call(sid, HubEvent.REQUEST_WORKSPACE_MODE, mode.value, timeout=10)
        if ack and ack[0] is False:
            reason = ack[1] if len(ack) > 1 and isinstance(ack[1], str) else "refused"
            raise Refused(reason)

    async def terminate(self, user_id: str, drone_id: str) -> bool:
        """Ask a drone of `user_id` to terminate; whether it agreed."""
        await self._own_drone(user_id, drone_id)
        sid = await self._drone_sid(drone_id)
        ack = await self._bus.call(sid, HubEvent.REQUEST_TERMINATION, timeout=10)
        return bool(ack) and ack[0] is True

    async def _drone_sid(self, drone_id: str) -> str:
        record: dict[str, Any] | None = await self._drones.presence.drone(drone_id)
        if record is None or not record.get("online") or not record.get("sid"):
            raise Refused("the drone is offline")
        return str(record["sid"])
