"""Helpers of the issue-10 end-to-end tests: acks as tuples, a session in a permission mode."""

from __future__ import annotations

import json
from typing import Any

from tests.drone.e2e import Session
from tests.harness import Client


def as_tuple(ack: Any) -> tuple[Any, ...]:
    """An ack's arguments as a tuple (python-socketio unwraps a single one)."""
    if ack is None:
        return ()
    return ack if isinstance(ack, tuple) else (ack,)


async def call(client: Client, event: str, *args: Any) -> tuple[Any, ...]:
    """Emit with an ack; the ack's arguments as a tuple."""
    return as_tuple(await client.call(event, *args))


async def set_mode(s: Session, mode: str) -> None:
    """Lock (once) and put the session in `mode`."""
    if s.ide is None or s.chat_id is None:
        await s.lock()
    assert s.ide is not None
    assert await call(s.ide, "setPermissionMode", mode) == (True,)


async def asked(client: Client, turn_id: str, name: str, index: int = 0) -> dict[str, Any]:
    """The `index`-th toolApproval of `turn_id` for tool `name` that `client` received."""

    def matches(a: tuple[Any, ...]) -> bool:
        return a[0]["turnId"] == turn_id and a[0]["name"] == name

    await client.log.wait_for(
        "toolApproval", lambda a: matches(a) and _nth(client, matches) > index, timeout=20
    )
    found = [a[0] for a in client.log.of("toolApproval") if matches(a)]
    return dict(found[index])


def _nth(client: Client, matches: Any) -> int:
    return sum(1 for a in client.log.of("toolApproval") if matches(a))


def result(turn: dict[str, Any], call_id: str) -> dict[str, Any]:
    """The parsed response of the tool call `call_id` of a turn's JSON."""
    (found,) = [c for c in turn["toolCalls"] if c["callId"] == call_id]
    parsed: dict[str, Any] = json.loads(found["response"])
    return parsed


def tool_call(turn: dict[str, Any], call_id: str) -> dict[str, Any]:
    """The tool call `call_id` of a turn's JSON."""
    (found,) = [c for c in turn["toolCalls"] if c["callId"] == call_id]
    return dict(found)
