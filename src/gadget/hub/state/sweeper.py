"""Deadlines as data: the sweep that any live node runs, so no deadline dies with a process.

Every `sweep_interval_s` a node beats its heartbeat, gives up the leases of nodes
whose heartbeat expired (their busy drones get the grace period to come back; with
several nodes, only once this node has seen them silent for the presence's
`dead_after_s`, so a Redis that restarted empty fails nobody's turns),
and claims the deadlines that have passed (store/leases.py `claim_due`) to act on
them: a drone that stayed away, a lock whose IDEs stayed away, a retry that is due.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from gadget.hub.stream.writer import Writer
from gadget.logs import log_context
from gadget.store import leases
from gadget.store.leases import Lease
from gadget.store.repository import Store
from gadget.store.tables import utcnow

from .presence import Presence

logger = logging.getLogger(__name__)

#: How long a claimed deadline is held by the node handling it before another may.
HOLD = timedelta(seconds=30)


class Deadlines(Protocol):
    """What happens when a deadline passes (hub/recovery.py)."""

    async def drone_stayed_away(self, lease: Lease) -> None:
        """The drone of a current turn did not come back (or never claimed it)."""

    async def ides_stayed_away(self, lease: Lease) -> None:
        """Every IDE of a lock stayed away for the grace period."""

    async def retry_due(self, lease: Lease) -> None:
        """A crashed drone's turn is to be sent again."""


class Sweeper:
    """The periodic sweep of one node."""

    def __init__(
        self,
        store: Store,
        writer: Writer,
        presence: Presence,
        grace_s: float,
        interval_s: float,
        db_timeout_s: float,
    ) -> None:
        self._store = store
        self._writer = writer
        self._presence = presence
        self._grace = timedelta(seconds=grace_s)
        self._interval = interval_s
        self._timeout = db_timeout_s
        self._task: asyncio.Task[None] | None = None
        #: Nodes owning leases seen without a heartbeat, and since when (monotonic s).
        self._missing: dict[str, float] = {}

    def start(self, handler: Deadlines) -> None:
        """Sweep in the background until :meth:`close`."""
        self._task = asyncio.create_task(self._loop(handler), name="sweeper")

    async def close(self) -> None:
        """Stop sweeping."""
        if self._task is not None:
            # Python 3.11's wait_for can swallow a cancel that arrives as the transaction it
            # waits for completes (the sweep then goes on to sleep): cancel until it ends.
            while not self._task.done():
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=1.0)
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self, handler: Deadlines) -> None:
        while True:
            try:
                await self.sweep(handler)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("sweep failed; next in %.1fs", self._interval, exc_info=True)
            await asyncio.sleep(self._interval)

    async def sweep(self, handler: Deadlines) -> None:
        """One sweep: heartbeat, dead nodes' leases, passed deadlines."""
        await self._presence.heartbeat()
        live = await self._presence.live_nodes()
        lock_rows = self._store.lock_rows
        now_s = time.monotonic()

        async def orphans(s: AsyncSession) -> int:
            others = await leases.owned_by_others(s, live, lock_rows=lock_rows)
            owners = {lease.owner_node or "" for lease in others}
            self._missing = {n: t for n, t in self._missing.items() if n in owners}
            found = [lease for lease in others if self._dead(lease.owner_node or "", now_s)]
            for lease in found:
                logger.info(
                    "node %s is gone: drone %s waits for its drone%s",
                    lease.owner_node,
                    lease.drone_id,
                    f" (turn {lease.current_turn_id})" if lease.current_turn_id else "",
                )
                await leases.orphan(s, lease, utcnow() + self._grace)
            return len(found)

        await self._writer.transact(orphans, timeout=self._timeout, after_stream=False)
        node = self._presence.node

        async def claim(s: AsyncSession) -> list[Lease]:
            return await leases.claim_due(s, utcnow(), node, HOLD, lock_rows=lock_rows)

        now = utcnow()
        due = await self._writer.transact(claim, timeout=self._timeout, after_stream=False)
        for lease in due:
            with log_context(drone=lease.drone_id, turn=lease.current_turn_id):
                try:
                    await self._act(handler, lease, now)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("handling a deadline of drone %s failed", lease.drone_id)

    def _dead(self, node: str, now_s: float) -> bool:
        """Whether `node`, without a heartbeat now, has been so for `dead_after_s`."""
        since = self._missing.setdefault(node, now_s)
        return now_s - since >= self._presence.dead_after_s

    @staticmethod
    async def _act(handler: Deadlines, lease: Lease, now: object) -> None:
        assert isinstance(now, type(utcnow()))
        if lease.retry_at is not None and lease.retry_at <= now:
            await handler.retry_due(lease)
        if lease.drone_deadline is not None and lease.drone_deadline <= now:
            await handler.drone_stayed_away(lease)
        if lease.ide_deadline is not None and lease.ide_deadline <= now:
            await handler.ides_stayed_away(lease)
