"""Where events leave the hub: emits to IDE rooms and drone sockets over python-socketio.

python-socketio's client manager carries them (in-process by default, Redis for
several hub nodes), so nothing here assumes the IDE and the drone share a node.
"""

from __future__ import annotations

import asyncio
from typing import Any

import socketio

from gadget.hub.exceptions import Refused
from gadget.hub.routing import session_room, user_room


class Bus:
    """Thin emit helpers; every argument list goes out as positional wire arguments."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self.sio = sio

    async def to_room(self, room: str, event: str, *args: Any) -> None:
        """Emit to every socket in `room`."""
        await self.sio.emit(event, args, room=room)

    async def to_session(self, chat_session_id: str, event: str, *args: Any) -> None:
        """Emit to every IDE socket showing a chat session."""
        await self.sio.emit(event, args, room=session_room(chat_session_id))

    async def to_user(self, user_id: str, event: str, *args: Any) -> None:
        """Emit to every IDE socket of a user."""
        await self.sio.emit(event, args, room=user_room(user_id))

    async def to_sid(self, sid: str, event: str, *args: Any) -> None:
        """Emit to one socket."""
        await self.sio.emit(event, args, to=sid)

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
