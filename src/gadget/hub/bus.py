"""Where events leave the hub: emits to rooms and sockets over python-socketio.

Rooms: `session:<chatSessionId>` holds every IDE socket showing a chat session (its
turns' stream goes there); `drone:<droneId>` holds the IDE sockets of the drone's
lock (status lines, logs, workspace mode, its `droneState`); `user:<userId>` the IDE
sockets of a user that asked for every drone's `droneState` (`watchDrones(true)`: an
IDE showing the drone list). python-socketio's client manager carries every emit: in-process
for one node, `AsyncRedisManager` for several, so nothing here assumes where a socket is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet
from socketio.async_pubsub_manager import AsyncPubSubManager

from gadget.hub.exceptions import Refused

logger = logging.getLogger(__name__)


def session_room(chat_session_id: str) -> str:
    """The room of every IDE socket showing this chat session."""
    return f"session:{chat_session_id}"


def drone_room(drone_id: str) -> str:
    """The room of the IDE sockets holding this drone's lock."""
    return f"drone:{drone_id}"


def user_room(user_id: str) -> str:
    """The room of the IDE sockets of this user that watch the drone list (`watchDrones`)."""
    return f"user:{user_id}"


class Bus:
    """Thin emit helpers; every argument list goes out as positional wire arguments.

    With the in-process manager, room emits take a direct path: the packet is
    encoded once and queued on each recipient's engine.io socket without a task
    per recipient. A socket whose queue holds more than `queue_max` packets has
    fallen behind the stream: it is told so and disconnected (it resumes from a
    snapshot when it locks again), so a slow IDE never holds the relay or grows
    memory without bound. With the Redis manager every emit goes through the
    manager, which publishes it to every node.
    """

    def __init__(self, sio: socketio.AsyncServer, queue_max: int = 20_000) -> None:
        self.sio = sio
        self._direct = not isinstance(sio.manager, AsyncPubSubManager)
        #: Several nodes (hub/cluster.py): delivered here directly, published for the others.
        self._cluster = getattr(sio.manager, "publish_emit", None) is not None
        if self._cluster:
            sio.manager.deliver_here = self._here
        self._queue_max = queue_max
        self._dropping: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.on_slow: Callable[[str], None] | None = None
        #: Packets queued to sockets by event name (with Redis: emits), read by /metrics.
        self.sent: dict[str, int] = {}

    def heard(self, rooms: list[str]) -> bool:
        """Whether an emit to `rooms` would reach a socket (with several nodes: assumed)."""
        if not self._direct:
            return True
        here = self.sio.manager.rooms.get("/", {})
        return any(here.get(room) for room in rooms)

    async def to_room(self, room: str | list[str], event: str, *args: Any) -> None:
        """Emit to every socket in `room` (or in any of several rooms, once each): on this
        node directly, and on the others through the cluster's manager."""
        if self._cluster:
            if await self._here(event, args, room):
                await self.sio.manager.publish_emit(event, args, room)
            return
        if not self._direct:
            self.sent[event] = self.sent.get(event, 0) + 1
            await self.sio.emit(event, args, room=room)
            return
        await self._here(event, args, room)

    async def _here(self, event: str, args: tuple[Any, ...], room: str | list[str]) -> bool:
        """Deliver to this node's sockets in `room`; False when it went the general way."""
        participants = self.sio.manager.get_participants("/", room)
        encoded: Any = None
        queued = 0
        for sid, eio_sid in participants:
            if encoded is None:
                encoded = self.sio.packet_class(sio_packet.EVENT, data=[event, *args]).encode()
                if isinstance(encoded, list):  # binary attachments: the general path
                    await self.sio.emit(event, args, room=room)
                    return False
            socket = self.sio.eio.sockets.get(eio_sid)
            if socket is None or socket.closed:
                continue
            if socket.queue.qsize() >= self._queue_max:
                self._too_slow(sid)
                continue
            try:
                socket.push(eio_packet.Packet(eio_packet.MESSAGE, encoded))  # hub/transport
                queued += 1
            except Exception:  # a socket closing under us must not stop the others
                logger.debug("could not queue %s for %s", event, eio_sid, exc_info=True)
        if queued:
            self.sent[event] = self.sent.get(event, 0) + queued
        return True

    def _too_slow(self, sid: str) -> None:
        if sid in self._dropping:
            return
        self._dropping.add(sid)
        logger.warning(
            "socket %s fell %d packets behind the stream: disconnecting it", sid, self._queue_max
        )
        if self.on_slow is not None:
            self.on_slow(sid)

        async def drop() -> None:
            try:
                await self.sio.disconnect(sid)
            finally:
                self._dropping.discard(sid)

        task = asyncio.get_running_loop().create_task(drop())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def to_session(self, chat_session_id: str, event: str, *args: Any) -> None:
        """Emit to every IDE socket showing a chat session."""
        await self.to_room(session_room(chat_session_id), event, *args)

    async def to_sid(self, sid: str, event: str, *args: Any) -> None:
        """Emit to one socket (every socket is in the room named by its sid)."""
        await self.to_room(sid, event, *args)

    async def call(self, sid: str, event: str, *args: Any, timeout: float) -> tuple[Any, ...]:
        """Emit to one socket (on any node) and wait for its acknowledgement's arguments.

        (python-socketio's own `call` is unavailable with ordered, inline handlers.)

        Raises:
            Refused: no acknowledgement within `timeout` seconds.
        """
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[Any, ...]] = loop.create_future()

        def on_ack(*ack: Any) -> None:
            if not answer.done():
                answer.set_result(ack)

        await self.sio.emit(event, args, to=sid, callback=on_ack)
        try:
            return await asyncio.wait_for(answer, timeout)
        except TimeoutError:
            raise Refused(f"no answer to {event} within {timeout:g} s") from None
