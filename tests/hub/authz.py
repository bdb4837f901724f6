"""The callers and the world of the authorization matrix (tests/hub/test_authz_matrix.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
import socketio

from tests.harness import Client, HubHarness
from tests.hub.helpers import Session, drone_state, eventually, setup_session, start_turn

# -- the hub's tables ------------------------------------------------------------

Route = tuple[str, str]  # (method, path template)


def app_routes(asgi_app: Any) -> set[Route]:
    """Every (method, path) the hub serves over HTTP (HEAD mirrors GET and is left out)."""
    api = asgi_app.other_asgi_app  # the FastAPI app behind python-socketio's ASGIApp

    def walk(routes: list[Any]) -> Iterator[Any]:
        for route in routes:
            if hasattr(route, "original_router"):  # an included APIRouter
                yield from walk(route.original_router.routes)
            else:
                yield route

    found: set[Route] = set()
    for route in walk(api.routes):
        if getattr(route, "methods", None) is None:  # a Mount: static files
            found.add(("GET", route.path + "/{path}"))
        else:
            found |= {(m, route.path) for m in route.methods if m != "HEAD"}
    # Cross-check with the OpenAPI schema, so a router the walk missed still shows.
    for path, operations in api.openapi()["paths"].items():
        found |= {(m.upper(), path) for m in operations}
    return found


# -- callers ---------------------------------------------------------------------

NO_BEARER = "expected an Authorization: Bearer <token> header (log in first)"
EXPIRED = "token expired: log in again"
INVALID = "invalid token: log in again"
NO_AUTH = 'expected auth {"token": JWT} for an IDE or {"registrationId", "key"} for a drone'
WRONG_KEY = "unknown drone or wrong key: register it with `gadget drone register`"
NO_LOCK = "no session lock: call requestSessionLock first"
PASSWORD = "pw-secret"


def not_accepted(event: str) -> str:
    """The refusal of an event sent by the other kind of socket."""
    return f"{event} is not accepted from this client"


@dataclass
class World:
    """Ann (the owner) with a drone streaming a turn; Bob (another user) doing the same."""

    hub: HubHarness
    ann: Session
    bob: Session
    #: A second IDE socket of Bob's that holds no lock.
    bob_idle: Client
    ann_id: str
    #: Ann's processing turn (None between a workOrderComplete and the next prompt).
    turn_id: str | None
    #: A finished turn of Ann's.
    done_turn: str
    #: A JWT naming Ann, signed with the hub's secret, that expired an hour ago.
    expired: str
    names: Iterator[int] = field(default_factory=lambda: iter(range(1_000_000)))
    barriers: int = 0
    #: The callId of the tool call of Ann's turn that waits for her answer (with_approval).
    asked: str | None = None

    def ann_ids(self) -> list[str]:
        """Ids of Ann's that must never show in another user's answers."""
        ids = [self.ann.drone_id, self.ann.project_id, self.ann.chat_id, self.ann_id]
        return [*ids, self.done_turn, *([self.turn_id] if self.turn_id else [])]

    async def locked(self) -> None:
        """Ann's IDE holds the lock of her drone for her chat session (again)."""
        if (await drone_state(self.hub, self.ann.token, self.ann.drone_id))["lockedBy"]:
            return
        ok, chat = await self.ann.ide.call(
            "requestSessionLock",
            {"_id": self.ann.drone_id},
            {"_id": self.ann.project_id},
            {"_id": self.ann.chat_id},
        )
        assert ok is True, chat

    async def with_turn(self) -> str:
        """Ann's turn, started if none is processing."""
        await self.locked()
        if self.turn_id is None:
            self.turn_id = await start_turn(self.ann.ide, self.ann.drone, "ann's prompt")
        return self.turn_id

    async def with_approval(self) -> str:
        """Ann's turn, with a tool call of it waiting for her answer."""
        turn_id = await self.with_turn()
        self.asked = f"call-ask-{next(self.names)}"
        request = {"turnId": turn_id, "callId": self.asked, "name": "write_file",
                   "parameters": '{"path": "a.py"}'}  # fmt: skip
        await self.ann.drone.emit("toolApproval", request)
        await self.ann.ide.log.wait_for("toolApproval", lambda a: a == (request,))
        return turn_id

    async def idle(self) -> None:
        """Ann's drone has no turn (her drone completes the current one)."""
        await self.locked()
        if self.turn_id is not None:
            turn_id, self.turn_id = self.turn_id, None
            await self.ann.drone.emit("workOrderComplete", turn_id, True)
            await self.ann.ide.log.wait_for("workOrderComplete", lambda a: a[0] == turn_id)

    async def spare_drone(self) -> str:
        """A new drone of Ann's (for the routes that destroy one)."""
        drone_id, _ = await self.hub.create_drone(self.ann.token, f"spare{next(self.names)}")
        return drone_id

    async def settled(self) -> tuple[int, int]:
        """Wait until all Bob's drone sent is handled and what it caused reached Ann's sockets.

        Handlers run in order per socket and forwards are queued at once, so: Bob's
        drone's round trip, then a status from Ann's drone that Ann's IDE must see.
        Returns how many events Ann's IDE and drone had received before the barrier.
        """
        self.barriers += 1
        mark = f"barrier {self.barriers}"
        await self.bob.drone.sio.call("status", (mark,), timeout=10)
        drone_seen = len(self.ann.drone.log.events)
        await self.ann.drone.sio.call("status", (mark,), timeout=10)
        await self.ann.ide.log.wait_for("status", lambda a: a == (mark,))
        index = self.ann.ide.log.events.index(("status", (mark,)))
        return index, drone_seen


async def connect_refusal(hub: HubHarness, auth: Any) -> str:
    """The `connect_error` message the hub answers `auth` with (fails if it accepts)."""
    sio = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    sio.on("connect_error", handler=lambda data: errors.append(data))
    try:
        with pytest.raises(socketio.exceptions.ConnectionError):
            await sio.connect(hub.url, auth=auth, transports=["websocket"], wait_timeout=5)
    finally:
        await sio.disconnect()
    assert len(errors) == 1 and isinstance(errors[0], dict), errors
    return str(errors[0]["message"])


def as_tuple(ack: Any) -> tuple[Any, ...]:
    """An ack's arguments as a tuple (python-socketio unwraps a single one)."""
    if ack is None:
        return ()
    return ack if isinstance(ack, tuple) else (ack,)


async def received(client: Client, start: int, event: str, *args: Any) -> None:
    """Wait until `client` receives `event(*args)` after its `start`-th event."""
    await eventually(lambda: (event, args) in client.log.events[start:])


async def assert_refused(client: Client, event: str, args: tuple[Any, ...], reason: str) -> None:
    """`event` from `client` is answered (False, reason) and an `error` event saying so."""
    start = len(client.log.events)
    ack = as_tuple(await client.call(event, *args))
    assert ack == (False, reason), (event, ack)
    await received(client, start, "error", {"event": event, "message": reason})


async def make_world(hub: HubHarness) -> World:
    """Ann and Bob, each with a drone streaming a turn in a locked session."""
    ann = await setup_session(hub, "ann")
    done = await start_turn(ann.ide, ann.drone, "ann's first prompt")
    await ann.drone.emit("workOrderComplete", done, True)
    await ann.ide.log.wait_for("workOrderComplete", lambda a: a[0] == done)
    turn_id = await start_turn(ann.ide, ann.drone, "ann's prompt")
    bob = await setup_session(hub, "bob")
    await start_turn(bob.ide, bob.drone, "bob's prompt")
    me = (await hub.http.get("/api/auth/me", headers=hub.bearer(ann.token))).json()
    past = int(time.time()) - 3600
    expired = jwt.encode(
        {"sub": me["_id"], "iat": past - 60, "exp": past}, hub.settings.secret_key or ""
    )
    bob_idle = await hub.ide(bob.token)
    return World(hub, ann, bob, bob_idle, me["_id"], turn_id, done, expired)
