"""Session locks, workspace modes and termination: the IDE side of a drone (the reference's CodeSession)."""

from __future__ import annotations

import logging

from gadget.hub.core import Core, Service
from gadget.hub.exceptions import NotFound, Refused
from gadget.hub.routing import DroneLink, IdeLink, Lock, session_room, user_room
from gadget.hub.turns import WorkOrders
from gadget.protocol import DroneEvent, HubEvent, WorkspaceMode
from gadget.store.tables import ChatSession

logger = logging.getLogger(__name__)


class Sessions(Service):
    """Who holds which drone, for which chat session; what an IDE may ask of it."""

    def __init__(self, core: Core, turns: WorkOrders) -> None:
        super().__init__(core)
        self._turns = turns

    async def lock(
        self, ide: IdeLink, drone_id: str, project_id: str, chat_session_id: str | None
    ) -> str:
        """Lock a drone for a (new or resumed) chat session; returns the chat session id."""
        drone = await self._store.get_drone(drone_id)
        if drone is None or drone.owner_id != ide.user_id:
            raise NotFound(f"unknown drone {drone_id}")
        link = self._router.drones.get(drone_id)
        if link is None or not link.online:
            raise Refused(f"drone {drone.name} is offline: start it with `gadget drone`")
        project = await self._store.get_project(project_id)
        if project is None or project.owner_id != ide.user_id:
            raise NotFound(f"unknown project {project_id}")
        chat = await self._chat_session(ide, project_id, drone_id, chat_session_id)
        held = link.lock
        if held is not None and held.user_id != ide.user_id:
            raise Refused(f"drone {drone.name} is locked by {held.username}")
        if held is not None and held.chat_session_id != chat.id and link.current_turn_id:
            raise Refused(f"drone {drone.name} is busy with a turn of another session")
        if chat.drone_id != drone_id:
            await self._store.set_session_drone(chat.id, drone_id)
            chat.drone_id = drone_id
        # No await below until the snapshot is out: later stream events follow it exactly.
        self._leave(ide)
        if held is not None and held.chat_session_id != chat.id:
            await self._drop_lock(link, f"session lock taken over by {ide.username}")
        link.lock = Lock.of(chat, ide.user_id, ide.username, drone, project)
        ide.drone_id, ide.chat_session_id = drone_id, chat.id
        self._tasks.cancel_timer(f"ide-grace:{drone_id}")
        await self._bus.sio.enter_room(ide.sid, session_room(chat.id))
        snapshot = self._turns.snapshot(link.current_turn_id) if link.current_turn_id else None
        if snapshot is not None and snapshot.chatSession == chat.id:
            await self._bus.to_sid(ide.sid, HubEvent.TURN_SNAPSHOT, snapshot.wire())
        await self._bus.to_sid(
            ide.sid, DroneEvent.WORKSPACE_MODE_CHANGED, link.workspace_mode.value
        )
        await self._bus.to_session(
            chat.id, DroneEvent.STATUS, f"{drone.name} locked by {ide.username}"
        )
        await self.publish(link)
        return chat.id

    async def _chat_session(
        self, ide: IdeLink, project_id: str, drone_id: str, chat_session_id: str | None
    ) -> ChatSession:
        if chat_session_id is None:
            return await self._store.create_chat_session(ide.user_id, project_id, drone_id)
        chat = await self._store.get_chat_session(chat_session_id)
        if chat is None or chat.user_id != ide.user_id:
            raise NotFound(f"unknown chat session {chat_session_id}")
        if chat.project_id != project_id:
            raise Refused(f"chat session {chat_session_id} belongs to another project")
        return chat

    async def release(self, ide: IdeLink) -> None:
        """Release the lock this IDE socket holds."""
        link = self._turns.locked_drone(ide)
        if link.current_turn_id is not None:
            raise Refused("a turn is processing: cancel it or wait before releasing the lock")
        await self._drop_lock(link, f"session lock released by {ide.username}")

    async def _drop_lock(self, link: DroneLink, why: str) -> None:
        lock = link.lock
        if lock is None:
            return
        link.lock = None
        self._tasks.cancel_timer(f"ide-grace:{link.drone_id}")
        await self._bus.to_session(lock.chat_session_id, DroneEvent.STATUS, why)
        for other in self._router.ides_of_session(lock.chat_session_id):
            self._leave(other)
        await self.publish(link)

    def _leave(self, ide: IdeLink) -> None:
        if ide.chat_session_id is not None:
            self._bus.sio.manager.basic_leave_room(ide.sid, "/", session_room(ide.chat_session_id))
        ide.drone_id = ide.chat_session_id = None

    async def ide_gone(self, ide: IdeLink) -> None:
        """An IDE socket disconnected: start the grace period if it was the lock's last one."""
        self._router.ides.pop(ide.sid, None)
        link = self._router.drones.get(ide.drone_id or "")
        if link is None or link.lock is None or link.lock.chat_session_id != ide.chat_session_id:
            return
        if self._router.ides_of_session(link.lock.chat_session_id, link.lock.user_id):
            return
        self._arm_ide_grace(link)

    def _arm_ide_grace(self, link: DroneLink) -> None:
        async def expire() -> None:
            lock = link.lock
            if lock is None or self._router.ides_of_session(lock.chat_session_id, lock.user_id):
                return
            if link.current_turn_id is not None:
                self._arm_ide_grace(link)  # never orphan a running turn's stream
                return
            await self._drop_lock(link, "session lock released: its IDE stayed away")

        self._tasks.start_timer(f"ide-grace:{link.drone_id}", self._settings.drone_grace_s, expire)

    async def set_mode(self, ide: IdeLink, mode: WorkspaceMode) -> None:
        """Ask the locked drone for a workspace mode; its refusal is raised with its reason."""
        link = self._turns.locked_drone(ide)
        if link.sid is None:
            raise Refused(f"drone {link.name} is offline")
        ack = await self._bus.call(
            link.sid, HubEvent.REQUEST_WORKSPACE_MODE, mode.value, timeout=10
        )
        if ack and ack[0] is False:
            reason = ack[1] if len(ack) > 1 and isinstance(ack[1], str) else "refused"
            raise Refused(f"the drone refused workspace mode {mode.value}: {reason}")

    async def terminate(self, user_id: str, drone_id: str) -> bool:
        """Ask a drone of `user_id` to terminate; whether it agreed."""
        drone = await self._store.get_drone(drone_id)
        if drone is None or drone.owner_id != user_id:
            raise NotFound(f"unknown drone {drone_id}")
        link = self._router.drones.get(drone_id)
        if link is None or link.sid is None:
            raise Refused(f"drone {drone.name} is offline")
        ack = await self._bus.call(link.sid, HubEvent.REQUEST_TERMINATION, timeout=10)
        return bool(ack) and ack[0] is True

    async def publish(self, link: DroneLink) -> None:
        """Tell the owner's IDE sockets the drone's live state (online, mode, lock)."""
        await self._bus.to_room(user_room(link.owner_id), HubEvent.DRONE_STATE, link.view())
