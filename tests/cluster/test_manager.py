"""The Redis manager's own additions, on the local Redis (a channel of the test's own).

Node-addressed messages reach only their node, in the order sent, mixed with emits; a
node does not hear its own emits back; what is queued is published in batches, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from gadget.hub.cluster import NodeRedisManager, RedisCluster
from tests.cluster.nodes import REDIS_URL, redis_namespace


@contextlib.asynccontextmanager
async def listening(manager: NodeRedisManager) -> AsyncIterator[list[Any]]:
    """What `manager`'s listener yields to python-socketio (node messages are taken out)."""
    heard: list[Any] = []

    async def listen() -> None:
        async for message in manager._listen():
            heard.append(message)

    task = asyncio.create_task(listen())
    try:
        await until(lambda: manager.pubsub is not None and manager.pubsub.subscribed)
        yield heard
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await manager.drain(timeout=2)
        await manager.pubsub.aclose()
        await manager.redis.aclose()


async def until(done: Callable[[], bool], timeout: float = 10) -> None:
    """Until `done()` (polled: redis-py has no event for a subscription, nor the listener
    for what it delivered)."""
    async with asyncio.timeout(timeout):
        while True:
            if done():
                return
            await asyncio.sleep(0.01)


async def test_node_messages_reach_their_node_only_in_order_among_the_emits() -> None:
    async with redis_namespace() as namespace:
        channel = f"{namespace}:socketio"
        a, b = NodeRedisManager(REDIS_URL, channel), NodeRedisManager(REDIS_URL, channel)
        on_a, on_b = RedisCluster("node-a", a), RedisCluster("node-b", b)
        got: list[int] = []

        async def note(payload: dict[str, Any]) -> None:
            got.append(payload["n"])

        on_b.route({"note": note})
        on_a.route({"note": note})  # a message for node-a must not be handled by b
        async with listening(a) as heard_a, listening(b) as heard_b:
            for n in range(300):
                await on_a.send("node-b" if n % 3 else "node-c", "note", {"n": n})
                if n % 50 == 0:
                    await a.publish_emit("response", (f"tok{n}", {"seq": n}), "session:x")
            await until(lambda: len(got) >= 200 and len(heard_b) >= 6)
        assert got == [n for n in range(300) if n % 3]  # node-b's only, in order
        assert heard_a == []  # node-a never hears its own emits back
        emits = [a.json.loads(m) for m in heard_b]
        assert [(e["method"], e["room"], e["data"][0]) for e in emits] == [
            ("emit", "session:x", f"tok{n}") for n in range(0, 300, 50)
        ]
        await on_a.close()
        await on_b.close()
