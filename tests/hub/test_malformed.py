"""Malformed payloads on every event are refused or dropped, and the hub keeps serving."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gadget.protocol import MAX_CONTENT, DroneEvent, IdeEvent
from tests.harness import Client, HubHarness
from tests.hub.helpers import Session, lock, setup_session, start_turn

# JSON values a client could send (multi-megabyte strings: test_each_bad_call...).
leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["", "idle", "agent", "unknown-id", "x" * 300])
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=12), inner, max_size=4)
        | st.fixed_dictionaries(
            {},
            optional={
                "_id": inner,
                "agentId": inner,
                "turnId": inner,
                "chatSessionId": inner,
                "workspaceId": inner,
                "thinking": inner,
                "chunk": inner,
                "tool": inner,
            },
        )
    ),
    max_leaves=8,
)
events = st.sampled_from([*IdeEvent, *DroneEvent]).map(str) | st.text(min_size=1, max_size=20)
messages = st.tuples(
    st.sampled_from(["ide", "drone"]), events, st.lists(values, max_size=6), st.booleans()
)


@pytest.fixture
async def session(hub: HubHarness) -> Session:
    """One session shared by every example of a property test (hub state carries over)."""
    return await setup_session(hub)


async def send(client: Client, event: str, args: list[Any], ack: bool) -> None:
    """Send a message; with an ack, the hub must answer it (an error reply or a result)."""
    if ack:
        await client.sio.call(event, tuple(args), timeout=10)
    else:
        await client.sio.emit(event, tuple(args))


async def still_serving(hub: HubHarness, s: Session) -> None:
    """No handler crashed, both sockets are answered, and a whole normal turn works."""
    for client in (s.ide, s.drone):
        crashed = [a for a in client.log.of("error") if "internal error" in a[0]["message"]]
        assert crashed == []
        reply = await client.sio.call("ping?", (), timeout=10)
        assert tuple(reply) == (False, "unknown event 'ping?'")
    lease = await hub.hub.drones.lease(s.drone_id)
    if lease is not None and lease.current_turn_id is not None:  # a valid garbage prompt
        await s.drone.emit("workOrderComplete", lease.current_turn_id, True)
    assert tuple(await lock(s, s.ide)) == (True, s.chat_id)
    turn_id = await start_turn(s.ide, s.drone, "normal prompt")
    await s.drone.emit("thinking", "fine")
    await s.drone.emit("response", "all good")
    await s.drone.emit("workOrderComplete", turn_id, True)
    await s.ide.log.wait_for("workOrderComplete", lambda a: a[0] == turn_id)
    await hub.settle()
    turn = await hub.get_turn(s.token, turn_id)
    assert turn["status"] == "finished"
    assert [(b["mode"], b["content"]) for b in turn["blocks"]] == [
        ("thinking", "fine"),
        ("responding", "all good"),
    ]


@given(garbage=st.lists(messages, min_size=1, max_size=6))
async def test_random_payloads_never_break_the_hub(
    hub: HubHarness, session: Session, garbage: list[tuple[str, str, list[Any], bool]]
) -> None:
    for sender, event, args, ack in garbage:
        client = session.ide if sender == "ide" else session.drone
        await send(client, event, args, ack)
    await still_serving(hub, session)


HUGE = "y" * (2 * MAX_CONTENT + 1)  # two megabytes
# Each event with arguments of the wrong type, missing, or too large.
BAD_CALLS: list[tuple[str, str, tuple[Any, ...]]] = [
    ("ide", "requestSessionLock", ()),
    ("ide", "requestSessionLock", ("drone", "project", None)),
    ("ide", "requestSessionLock", ({"_id": 5}, {"_id": "p"}, None)),
    ("ide", "requestSessionLock", ({"_id": "unknown"}, {"_id": "unknown"}, {"_id": "unknown"})),
    ("ide", "requestSessionLock", ({"_id": HUGE}, {"_id": "p"}, None)),
    ("ide", "requestWorkspaceMode", ()),
    ("ide", "requestWorkspaceMode", ("sideways",)),
    ("ide", "requestWorkspaceMode", ({"mode": "agent"},)),
    ("ide", "submitPrompt", ()),
    ("ide", "submitPrompt", (42,)),
    ("ide", "submitPrompt", ("   ",)),
    ("ide", "submitPrompt", (HUGE,)),
    ("ide", "submitPrompt", ("a", "b")),
    ("ide", "cancelWorkOrder", ()),
    ("ide", "cancelWorkOrder", (["turn"],)),
    ("ide", "cancelWorkOrder", ("unknown-turn",)),
    ("ide", "cancelWorkOrder", (HUGE,)),
    ("ide", "requestTermination", ()),
    ("ide", "requestTermination", (None,)),
    ("ide", "requestTermination", ("unknown-drone",)),
    ("ide", "thinking", ("an IDE may not stream",)),
    ("drone", "status", ()),
    ("drone", "status", (HUGE,)),
    ("drone", "status", ({"a": 1},)),
    ("drone", "log", ()),
    ("drone", "log", (None, "c", "info", "m")),
    ("drone", "log", ("t", "c", "info", HUGE)),
    ("drone", "log", ("t", "c", "info", "m", None, "extra")),
    ("drone", "workspaceModeChanged", ("sideways",)),
    ("drone", "thinking", ()),
    ("drone", "thinking", (HUGE,)),
    ("drone", "thinking", (["a"],)),
    ("drone", "response", (None,)),
    ("drone", "response", ("a", "b")),
    ("drone", "toolCall", ("c1", "name", "{}")),
    ("drone", "toolCall", ("c1", "name", {}, "{}")),
    ("drone", "toolCall", ("c1", "name", "p" * 8_000_001, "{}")),
    ("drone", "toolCall", ("", "name", "{}", "{}")),
    ("drone", "workOrderComplete", ()),
    ("drone", "workOrderComplete", ("t", "yes")),
    ("drone", "requestCrashRecovery", ()),
    ("drone", "requestCrashRecovery", ({"turnId": "t"},)),
    ("drone", "requestCrashRecovery", ("t",)),
    ("drone", "agent:thinking", ("text",)),
    ("drone", "agent:thinking", ({"agentId": "a"},)),
    ("drone", "agent:response", ({"agentId": "a", "chunk": HUGE},)),
    ("drone", "agent:tool-call", ({"tool": "grep"},)),
    ("drone", "agent:tool-result", ()),
    ("drone", "agent:complete", ({"agentId": "a", "subagent": "not an object"},)),
    ("drone", "submitPrompt", ("a drone may not prompt",)),
    ("drone", "no-such-event", (1, 2)),
]


async def test_each_bad_call_gets_an_error_reply(hub: HubHarness) -> None:
    s = await setup_session(hub)
    turn_id = await start_turn(s.ide, s.drone)  # so streaming events would be recorded
    for sender, event, args in BAD_CALLS:
        client = s.ide if sender == "ide" else s.drone
        before = len(client.log.of("error"))
        reply = await client.sio.call(event, args, timeout=10)
        assert isinstance(reply, tuple | list) and reply[0] is False, (event, args[:1], reply)
        assert isinstance(reply[1], str) and 0 < len(reply[1]) < 1000, (event, reply)
        # The error event goes out before the ack, on the same socket.
        assert client.log.of("error")[before:] == [({"event": event, "message": reply[1]},)]
    # Nothing of it reached the turn, and the turn still completes normally.
    await s.drone.emit("response", "done")
    await s.drone.emit("workOrderComplete", turn_id, True)
    assert await s.ide.log.wait_for("workOrderComplete") == (turn_id, True)
    await hub.settle()
    turn = await hub.get_turn(s.token, turn_id)
    assert turn["status"] == "finished"
    assert [(b["mode"], b["content"]) for b in turn["blocks"]] == [("responding", "done")]
    assert s.ide.log.of("thinking") == [] and s.ide.log.of("toolCall") == []


RAW_FRAMES = [
    '2["thinking",NaN]',  # not JSON
    '2["thinking",1e999999]',
    '2["status",123456789012345678901234567890]',  # beyond 64 bits
    '2{"event":"thinking"}',  # not an array
    "2[]",  # no event name
    "2[42]",  # event name not a string
    '2["thinking"',  # truncated
    "2",
    "9garbage",  # unknown packet type
    '21["submitPrompt",',
]


async def test_raw_frames_that_are_not_socketio_packets_are_dropped(
    hub: HubHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="engineio.server")
    s = await setup_session(hub)
    turn_id = await start_turn(s.ide, s.drone)
    for frame in RAW_FRAMES:
        for client in (s.ide, s.drone):
            if client.sio.connected:
                await client.sio.eio.send(frame)
    # A refusal closes at most the offending socket; the hub itself keeps serving.
    ide = s.ide if s.ide.sio.connected else await hub.ide(s.token)
    drone = s.drone if s.drone.sio.connected else await hub.drone(s.drone_id, s.key)
    assert tuple(await lock(s, ide)) == (True, s.chat_id)
    await drone.emit("response", "still here")
    await drone.emit("workOrderComplete", turn_id, True)
    assert await ide.log.wait_for("workOrderComplete") == (turn_id, True)
    await hub.settle()
    turn = await hub.get_turn(s.token, turn_id)
    assert [b["content"] for b in turn["blocks"]] == ["still here"]
    # Logged as one rate-limited warning line, never a traceback per frame.
    engine = [r for r in caplog.records if r.name == "engineio.server"]
    assert engine and all(r.levelno == logging.WARNING and not r.exc_info for r in engine)
    assert any("dropped a malformed frame" in r.getMessage() for r in engine)
    assert len(engine) < len(RAW_FRAMES)
