"""The whole hub on PostgreSQL: the same turn as on SQLite, stored exactly, and resumed after a restart."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest

from tests.harness import HubHarness
from tests.hub.helpers import setup_session, start_turn
from tests.postgres import fresh_database

pytestmark = pytest.mark.postgres


async def test_a_turn_on_postgres_is_stored_exactly_and_survives_a_hub_restart(
    hub_factory: Callable[..., AbstractAsyncContextManager[HubHarness]],
) -> None:
    async with fresh_database() as url:
        async with hub_factory(database_url=url) as hub:
            s = await setup_session(hub)
            turn_id = await start_turn(s.ide, s.drone)
            await s.drone.emit("thinking", "Let me look.")
            await s.drone.emit("toolCall", "c1", "read_file", '{"path": "a.py"}', '"x = 1"')
            await s.drone.emit("response", "Half of ")
            await s.ide.log.wait_for("response")
        # A graceful stop wrote everything; a new hub on the same database resumes the turn.
        async with hub_factory(database_url=url) as hub:
            drone = await hub.drone(s.drone_id, s.key)
            ide = await hub.ide(s.token)
            lock = ({"_id": s.drone_id}, {"_id": s.project_id}, {"_id": s.chat_id})
            assert (await ide.call("requestSessionLock", *lock))[0] is True
            (snapshot,) = await ide.log.wait_for("turnSnapshot")
            assert snapshot["blocks"][-1]["content"] == "Half of "
            await drone.emit("response", "the answer.")
            await drone.emit("workOrderComplete", turn_id, True)
            await ide.log.wait_for("workOrderComplete")
            await hub.settle()
            stored = await hub.hub.store.turn_out(turn_id)
    assert stored is not None and stored.status.value == "finished"
    assert [(b.mode.value, b.content) for b in stored.blocks] == [
        ("thinking", "Let me look."),
        (
            "tool",
            {
                "callId": "c1",
                "name": "read_file",
                "parameters": '{"path": "a.py"}',
                "response": '"x = 1"',
            },
        ),
        ("responding", "Half of the answer."),
    ]
