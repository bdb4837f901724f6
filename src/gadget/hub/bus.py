"""Where events leave the hub: emits to IDE rooms and drone sockets over python-socketio.

python-socketio's client manager carries them (in-process by default, Redis for
several hub nodes), so nothing here assumes the IDE and the drone share a node.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from gadget.hub.exceptions import Refused
from gadget.hub.routing import session_room

logger = logging.getLogger(__name__)


class Bus:
    """Thin emit helpers; every argument list goes out as positional wire arguments.

    With the in-process manager, room emits take a direct path: the packet is
    encoded once and queued on each recipient's engine.io socket without a task
    per recipient and without suspending. That is cheaper than
    `AsyncServer.emit`, and it makes "join a room, then snapshot" and "record,
    then forward" atomic with respect to each other (see sessions.py). With the
    Redis manager every emit goes through the manager, which publishes it.
    """

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self.sio = sio
        self._direct = type(sio.manager) is socketio.AsyncManager

    async def to_room(self, room: str, event: str, *args: Any) -> None:
        """Emit to every socket in `room` (on this node, directly; else via the manager)."""
        if not self._direct:
            await self.sio.emit(event, args, room=room)
            return
        participants = self.sio.manager.get_participants("/", room)
        encoded: Any = None
        for _sid, eio_sid in participants:
            if encoded is None:
                encoded = self.sio.packet_class(sio_packet.EVENT, data=[event, *args]).encode()
                if isinstance(encoded, list):  # binary attachments: the general path
                    await self.sio.emit(event, args, room=room)
                    return
            socket = self.sio.eio.sockets.get(eio_sid)
            if socket is None or socket.closed:
                continue
            try:
                await socket.send(eio_packet.Packet(eio_packet.MESSAGE, encoded))
            except Exception:  # a socket closing under us must not stop the others
                logger.debug("could not queue %s for %s", event, eio_sid, exc_info=True)

    async def to_session(self, chat_session_id: str, event: str, *args: Any) -> None:
        """Emit to every IDE socket showing a chat session."""
        await self.sio.emit(event, args, room=session_room(chat_session_id))

    async def to_sid(self, sid: str, event: str, *args: Any) -> None:
        """Emit to one socket (every socket is in the room named by its sid)."""
        await self.to_room(sid, event, *args)

    async def call(self, sid: str, event: str, *args: Any, timeout: float) -> tuple[Any, ...]:
        """Emit to one socket and wait for its acknowledgement's arguments.

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
