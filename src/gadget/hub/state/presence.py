"""Who is connected where: drone sockets, the IDE sockets of each chat session, live nodes.

Backends by template method: :class:`Presence` holds the logic once, and a backend
supplies a few primitives over JSON records, sets and node heartbeats. The memory
backend serves one hub node; the Redis backend (presence_redis.py) serves many.
"""

from __future__ import annotations

import logging
import time
from typing import Any

logger = logging.getLogger(__name__)

#: Seconds a node's heartbeat lives; a node silent for longer is dead.
NODE_TTL_S = 10.0


class Presence:
    """The logic of presence; backends implement the `_`-prefixed primitives."""

    #: How long a node must be seen without a heartbeat before it is taken for dead (a
    #: shared backend that restarted empty shows every node gone until they beat again).
    dead_after_s = 0.0

    def __init__(self, node: str) -> None:
        self.node = node
        self._beat_error: str | None = None
        self._beat_at: float | None = None
        #: What this node wrote of its own sockets, written again if the backend lost it.
        self._mine: dict[str, dict[str, Any]] = {}
        self._showing: set[tuple[str, str]] = set()

    # -- drones ----------------------------------------------------------------
    async def drone_connected(self, drone_id: str, sid: str, record: dict[str, Any]) -> None:
        """The drone's socket `sid` is on this node now (`record`: what it reported)."""
        record = {**record, "online": True, "node": self.node, "sid": sid, "at": time.time()}
        self._mine[drone_id] = dict(record)
        await self._put(_drone_key(drone_id), record)

    async def drone_changed(self, drone_id: str, sid: str, **fields: Any) -> None:
        """Fields of a connected drone changed (its mode); ignored if `sid` is not current."""
        if await self._merge(_drone_key(drone_id), fields, when=("sid", sid)):
            mine = self._mine.get(drone_id)
            if mine is not None and mine.get("sid") == sid:
                mine.update(fields)

    async def drone_gone(self, drone_id: str, sid: str, **fields: Any) -> bool:
        """The socket `sid` closed; whether it was the drone's current one (kept offline)."""
        if self._mine.get(drone_id, {}).get("sid") == sid:
            del self._mine[drone_id]
        changes = {**fields, "online": False, "sid": None}
        return await self._merge(_drone_key(drone_id), changes, when=("sid", sid))

    async def drone_note(self, drone_id: str, **fields: Any) -> None:
        """Keep facts about a drone whatever its state (a conflict between two processes)."""
        await self._merge(_drone_key(drone_id), fields, default={"online": False})

    async def drone(self, drone_id: str) -> dict[str, Any] | None:
        """The drone's record; `online` only while its node is alive."""
        return (await self.drones([drone_id])).get(drone_id)

    async def drones(self, drone_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Records of these drones (absent when never seen)."""
        records = await self._get_many([_drone_key(d) for d in drone_ids])
        live = set(await self.live_nodes()) if any(r for r in records) else set()
        out = {}
        for drone_id, record in zip(drone_ids, records, strict=True):
            if record is None:
                continue
            if record.get("online") and record.get("node") not in live:
                record = {**record, "online": False, "sid": None}
            out[drone_id] = record
        return out

    # -- IDE sockets of a chat session ----------------------------------------
    async def ide_joined(self, chat_session_id: str, sid: str) -> None:
        """An IDE socket of this node shows `chat_session_id`."""
        self._showing.add((chat_session_id, sid))
        await self._add(_session_key(chat_session_id), f"{self.node}|{sid}")

    async def ide_left(self, chat_session_id: str, sid: str) -> None:
        """That IDE socket no longer shows it (released, moved, or disconnected)."""
        self._showing.discard((chat_session_id, sid))
        await self._remove(_session_key(chat_session_id), f"{self.node}|{sid}")

    async def ides(self, chat_session_id: str) -> int:
        """How many IDE sockets on live nodes show `chat_session_id`."""
        members = await self._members(_session_key(chat_session_id))
        if not members:
            return 0
        live = set(await self.live_nodes())
        return sum(1 for m in members if m.split("|", 1)[0] in live)

    # -- nodes -----------------------------------------------------------------
    async def heartbeat(self) -> None:
        """This node is alive (call more often than NODE_TTL_S); its outcome is :meth:`health`."""
        try:
            kept = await self._beat(self.node, NODE_TTL_S)
            if not kept and self._beat_at is not None:
                await self._announce()
        except Exception as exc:
            self._beat_error = f"{type(exc).__name__}: {exc}"[:300]
            raise
        self._beat_error, self._beat_at = None, time.time()

    async def _announce(self) -> None:
        """The backend lost this node's heartbeat (restarted empty, or unreachable past
        its TTL): write again what this node's sockets are."""
        logger.warning(
            "presence lost this node's records: writing again %d drones, %d IDE sockets",
            len(self._mine),
            len(self._showing),
        )
        for drone_id, record in list(self._mine.items()):
            await self._put(_drone_key(drone_id), record)
        for chat_session_id, sid in list(self._showing):
            await self._add(_session_key(chat_session_id), f"{self.node}|{sid}")

    def health(self) -> dict[str, Any]:
        """Whether the last heartbeat reached the backend, and when one last did."""
        return {
            "ok": self._beat_error is None,
            "error": self._beat_error,
            "lastBeat": self._beat_at,
        }

    async def live_nodes(self) -> list[str]:
        """Every node whose heartbeat has not expired (this one included)."""
        return await self._nodes()

    async def close(self) -> None:
        """Release the backend's connections; this node is no longer alive."""

    # -- primitives ------------------------------------------------------------
    async def _get_many(self, keys: list[str]) -> list[dict[str, Any] | None]:
        raise NotImplementedError

    async def _put(self, key: str, record: dict[str, Any]) -> None:
        raise NotImplementedError

    async def _merge(
        self,
        key: str,
        changes: dict[str, Any],
        *,
        when: tuple[str, Any] | None = None,
        default: dict[str, Any] | None = None,
    ) -> bool:
        """Atomically add `changes` to the record at `key`; whether it was changed.

        With `when` (field, value) only a record whose field has that value changes
        (another node may have replaced it meanwhile); without a record, `default`
        (if given) is the record `changes` go into.
        """
        raise NotImplementedError

    async def _add(self, key: str, member: str) -> None:
        raise NotImplementedError

    async def _remove(self, key: str, member: str) -> None:
        raise NotImplementedError

    async def _members(self, key: str) -> set[str]:
        raise NotImplementedError

    async def _beat(self, node: str, ttl: float) -> bool:
        """Beat for `ttl` s; whether the node's previous beat was still there."""
        raise NotImplementedError

    async def _nodes(self) -> list[str]:
        raise NotImplementedError


def _drone_key(drone_id: str) -> str:
    return f"drone:{drone_id}"


def _session_key(chat_session_id: str) -> str:
    return f"session:{chat_session_id}:ides"


class MemoryPresence(Presence):
    """One hub node: presence is this process's memory, and this node is the only one."""

    def __init__(self, node: str) -> None:
        super().__init__(node)
        self._records: dict[str, dict[str, Any]] = {}
        self._sets: dict[str, set[str]] = {}

    async def _get_many(self, keys: list[str]) -> list[dict[str, Any] | None]:
        return [self._records.get(k) for k in keys]

    async def _put(self, key: str, record: dict[str, Any]) -> None:
        self._records[key] = record

    async def _merge(
        self,
        key: str,
        changes: dict[str, Any],
        *,
        when: tuple[str, Any] | None = None,
        default: dict[str, Any] | None = None,
    ) -> bool:
        record = self._records.get(key, default)
        if record is None or (when is not None and record.get(when[0]) != when[1]):
            return False
        self._records[key] = {**record, **changes}
        return True

    async def _add(self, key: str, member: str) -> None:
        self._sets.setdefault(key, set()).add(member)

    async def _remove(self, key: str, member: str) -> None:
        members = self._sets.get(key)
        if members is not None:
            members.discard(member)
            if not members:
                del self._sets[key]

    async def _members(self, key: str) -> set[str]:
        return set(self._sets.get(key, ()))

    async def _beat(self, node: str, ttl: float) -> bool:
        return True

    async def _nodes(self) -> list[str]:
        return [self.node]
