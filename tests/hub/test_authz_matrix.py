"""The authorization matrix: every REST route and every socket event x every kind of caller.

The rows are keyed by the hub's own tables: the real app's routes and the
protocol's `IdeEvent` / `DroneEvent` enums. A route or an event without a row
(or a row for one that is gone) fails `test_every_route_and_event_has_a_row`;
adding one is adding a row. Each cell asserts the exact answer:

- REST x {owner, another user, no credentials, an expired token (signed with the
  test secret), a drone's key as the bearer}: the status, and `{"detail"}` word for
  word for every refusal.
- IDE events x {the owner's IDE, another user's IDE, the owner's drone socket, no
  credentials, an expired token}: the ack `(False, reason)` and the `error` event
  `{"event", "message"}` for every refusal, `connect_error`'s message at the handshake.
- drone events x {the owner's drone, another user's drone, the owner's IDE socket, no
  credentials, an IDE token or an expired one as the drone's key}: likewise, and
  nothing another user's drone sends ever reaches the owner's sockets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from gadget.hub.app import create_app
from gadget.protocol import DroneEvent, IdeEvent
from tests.harness import Client, HubHarness, hub_settings
from tests.hub.authz import (
    EXPIRED,
    INVALID,
    NO_AUTH,
    NO_BEARER,
    NO_LOCK,
    PASSWORD,
    WRONG_KEY,
    Route,
    World,
    app_routes,
    as_tuple,
    assert_refused,
    connect_refusal,
    make_world,
    not_accepted,
    received,
)
from tests.hub.helpers import drone_state


@pytest.fixture
async def world(hub: HubHarness) -> World:
    """Ann and Bob, each with a drone streaming a turn in a locked session."""
    return await make_world(hub)


# -- REST ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RestRow:
    """What the owner and another user get from one route (the rest are refused alike)."""

    owner: int
    other: int | None = None  # None: a public route, every caller gets `owner`
    body: Callable[[World], Any] | None = None
    #: The owner acts on a new drone of hers (the route destroys it).
    spare: bool = False
    #: The 404 detail another user gets, from the path's ids.
    missing: str = ""


def _signup(w: World) -> dict[str, str]:
    return {"username": f"new{next(w.names)}", "password": PASSWORD}


PUBLIC = RestRow(200)
REST: dict[Route, RestRow] = {
    ("POST", "/api/auth/register"): RestRow(201, body=_signup),
    ("POST", "/api/auth/login"): RestRow(
        200, body=lambda w: {"username": "ann", "password": PASSWORD}
    ),
    ("GET", "/api/auth/me"): RestRow(200, 200),
    ("GET", "/api/projects"): RestRow(200, 200),
    ("POST", "/api/projects"): RestRow(201, 201, body=lambda w: {"name": "p"}),
    ("GET", "/api/drones"): RestRow(200, 200),
    ("POST", "/api/drones"): RestRow(201, 201, body=lambda w: {"name": "d"}),
    ("DELETE", "/api/drones/{drone_id}"): RestRow(
        204, 404, spare=True, missing="unknown drone {drone_id}"
    ),
    ("POST", "/api/drones/{drone_id}/terminate"): RestRow(
        200, 404, missing="unknown drone {drone_id}"
    ),
    ("GET", "/api/chat-sessions"): RestRow(200, 200),
    ("GET", "/api/chat-sessions/{chat_session_id}/turns"): RestRow(
        200, 404, missing="unknown chat session {chat_session_id}"
    ),
    ("GET", "/api/turns/{turn_id}"): RestRow(200, 404, missing="unknown turn {turn_id}"),
    ("GET", "/api/settings"): RestRow(200, 200),
    ("PATCH", "/api/settings"): RestRow(200, 200, body=lambda w: {"defaultPermissionMode": "ask"}),
    ("GET", "/healthz"): PUBLIC,
    # Loopback clients not behind a proxy (tests/hub/test_metrics.py covers the refusals).
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("GET", "/"): PUBLIC,
    ("GET", "/static/{path}"): PUBLIC,
}

#: Who calls REST, and the refusal each unauthenticated caller gets on a protected route.
RestCaller = Literal["owner", "other", "none", "expired", "drone key"]
REST_REFUSALS: dict[RestCaller, str] = {
    "none": NO_BEARER,
    "expired": EXPIRED,
    "drone key": INVALID,
}


def _headers(w: World, caller: RestCaller) -> dict[str, str]:
    token = {
        "owner": w.ann.token,
        "other": w.bob.token,
        "none": "",
        "expired": w.expired,
        "drone key": w.ann.key,
    }[caller]
    return w.hub.bearer(token) if token else {}


async def _path(w: World, template: str, row: RestRow, caller: RestCaller) -> tuple[str, dict]:
    ids = {
        "drone_id": w.ann.drone_id,
        "chat_session_id": w.ann.chat_id,
        "turn_id": w.turn_id or w.done_turn,
        "path": "app.js",
    }
    if row.spare and caller == "owner":
        ids["drone_id"] = await w.spare_drone()
    return template.format(**ids), ids


async def rest_cell(w: World, route: Route, row: RestRow, caller: RestCaller) -> None:
    """One caller on one route: the exact status, and the exact refusal."""
    method, template = route
    path, ids = await _path(w, template, row, caller)
    body = row.body(w) if row.body else None
    r = await w.hub.http.request(method, path, json=body, headers=_headers(w, caller))
    where = (method, path, caller, r.status_code, r.text[:300])
    if row.other is None:  # public: credentials change nothing
        assert r.status_code == row.owner, where
    elif caller in REST_REFUSALS:
        assert r.status_code == 401, where
        assert r.json() == {"detail": REST_REFUSALS[caller]}, where
        assert r.headers["WWW-Authenticate"] == "Bearer", where
    elif caller == "owner":
        assert r.status_code == row.owner, where
    else:
        assert r.status_code == row.other, where
        if row.other == 404:
            assert r.json() == {"detail": row.missing.format(**ids)}, where
        else:
            assert not any(i in r.text for i in w.ann_ids()), where


async def test_rest_matrix(world: World, subtests: pytest.Subtests) -> None:
    routes = app_routes(world.hub.server.config.app)
    assert routes == set(REST), "see test_every_route_and_event_has_a_row"
    callers: list[RestCaller] = ["other", "none", "expired", "drone key", "owner"]
    for route, row in REST.items():
        for caller in callers:
            with subtests.test(route=route, caller=caller):
                await rest_cell(world, route, row, caller)
    # Nothing the others did touched Ann's things; only her own terminate reached her drone.
    state = await drone_state(world.hub, world.ann.token, world.ann.drone_id)
    assert state["online"] is True
    assert len(world.ann.drone.log.of("requestTermination")) == 1
    turn = await world.hub.get_turn(world.ann.token, world.turn_id or "")
    assert turn["status"] == "processing"


# -- IDE events ----------------------------------------------------------------------


@dataclass(frozen=True)
class IdeRow:
    """One IDE event: the owner's arguments, what must be true first, and the outcomes."""

    args: Callable[[World], tuple[Any, ...]]
    #: Ann's drone is streaming a turn (with a tool call waiting for her answer), or
    #: idle, before every cell of the row.
    state: Literal["turn", "approval", "idle"]
    #: Checks the owner's ack and its effect.
    accepted: Callable[[World, tuple[Any, ...]], Awaitable[None]]
    #: The reason another user's IDE (holding no lock) is refused with.
    other: Callable[[World], str]
    #: For an event anyone may send about their own things: checks another user's ack.
    other_accepted: Callable[[World, tuple[Any, ...]], Awaitable[None]] | None = None


async def _locked_again(w: World, ack: tuple[Any, ...]) -> None:
    assert ack == (True, w.ann.chat_id), ack


async def _released(w: World, ack: tuple[Any, ...]) -> None:
    assert ack == (True,), ack
    assert (await drone_state(w.hub, w.ann.token, w.ann.drone_id))["lockedBy"] is None


def _reached_drone(
    event: str, *expected: Any
) -> Callable[[World, tuple[Any, ...]], Awaitable[None]]:
    async def check(w: World, ack: tuple[Any, ...]) -> None:
        assert ack == (True,), ack
        await received(w.ann.drone, 0, event, *expected)

    return check


async def _prompted(w: World, ack: tuple[Any, ...]) -> None:
    assert ack[0] is True and isinstance(ack[1], str), ack
    w.turn_id = ack[1]
    await w.ann.drone.log.wait_for("processWorkOrder", lambda a: a[3]["_id"] == ack[1])


async def _cancel_sent(w: World, ack: tuple[Any, ...]) -> None:
    assert ack == (True,), ack
    await received(w.ann.drone, 0, "cancelWorkOrder", w.turn_id)


async def _mode_set(w: World, ack: tuple[Any, ...]) -> None:
    assert ack == (True,), ack
    await received(w.ann.drone, 0, "setPermissionMode", {"turnId": w.turn_id, "mode": "auto"})
    await received(
        w.ann.ide, 0, "permissionModeChanged", {"chatSession": w.ann.chat_id, "mode": "auto"}
    )


async def _answered(w: World, ack: tuple[Any, ...]) -> None:
    assert ack == (True,), ack
    decision = {"turnId": w.turn_id, "callId": w.asked, "decision": "allow"}
    await received(w.ann.drone, 0, "approvalDecision", decision)
    await received(w.ann.ide, 0, "approvalDecision", {**decision, "by": "ann"})


async def _reverted(w: World, ack: tuple[Any, ...]) -> None:
    assert ack == (True, {"reverted": True, "conflicts": [], "restored": []}), ack
    await received(w.ann.drone, 0, "revertTurn", w.done_turn)
    turn = await w.hub.get_turn(w.ann.token, w.done_turn)
    assert turn["reverted"] is True


async def _watching(w: World, ack: tuple[Any, ...]) -> None:
    assert ack == (True,), ack


async def _watching_own(w: World, ack: tuple[Any, ...]) -> None:
    assert ack == (True,), ack
    await w.bob_idle.call("watchDrones", False)  # a round trip: what was sent has arrived
    assert all(a[0]["_id"] not in w.ann_ids() for a in w.bob_idle.log.of("droneState"))


async def _model_set(w: World, ack: tuple[Any, ...]) -> None:
    assert ack == (True,), ack
    await received(w.ann.ide, 0, "modelChanged", {"chatSession": w.ann.chat_id, "model": "m2"})


def _refs(w: World) -> tuple[Any, ...]:
    ann = w.ann
    return ({"_id": ann.drone_id}, {"_id": ann.project_id}, {"_id": ann.chat_id})


IDE: dict[IdeEvent, IdeRow] = {
    IdeEvent.REQUEST_SESSION_LOCK: IdeRow(
        _refs, "turn", _locked_again, lambda w: f"unknown drone {w.ann.drone_id}"
    ),
    IdeEvent.RELEASE_SESSION_LOCK: IdeRow(lambda w: (), "idle", _released, lambda w: NO_LOCK),
    IdeEvent.REQUEST_WORKSPACE_MODE: IdeRow(
        lambda w: ("user",),
        "turn",
        _reached_drone("requestWorkspaceMode", "user"),
        lambda w: NO_LOCK,
    ),
    IdeEvent.SUBMIT_PROMPT: IdeRow(lambda w: ("do it",), "idle", _prompted, lambda w: NO_LOCK),
    IdeEvent.CANCEL_WORK_ORDER: IdeRow(
        lambda w: (w.turn_id,), "turn", _cancel_sent, lambda w: NO_LOCK
    ),
    IdeEvent.REQUEST_TERMINATION: IdeRow(
        lambda w: (w.ann.drone_id,),
        "turn",
        _reached_drone("requestTermination"),
        lambda w: f"unknown drone {w.ann.drone_id}",
    ),
    IdeEvent.SET_PERMISSION_MODE: IdeRow(lambda w: ("auto",), "turn", _mode_set, lambda w: NO_LOCK),
    IdeEvent.ANSWER_APPROVAL: IdeRow(
        lambda w: (w.turn_id, w.asked, "allow"), "approval", _answered, lambda w: NO_LOCK
    ),
    IdeEvent.REVERT_TURN: IdeRow(lambda w: (w.done_turn,), "idle", _reverted, lambda w: NO_LOCK),
    IdeEvent.SET_MODEL: IdeRow(lambda w: ("m2",), "idle", _model_set, lambda w: NO_LOCK),
    IdeEvent.WATCH_DRONES: IdeRow(
        lambda w: (True,), "idle", _watching, lambda w: "", other_accepted=_watching_own
    ),
}

IdeCaller = Literal["none", "expired", "drone", "other", "owner"]


async def ide_cell(w: World, event: IdeEvent, row: IdeRow, caller: IdeCaller) -> None:
    """One caller sending one IDE event: the exact refusal, or the owner's outcome."""
    args = row.args(w)
    if caller == "none":
        assert await connect_refusal(w.hub, None) == NO_AUTH
    elif caller == "expired":
        assert await connect_refusal(w.hub, {"token": w.expired}) == EXPIRED
    elif caller == "drone":
        await assert_refused(w.ann.drone, event, args, not_accepted(event))
    elif caller == "other" and row.other_accepted is not None:
        await row.other_accepted(w, as_tuple(await w.bob_idle.call(event, *args)))
    elif caller == "other":
        await assert_refused(w.bob_idle, event, args, row.other(w))
    else:
        await row.accepted(w, as_tuple(await w.ann.ide.call(event, *args)))


async def test_ide_event_matrix(world: World, subtests: pytest.Subtests) -> None:
    assert set(IDE) == set(IdeEvent), "see test_every_route_and_event_has_a_row"
    callers: list[IdeCaller] = ["none", "expired", "drone", "other", "owner"]
    states = {"turn": world.with_turn, "approval": world.with_approval, "idle": world.idle}
    for event, row in IDE.items():
        await states[row.state]()
        for caller in callers:
            with subtests.test(event=event.value, caller=caller):
                await ide_cell(world, event, row, caller)
    # Bob's refused attempts left Ann's drone alone.
    await world.locked()
    assert len(world.ann.drone.log.of("requestTermination")) == 1
    assert len(world.ann.drone.log.of("cancelWorkOrder")) == 1


# -- drone events --------------------------------------------------------------------


@dataclass(frozen=True)
class DroneRow:
    """One drone event: its arguments, and how the owner's drone's event shows."""

    args: Callable[[World], tuple[Any, ...]]
    #: Checks the owner's outcome; None: the event is forwarded as is to her session's IDEs.
    accepted: Callable[[World, tuple[Any, ...]], Awaitable[None]] | None = None
    #: Another user's drone sends these instead (the owner's most sensitive ids).
    other_args: Callable[[World], tuple[Any, ...]] | None = None
    #: What another user's drone is answered, beyond "nothing reaches the owner".
    other: Callable[[World, Client], Awaitable[None]] | None = None


def _one(value: Any) -> Callable[[World], tuple[Any, ...]]:
    return lambda w: (value,)


async def _completed(w: World, args: tuple[Any, ...]) -> None:
    await received(w.ann.ide, 0, "workOrderComplete", *args)
    w.turn_id = None


def _recovery(turn: Callable[[World], str]) -> Callable[[World], tuple[Any, ...]]:
    return lambda w: ({"workspaceId": "ws", "turnId": turn(w), "chatSessionId": w.ann.chat_id},)


def _discarded(turn: Callable[[World], str]) -> Callable[[World, Client], Awaitable[None]]:
    async def check(w: World, drone: Client) -> None:
        answer = {"turnId": turn(w), "action": "discard"}
        await received(drone, 0, "crashRecoveryResponse", answer)

    return check


async def _recovered(w: World, args: tuple[Any, ...]) -> None:
    await _discarded(lambda w: w.done_turn)(w, w.ann.drone)


def _current(w: World) -> str:
    assert w.turn_id is not None
    return w.turn_id


DRONE: dict[DroneEvent, DroneRow] = {
    DroneEvent.STATUS: DroneRow(_one("working")),
    DroneEvent.LOG: DroneRow(lambda w: (1.5, "agent", "info", "a log line")),
    DroneEvent.WORKSPACE_MODE_CHANGED: DroneRow(_one("idle")),
    DroneEvent.THINKING: DroneRow(_one("hmm")),
    DroneEvent.RESPONSE: DroneRow(_one("an answer")),
    DroneEvent.TOOL_CALL: DroneRow(lambda w: ("call-1", "read_file", "{}", '"text"')),
    DroneEvent.WORK_ORDER_COMPLETE: DroneRow(lambda w: (_current(w), True), _completed),
    DroneEvent.REQUEST_CRASH_RECOVERY: DroneRow(
        _recovery(lambda w: w.done_turn),
        _recovered,
        other_args=_recovery(_current),
        other=_discarded(_current),
    ),
    DroneEvent.AGENT_THINKING: DroneRow(_one({"agentId": "call-1", "thinking": "sub"})),
    DroneEvent.AGENT_RESPONSE: DroneRow(_one({"agentId": "call-1", "chunk": "sub answer"})),
    DroneEvent.AGENT_TOOL_CALL: DroneRow(_one({"agentId": "call-1", "tool": "search"})),
    DroneEvent.AGENT_TOOL_RESULT: DroneRow(
        _one({"agentId": "call-1", "tool": "search", "result": "found"})
    ),
    DroneEvent.AGENT_COMPLETE: DroneRow(_one({"agentId": "call-1", "response": "done"})),
    DroneEvent.TOOL_APPROVAL: DroneRow(
        lambda w: (
            {
                "turnId": _current(w),
                "callId": "call-2",
                "name": "run_command",
                "parameters": '{"command": "ls"}',
            },
        )
    ),
    DroneEvent.TURN_CHANGES: DroneRow(
        lambda w: (
            _current(w),
            [{"path": "a.py", "status": "modified", "additions": 1, "deletions": 1}],
        )
    ),
    DroneEvent.USAGE: DroneRow(
        lambda w: (
            {
                "turnId": _current(w),
                "model": "m",
                "promptTokens": 5,
                "completionTokens": 2,
                "durationMs": 40,
            },
        )
    ),
}

DroneCaller = Literal["none", "ide token", "expired", "ide", "other", "owner"]


async def _isolated(w: World, event: DroneEvent, row: DroneRow) -> None:
    """Bob's drone sends the event naming Ann's things: none of it reaches Ann."""
    # Ann's own stream events written and their streamAcks delivered first: a flush tick
    # landing inside the window below would otherwise ack Ann's turn there (not Bob's doing).
    await w.hub.settle()
    await w.settled()
    ide_before, drone_before = len(w.ann.ide.log.events), len(w.ann.drone.log.events)
    args = (row.other_args or row.args)(w)
    ack = as_tuple(await w.bob.drone.call(event, *args))
    assert ack == (), (event, ack)  # handled for Bob's own session (or dropped), not refused
    if row.other is not None:
        await row.other(w, w.bob.drone)
    ide_seen, drone_seen = await w.settled()
    assert w.ann.ide.log.events[ide_before:ide_seen] == [], event
    assert w.ann.drone.log.events[drone_before:drone_seen] == [], event


async def drone_cell(w: World, event: DroneEvent, row: DroneRow, caller: DroneCaller) -> None:
    """One caller sending one drone event: the exact refusal, or the owner's outcome."""
    if caller == "none":
        assert await connect_refusal(w.hub, None) == NO_AUTH
    elif caller in ("ide token", "expired"):
        key = w.ann.token if caller == "ide token" else w.expired
        auth = {"registrationId": w.ann.drone_id, "key": key}
        assert await connect_refusal(w.hub, auth) == WRONG_KEY
    elif caller == "ide":
        await assert_refused(w.ann.ide, event, row.args(w), not_accepted(event))
    elif caller == "other":
        await _isolated(w, event, row)
    else:
        args = row.args(w)
        start = len(w.ann.ide.log.events)
        ack = as_tuple(await w.ann.drone.call(event, *args))
        assert ack == (), (event, ack)
        if row.accepted is not None:
            await row.accepted(w, args)
        else:
            await received(w.ann.ide, start, event, *args)


async def test_drone_event_matrix(world: World, subtests: pytest.Subtests) -> None:
    assert set(DRONE) == set(DroneEvent), "see test_every_route_and_event_has_a_row"
    callers: list[DroneCaller] = ["none", "ide token", "expired", "ide", "other", "owner"]
    for event, row in DRONE.items():
        await world.with_turn()
        for caller in callers:
            with subtests.test(event=event.value, caller=caller):
                await drone_cell(world, event, row, caller)
    assert world.ann.drone.log.of("error") == []  # the owner's drone was never refused
    bob_turns = (
        await world.hub.http.get(
            f"/api/chat-sessions/{world.bob.chat_id}/turns",
            headers=world.hub.bearer(world.bob.token),
        )
    ).json()
    assert [t["status"] for t in bob_turns] == ["processing"]  # Bob's own turn went on


# -- coverage --------------------------------------------------------------------------


def test_every_route_and_event_has_a_row(tmp_path: Path) -> None:
    routes = app_routes(create_app(hub_settings(tmp_path / "home")))
    assert routes - set(REST) == set(), "add a RestRow for each new route to REST"
    assert set(REST) - routes == set(), "remove the rows of routes that are gone"
    assert set(IdeEvent) - set(IDE) == set(), "add an IdeRow for each new IdeEvent to IDE"
    assert set(DroneEvent) - set(DRONE) == set(), "add a DroneRow for each new DroneEvent"
    assert not set(IdeEvent) & set(DroneEvent), "an event in both tables needs its own rows"
