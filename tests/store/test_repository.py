"""The Store on SQLite and PostgreSQL: a turn's rows round-trip, and appending stays O(1)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError

from gadget.protocol import BlockMode, ToolCallOut, TurnStatus
from gadget.store import batch
from gadget.store.repository import Store
from gadget.store.tables import TurnBlock, utcnow


async def new_turn(store: Store, prompt: str = "hello world") -> tuple[str, str]:
    """A user, project, drone and chat session with one processing turn: (chat id, turn id)."""
    user = await store.create_user(f"u{utcnow().timestamp()}", "hash")
    project = await store.create_project(user.id, "p", "")
    drone = await store.create_drone(user.id, "d", "host", "sha256$x")
    chat = await store.create_chat_session(user.id, project.id, drone.id)
    turn = await store.create_turn(chat.id, user.id, prompt)
    return chat.id, turn.id


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    """Every SQL statement the store's engine runs inside the block."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", record)


async def add_filler_blocks(store: Store, turn_id: str, count: int) -> None:
    """`count` stored text blocks at indexes 0..count-1, in one transaction."""
    async with store.session() as s:
        s.add_all(
            TurnBlock(turn_id=turn_id, idx=i, mode="thinking", content=f"b{i}")
            for i in range(count)
        )
        await s.commit()


async def append_costs(store: Store, blocks: int) -> dict[str, list[str]]:
    """The statements of each append kind on a turn that already has `blocks` blocks."""
    _, turn_id = await new_turn(store)
    await add_filler_blocks(store, turn_id, blocks)
    call = ToolCallOut(callId="c", name="task", parameters="{}", response='""')
    costs: dict[str, list[str]] = {}
    with statements(store) as seen:
        await store.write_batch(
            [batch.InsertBlock(turn_id, blocks, 1, BlockMode.RESPONDING, utcnow(), "first piece")]
        )
    costs["InsertBlock"] = list(seen)
    with statements(store) as seen:
        await store.write_batch([batch.AppendBlock(turn_id, blocks, " and more")])
    costs["AppendBlock"] = list(seen)
    with statements(store) as seen:
        await store.write_batch([batch.InsertToolCall(turn_id, blocks + 1, 1, utcnow(), call)])
    costs["InsertToolCall"] = list(seen)
    with statements(store) as seen:
        await store.write_batch([batch.CompleteToolCall(turn_id, "c", "done", {"steps": 1})])
    costs["CompleteToolCall"] = list(seen)
    with statements(store) as seen:  # the recorder's path: several writes in one transaction
        await store.write_batch(
            [
                batch.InsertBlock(turn_id, blocks + 2, 1, BlockMode.THINKING, utcnow(), "x"),
                batch.AppendBlock(turn_id, blocks + 2, "y"),
                batch.AppendBlock(turn_id, blocks + 2, "z"),
                batch.SetStatus(turn_id, TurnStatus.FINISHED, None),
            ]
        )
    costs["write_batch"] = list(seen)
    turn = await store.turn_out(turn_id)
    assert turn is not None and len(turn.blocks) == blocks + 3
    assert turn.blocks[blocks].content == "first piece and more"
    assert turn.blocks[blocks + 1].content["response"] == "done"  # type: ignore[index]
    assert (turn.blocks[blocks + 2].content, turn.status) == ("xyz", TurnStatus.FINISHED)
    return costs


async def test_appending_costs_the_same_statements_at_10_and_1000_blocks(store: Store) -> None:
    small = await append_costs(store, 10)
    large = await append_costs(store, 1000)
    assert small == large
    for kind, stmts in large.items():
        assert 1 <= len(stmts) <= 6, (kind, stmts)
        # No append reads the turn's blocks back.
        assert not any(s.lstrip().upper().startswith("SELECT") for s in stmts), (kind, stmts)


async def test_a_turn_round_trips_exactly(store: Store) -> None:
    chat_id, turn_id = await new_turn(store, "  fix   the\nbug  ")
    t0 = utcnow()
    await store.write_batch(
        [
            batch.InsertBlock(turn_id, 0, 1, BlockMode.THINKING, t0, "Let me "),
            batch.AppendBlock(turn_id, 0, "think."),
        ]
    )
    call = ToolCallOut(callId="c1", name="read_file", parameters='{"p": 1}', response='"x"')
    await store.write_batch([batch.InsertToolCall(turn_id, 1, 1, utcnow(), call)])
    await store.write_batch([batch.CompleteToolCall(turn_id, "c1", '"y"', {"steps": 2})])
    await store.write_batch(
        [batch.InsertBlock(turn_id, 2, 2, BlockMode.RESPONDING, utcnow(), "Done ✓ — ünïcode")]
    )
    assert [t.id for t, _ in await store.processing_turns()] == [turn_id]
    await store.add_retry(turn_id)
    await store.set_turn_status(turn_id, TurnStatus.ERROR, "boom")

    turn = await store.turn_out(turn_id)
    assert turn is not None
    assert (turn.chatSession, turn.prompt, turn.status, turn.errorMessage, turn.retries) == (
        chat_id,
        "  fix   the\nbug  ",
        TurnStatus.ERROR,
        "boom",
        1,
    )
    expected_call = {
        "callId": "c1",
        "name": "read_file",
        "parameters": '{"p": 1}',
        "response": '"y"',
        "subagent": {"steps": 2},
    }
    assert [(b.mode.value, b.content, b.attempt) for b in turn.blocks] == [
        ("thinking", "Let me think.", 1),
        ("tool", expected_call, 1),
        ("responding", "Done ✓ — ünïcode", 2),
    ]
    assert [c.model_dump(exclude_none=True) for c in turn.toolCalls] == [expected_call]
    assert turn.stats == {"toolCallCount": 1, "blockCount": 3}
    assert turn.blocks[0].createdAt == t0 and turn.blocks[0].createdAt.tzinfo is not None
    assert turn.createdAt.utcoffset() == UTC.utcoffset(None)
    assert await store.processing_turns() == []
    # The chat session took its title from the first prompt, whitespace collapsed.
    chat = await store.get_chat_session(chat_id)
    assert chat is not None and chat.title == "fix the bug"
    assert [t.id for t in await store.session_turns(chat_id)] == [turn_id]


async def test_a_block_index_is_unique_within_a_turn(store: Store) -> None:
    _, turn_id = await new_turn(store)
    await store.write_batch([batch.InsertBlock(turn_id, 0, 1, BlockMode.THINKING, utcnow(), "a")])
    with pytest.raises(IntegrityError):
        await store.write_batch(
            [batch.InsertBlock(turn_id, 0, 1, BlockMode.THINKING, utcnow(), "b")]
        )


async def test_large_text_appends_keep_every_character(store: Store) -> None:
    _, turn_id = await new_turn(store)
    piece = "0123456789abcdef" * 1024  # 16 KiB, the recorder's flush size
    await store.write_batch(
        [batch.InsertBlock(turn_id, 0, 1, BlockMode.RESPONDING, utcnow(), piece)]
    )
    for _ in range(63):
        await store.write_batch([batch.AppendBlock(turn_id, 0, piece)])
    turn = await store.turn_out(turn_id)
    assert turn is not None
    assert turn.blocks[0].content == piece * 64


async def test_ownership_reads_return_other_users_rows_only_by_id(store: Store) -> None:
    chat_a, _ = await new_turn(store)
    chat_b, _ = await new_turn(store)
    a = await store.get_chat_session(chat_a)
    b = await store.get_chat_session(chat_b)
    assert a is not None and b is not None and a.user_id != b.user_id
    assert [c.id for c in await store.list_chat_sessions(a.user_id, None)] == [chat_a]
    assert [p.id for p in await store.list_projects(a.user_id)] == [a.project_id]
    assert [d.id for d in await store.list_drones(b.user_id)] == [b.drone_id]
    assert await store.list_chat_sessions(a.user_id, b.project_id) == []
