"""Presence in Redis, shared by every hub node (the backend of presence.py for many nodes).

Keys, all under the deployment's namespace (`GADGET_REDIS_NAMESPACE`):

- `<ns>:presence:drone:<id>`: a drone's record as JSON (its node and socket, its mode);
- `<ns>:presence:session:<id>:ides`: a set of `node|sid` of the IDE sockets showing a session;
- `<ns>:node:<node>`: a node's heartbeat, a key that Redis expires after NODE_TTL_S;
- `<ns>:nodes`: the set of node ids ever seen beating (expired ones are pruned on reading).

A node is alive while its heartbeat key exists, so liveness is Redis's clock, not the
nodes'. A record changed under a condition (its socket is still the current one) is
changed in a WATCH/MULTI transaction, so two nodes never overwrite each other's record.
"""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from .presence import NODE_TTL_S, Presence


class RedisPresence(Presence):
    """Presence of every node of a deployment, in one Redis server."""

    dead_after_s = NODE_TTL_S

    def __init__(self, node: str, client: aioredis.Redis, namespace: str) -> None:
        super().__init__(node)
        self._redis = client
        self._ns = namespace

    def _key(self, key: str) -> str:
        return f"{self._ns}:presence:{key}"

    def _node_key(self, node: str) -> str:
        return f"{self._ns}:node:{node}"

    async def _get_many(self, keys: list[str]) -> list[dict[str, Any] | None]:
        if not keys:
            return []
        raws = await self._redis.mget([self._key(k) for k in keys])
        return [orjson.loads(raw) if raw is not None else None for raw in raws]

    async def _put(self, key: str, record: dict[str, Any]) -> None:
        await self._redis.set(self._key(key), orjson.dumps(record))

    async def _merge(
        self,
        key: str,
        changes: dict[str, Any],
        *,
        when: tuple[str, Any] | None = None,
        default: dict[str, Any] | None = None,
    ) -> bool:
        name = self._key(key)
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(name)
                    raw = await pipe.get(name)
                    record = orjson.loads(raw) if raw is not None else default
                    if record is None or (when is not None and record.get(when[0]) != when[1]):
                        await pipe.unwatch()  # type: ignore[no-untyped-call]
                        return False
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(name, orjson.dumps({**record, **changes}))
                    await pipe.execute()
                    return True
                except WatchError:
                    continue  # another node changed it between our read and write: again

    async def _add(self, key: str, member: str) -> None:
        await self._redis.sadd(self._key(key), member)

    async def _remove(self, key: str, member: str) -> None:
        await self._redis.srem(self._key(key), member)

    async def _members(self, key: str) -> set[str]:
        return await self._members_raw(self._key(key))

    async def _beat(self, node: str, ttl: float) -> bool:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._node_key(node), b"1", px=int(ttl * 1000), get=True)
            pipe.sadd(f"{self._ns}:nodes", node)
            previous, _ = await pipe.execute()
        return previous is not None

    async def _nodes(self) -> list[str]:
        known = sorted(await self._members_raw(f"{self._ns}:nodes"))
        if not known:
            return []
        beats = await self._redis.mget([self._node_key(n) for n in known])
        dead = [n for n, beat in zip(known, beats, strict=True) if beat is None]
        if dead:
            await self._redis.srem(f"{self._ns}:nodes", *dead)
        return [n for n, beat in zip(known, beats, strict=True) if beat is not None]

    async def _members_raw(self, name: str) -> set[str]:
        members = await self._redis.smembers(name)
        return {m.decode() if isinstance(m, bytes) else str(m) for m in members}

    async def close(self) -> None:
        """This node stops beating (the others see it gone at once) and lets go of Redis."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._node_key(self.node))
                pipe.srem(f"{self._ns}:nodes", self.node)
                await pipe.execute()
        finally:
            await self._redis.aclose()


__all__ = ["RedisPresence"]
