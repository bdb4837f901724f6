"""hub/transport/queue.py: the lean queue keeps asyncio.Queue's promises that engine.io and uvicorn use."""

from __future__ import annotations

import asyncio

import pytest

from gadget.hub.transport import LeanQueue


async def test_items_come_out_in_order_and_get_waits_for_one() -> None:
    q = LeanQueue()
    for i in range(3):
        q.put_nowait(i)
    assert [await q.get() for _ in range(3)] == [0, 1, 2]
    assert q.empty() and q.qsize() == 0
    waiting = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    await q.put("late")
    assert await waiting == "late"


async def test_get_nowait_on_empty_raises_queue_empty() -> None:
    with pytest.raises(asyncio.QueueEmpty):
        LeanQueue().get_nowait()


async def test_a_cancelled_getter_never_loses_an_item() -> None:
    q = LeanQueue()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(q.get(), 0.01)  # how engine.io polls
    first = asyncio.create_task(q.get())
    second = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.put_nowait("a")  # wakes the first getter...
    first.cancel()  # ...which is cancelled before it runs: "a" goes to the second
    await asyncio.sleep(0)
    assert await second == "a"
    assert first.cancelled()
    assert q.empty()


async def test_join_waits_for_every_task_done() -> None:
    q = LeanQueue()
    await q.join()  # nothing unfinished
    q.put_nowait(1)
    q.put_nowait(2)
    joined = asyncio.create_task(q.join())
    q.get_nowait()
    q.task_done()
    await asyncio.sleep(0)
    assert not joined.done()
    q.get_nowait()
    q.task_done()
    await asyncio.wait_for(joined, 1)
    with pytest.raises(ValueError):
        q.task_done()
