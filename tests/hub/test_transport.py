"""hub/transport.py: the lean queue keeps asyncio.Queue's promises that engine.io and uvicorn use."""

from __future__ import annotations

import asyncio

import pytest

from gadget.hub.transport import EngineServer, LeanQueue, WebSocketProtocol
from tests.harness import HubHarness


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


async def test_an_open_socket_keeps_no_handshake_and_lean_queues(hub: HubHarness) -> None:
    token = await hub.signup("ada")
    ide = await hub.ide(token)
    try:
        protocols = [
            c for c in hub.server.server_state.connections if isinstance(c, WebSocketProtocol)
        ]
        assert len(protocols) == 1
        (proto,) = protocols
        assert not hasattr(proto, "request") and not hasattr(proto, "response")
        assert isinstance(proto.queue, LeanQueue)
        eio = hub.hub.sio.eio
        assert isinstance(eio, EngineServer)
        (sock,) = eio.sockets.values()
        assert isinstance(sock.queue, LeanQueue)
        assert hub.hub.sio.environ[sock.sid]["wsgi.input"] is None
        assert await hub.create_project(token)  # REST on the same server still answers
        assert await ide.call("noSuchEvent") is not None  # the socket carries events both ways
    finally:
        await ide.close()
