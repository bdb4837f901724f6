"""Socket.IO managers that know each socket's rooms, so leaving costs O(its rooms).

python-socketio's managers find a socket's rooms by scanning every room of the
namespace (`basic_disconnect`, `get_rooms`). Each socket has a room of its own, so a
hub with n sockets pays O(n) per disconnect and O(n²) when n sockets leave at once (a
hub restart, a network cut): measured, 15 % of a hub's CPU while 1,000 drones
reconnected (docs/performance.md). :class:`RoomIndex` keeps, next to the manager's own
`rooms`, the set of rooms each socket is in, and answers both from it.
"""

from __future__ import annotations

from typing import Any

import socketio

#: (namespace, sid) -> the rooms that socket is in (its own room and None included).
Index = dict[tuple[str, str], set[Any]]


class RoomIndex:
    """A mixin for a python-socketio manager: the rooms of each socket, kept as they change."""

    rooms: dict[str, dict[Any, Any]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rooms_of: Index = {}

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: Any = None) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)  # type: ignore[misc]
        self._rooms_of.setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)  # type: ignore[misc]
        rooms = self._rooms_of.get((namespace, sid))
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._rooms_of[(namespace, sid)]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        """As python-socketio's, but leaving only the rooms this socket is in."""
        rooms = self._rooms_of.pop((namespace, sid), set())
        for room in rooms:
            super().basic_leave_room(sid, namespace, room)  # type: ignore[misc]
        # What is left of the parent's work (callbacks, pending connects and disconnects)
        # finds no room of this socket any more, so its scan only walks the pending sets.
        self._forget(sid, namespace)

    def _forget(self, sid: str, namespace: str) -> None:
        callbacks: dict[str, Any] = self.callbacks  # type: ignore[attr-defined]
        callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):  # type: ignore[attr-defined]
            waiting = pending.get(namespace)
            if waiting is not None and sid in waiting:
                waiting.remove(sid)
                if not waiting:
                    del pending[namespace]

    def get_rooms(self, sid: str, namespace: str) -> list[Any]:
        """The rooms a socket is in (its own room included, None not), from the index."""
        return [r for r in self._rooms_of.get((namespace, sid), ()) if r is not None]


class LocalManager(RoomIndex, socketio.AsyncManager):  # type: ignore[misc]
    """python-socketio's in-process manager with the room index (one hub node)."""


__all__ = ["LocalManager", "RoomIndex"]
