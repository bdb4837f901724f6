"""The room index: the same rooms as python-socketio's own manager, without the scans."""

from __future__ import annotations

import random
from typing import Any

import socketio

from gadget.hub.rooms import LocalManager


def _rooms(manager: socketio.AsyncManager) -> dict[Any, dict[Any, Any]]:
    return {
        ns: {room: dict(sids) for room, sids in rooms.items()}
        for ns, rooms in manager.rooms.items()
    }


def _apply(manager: socketio.AsyncManager, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "connect":
        _, sid, eio = op
        manager.basic_enter_room(sid, "/", None, eio_sid=eio)
        manager.basic_enter_room(sid, "/", sid, eio_sid=eio)
    elif kind == "enter":
        manager.basic_enter_room(op[1], "/", op[2])
    elif kind == "leave":
        manager.basic_leave_room(op[1], "/", op[2])
    elif kind == "close":
        manager.basic_close_room(op[1], "/")
    else:
        manager.basic_disconnect(op[1], "/")


def test_the_index_matches_python_socketio_through_random_changes() -> None:
    rng = random.Random(11)  # fixed: the same sequence in every run
    ours, theirs = LocalManager(), socketio.AsyncManager()
    connected: list[str] = []
    for step in range(3000):
        roll = rng.random()
        if roll < 0.25 or not connected:
            sid = f"s{step}"
            op: tuple[Any, ...] = ("connect", sid, f"e{step}")
            connected.append(sid)
        elif roll < 0.6:
            op = ("enter", rng.choice(connected), f"room{rng.randrange(20)}")
        elif roll < 0.75:
            op = ("leave", rng.choice(connected), f"room{rng.randrange(20)}")
        elif roll < 0.8:
            op = ("close", f"room{rng.randrange(20)}")
        else:
            sid = connected.pop(rng.randrange(len(connected)))
            op = ("disconnect", sid)
        _apply(ours, op)
        _apply(theirs, op)
        assert _rooms(ours) == _rooms(theirs), op
        for sid in connected[-3:]:
            assert sorted(map(str, ours.get_rooms(sid, "/"))) == sorted(
                map(str, theirs.get_rooms(sid, "/"))
            )


def test_a_disconnect_forgets_callbacks_and_pending_state() -> None:
    manager = LocalManager()
    manager.basic_enter_room("a", "/", None, eio_sid="ea")
    manager.basic_enter_room("a", "/", "a", eio_sid="ea")
    manager.basic_enter_room("a", "/", "drone:1")
    manager.callbacks["a"] = {0: iter(())}
    manager.pending_connect["/"] = ["a"]
    manager.pending_disconnect["/"] = ["a"]
    manager.basic_disconnect("a", "/")
    assert manager.rooms == {}
    assert "a" not in manager.callbacks
    assert manager.pending_connect == {} and manager.pending_disconnect == {}
    assert manager.get_rooms("a", "/") == []
