"""The Store on SQLite and PostgreSQL: a turn's rows round-trip exactly."""

from __future__ import annotations

from datetime import UTC

import pytest
from sqlalchemy.exc import IntegrityError

from gadget.protocol import BlockMode, ToolCallOut, TurnStatus
from gadget.store import batch
from gadget.store.batch import TurnWrite
from gadget.store.repository import Store
from gadget.store.tables import utcnow
from tests.store.helpers import NODE, Made, new_turn


def write(m: Made, to_seq: int, *ops: batch.TurnOp) -> list[TurnWrite]:
    return [TurnWrite(m.turn_id, m.drone_id, m.epoch, to_seq, list(ops))]


async def test_a_turn_round_trips_exactly(store: Store) -> None:
    m = await new_turn(store, "  fix   the\nbug  ")
    t0 = utcnow()
    call = ToolCallOut(callId="c1", name="task", parameters='{"p": 1}', response='"x"')
    await store.write(
        write(
            m,
            4,
            batch.InsertBlock(1, 0, 1, BlockMode.THINKING, t0, "Let me "),
            batch.AppendBlock(2, 0, "think."),
            batch.InsertToolCall(3, 1, 1, utcnow(), call),
            batch.InsertAgentEvent(4, "c1", "agent:thinking", {"thinking": "sub "}),
        ),
        NODE,
    )
    live = await store.turn_out(m.turn_id)
    assert live is not None and live.seq == 4
    assert live.agentStreams == {"c1": [["agent:thinking", {"thinking": "sub "}]]}
    await store.write(
        write(
            m,
            7,
            batch.CompleteToolCall(5, "c1", '"y"', {"steps": 2}),
            batch.InsertBlock(6, 2, 2, BlockMode.RESPONDING, utcnow(), "Done ✓ — ünïcode"),
            batch.EndTurn(7, TurnStatus.ERROR, "boom"),
        ),
        NODE,
    )
    turn = await store.turn_out(m.turn_id)
    assert turn is not None
    assert (turn.chatSession, turn.prompt, turn.status, turn.errorMessage, turn.seq) == (
        m.chat_id,
        "  fix   the\nbug  ",
        TurnStatus.ERROR,
        "boom",
        7,
    )
    expected_call = {
        "callId": "c1",
        "name": "task",
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
    assert turn.agentStreams is None  # the subagent's events went into its tool call
    assert turn.blocks[0].createdAt == t0 and turn.blocks[0].createdAt.tzinfo is not None
    assert turn.createdAt.utcoffset() == UTC.utcoffset(None)
    # The chat session took its title from the first prompt, whitespace collapsed.
    chat = await store.get_chat_session(m.chat_id)
    assert chat is not None and chat.title == "fix the bug"
    assert [t.id for t in await store.session_turns(m.chat_id)] == [m.turn_id]


async def test_a_block_index_is_unique_within_a_turn(store: Store) -> None:
    m = await new_turn(store)
    await store.write(
        write(m, 1, batch.InsertBlock(1, 0, 1, BlockMode.THINKING, utcnow(), "a")), NODE
    )
    with pytest.raises(IntegrityError):
        await store.write(
            write(m, 2, batch.InsertBlock(2, 0, 1, BlockMode.THINKING, utcnow(), "b")), NODE
        )


async def test_large_text_appends_keep_every_character(store: Store) -> None:
    m = await new_turn(store)
    piece = "0123456789abcdef" * 1024  # 16 KiB, the recorder's flush size
    await store.write(
        write(m, 1, batch.InsertBlock(1, 0, 1, BlockMode.RESPONDING, utcnow(), piece)), NODE
    )
    for seq in range(2, 65):
        await store.write(write(m, seq, batch.AppendBlock(seq, 0, piece)), NODE)
    turn = await store.turn_out(m.turn_id)
    assert turn is not None
    assert turn.blocks[0].content == piece * 64


async def test_ownership_reads_return_other_users_rows_only_by_id(store: Store) -> None:
    a_made, b_made = await new_turn(store), await new_turn(store)
    a = await store.get_chat_session(a_made.chat_id)
    b = await store.get_chat_session(b_made.chat_id)
    assert a is not None and b is not None and a.user_id != b.user_id
    assert [c.id for c in await store.list_chat_sessions(a.user_id, None)] == [a.id]
    assert [p.id for p in await store.list_projects(a.user_id)] == [a.project_id]
    assert [d.id for d in await store.list_drones(b.user_id)] == [b.drone_id]
    assert await store.list_chat_sessions(a.user_id, b.project_id) == []
