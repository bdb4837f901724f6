"""The stream's writes: O(1) appends, applied exactly once, fenced by the drone's lease."""

from __future__ import annotations

from gadget.protocol import BlockMode, ToolCallOut, TurnStatus
from gadget.store import batch, leases
from gadget.store.batch import Outcome, TurnWrite
from gadget.store.repository import Store
from gadget.store.tables import utcnow
from tests.store.helpers import NODE, add_filler_blocks, new_turn, statements


async def append_costs(store: Store, blocks: int) -> dict[str, list[str]]:
    """The statements of each write kind on a turn that already has `blocks` blocks."""
    m = await new_turn(store)
    await add_filler_blocks(store, m.turn_id, blocks)
    call = ToolCallOut(callId="c", name="task", parameters="{}", response='""')
    kinds: list[tuple[str, list[batch.TurnOp]]] = [
        ("InsertBlock", [batch.InsertBlock(1, blocks, 1, BlockMode.RESPONDING, utcnow(), "first")]),
        ("AppendBlock", [batch.AppendBlock(2, blocks, " and more")]),
        ("InsertToolCall", [batch.InsertToolCall(3, blocks + 1, 1, utcnow(), call)]),
        ("CompleteToolCall", [batch.CompleteToolCall(4, "c", "done", {"steps": 1})]),
        (
            "batch",  # the writer's path: several writes of a turn in one transaction
            [
                batch.InsertBlock(5, blocks + 2, 1, BlockMode.THINKING, utcnow(), "x"),
                batch.AppendBlock(6, blocks + 2, "y"),
                batch.AppendBlock(7, blocks + 2, "z"),
                batch.EndTurn(8, TurnStatus.FINISHED, None),
            ],
        ),
    ]
    costs: dict[str, list[str]] = {}
    for name, ops in kinds:
        with statements(store) as seen:
            out = await store.write(
                [TurnWrite(m.turn_id, m.drone_id, m.epoch, ops[-1].seq, ops)], NODE
            )
        assert out == {m.turn_id: Outcome.APPLIED}
        costs[name] = list(seen)
    turn = await store.turn_out(m.turn_id)
    assert turn is not None and len(turn.blocks) == blocks + 3
    assert turn.blocks[blocks].content == "first and more"
    assert turn.blocks[blocks + 1].content["response"] == "done"  # type: ignore[index]
    assert (turn.blocks[blocks + 2].content, turn.status) == ("xyz", TurnStatus.FINISHED)
    return costs


async def test_writing_costs_the_same_statements_at_10_and_1000_blocks(store: Store) -> None:
    small = await append_costs(store, 10)
    large = await append_costs(store, 1000)
    assert small == large
    for kind, stmts in large.items():
        assert 1 <= len(stmts) <= 10, (kind, stmts)
        # Only the fence and applied seq are read: never the turn's blocks.
        reads = [s for s in stmts if s.lstrip().upper().startswith("SELECT")]
        assert all("turn_blocks" not in s for s in reads), (kind, reads)


async def test_a_write_applied_twice_is_stored_once(store: Store) -> None:
    m = await new_turn(store)
    ops: list[batch.TurnOp] = [
        batch.InsertBlock(1, 0, 1, BlockMode.RESPONDING, utcnow(), "Hel"),
        batch.AppendBlock(2, 0, "lo"),
    ]
    first = TurnWrite(m.turn_id, m.drone_id, m.epoch, 2, ops)
    assert await store.write([first], NODE) == {m.turn_id: Outcome.APPLIED}
    # The commit's answer was lost: the writer retries the same batch, merged with the next.
    again = TurnWrite(m.turn_id, m.drone_id, m.epoch, 3, [*ops, batch.AppendBlock(3, 0, "!")])
    assert await store.write([again], NODE) == {m.turn_id: Outcome.APPLIED}
    assert await store.write([again], NODE) == {m.turn_id: Outcome.ALREADY}
    turn = await store.turn_out(m.turn_id)
    assert turn is not None and (turn.blocks[0].content, turn.seq) == ("Hello!", 3)


async def test_a_node_that_lost_the_lease_writes_nothing(store: Store) -> None:
    m = await new_turn(store)
    async with store.transaction() as s:  # another node takes the drone
        await leases.take(s, m.drone_id, "node-b", store.lock_rows)
    op = batch.InsertBlock(1, 0, 1, BlockMode.RESPONDING, utcnow(), "stale")
    stale = TurnWrite(m.turn_id, m.drone_id, m.epoch, 1, [op])
    assert await store.write([stale], NODE) == {m.turn_id: Outcome.FENCED}
    assert await store.write([stale], "node-b") == {m.turn_id: Outcome.FENCED}  # old epoch
    fresh = TurnWrite(m.turn_id, m.drone_id, m.epoch + 1, 1, [op])
    assert await store.write([fresh], "node-b") == {m.turn_id: Outcome.APPLIED}
    turn = await store.turn_out(m.turn_id)
    assert turn is not None and [b.content for b in turn.blocks] == ["stale"]


async def test_many_turns_in_one_batch_are_judged_one_by_one(store: Store) -> None:
    a, b = await new_turn(store), await new_turn(store)
    async with store.transaction() as s:
        await leases.take(s, b.drone_id, "node-b", store.lock_rows)
    writes = [
        TurnWrite(
            t.turn_id,
            t.drone_id,
            t.epoch,
            1,
            [batch.InsertBlock(1, 0, 1, BlockMode.RESPONDING, utcnow(), t.turn_id)],
        )
        for t in (a, b)
    ]
    assert await store.write(writes, NODE) == {
        a.turn_id: Outcome.APPLIED,
        b.turn_id: Outcome.FENCED,
    }


async def test_the_end_of_a_turn_frees_its_drone(store: Store) -> None:
    m = await new_turn(store)
    end = TurnWrite(
        m.turn_id, m.drone_id, m.epoch, 1, [batch.EndTurn(1, TurnStatus.ERROR, "x", True)]
    )
    assert await store.write([end], NODE) == {m.turn_id: Outcome.APPLIED}
    async with store.session() as s:
        lease = await leases.read(s, m.drone_id)
    assert lease is not None and lease.current_turn_id is None
    turn = await store.turn_out(m.turn_id)
    assert turn is not None and (turn.status, turn.cancelled) == (TurnStatus.ERROR, True)
