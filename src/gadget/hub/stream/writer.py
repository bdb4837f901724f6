"""The hub's one writer: the stream's batches and every state change, in order, never dropped.

Everything this node writes goes through one queue, in the order it was decided:
the sealed writes of live turns (one batch per flush tick, every turn in one
transaction) and transitions of drone state (:meth:`Writer.transact`). Before a
transition is queued, every live turn is sealed, so a transition always lands
after the stream it follows (a turn's end after its last block). Consecutive
transitions share one transaction (up to `MAX_GROUP`), each still applied after
the ones before it, so a thousand drones leaving at once cost tens of commits.

A batch that fails is retried with backoff until it commits, absorbing the
batches sealed meanwhile into one transaction; the relay to IDEs goes on, and
nothing is acknowledged to a drone until it is committed. A transition that
cannot start within its timeout is abandoned and its caller told the database is
unavailable; one that started runs to its end. Memory held for uncommitted writes
is bounded: past `max_bytes` the hub refuses new stream events (the drone keeps
and resends them), it never grows without bound or drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from gadget.hub.exceptions import Unavailable
from gadget.hub.stream.recorder import Recorder
from gadget.store import batch
from gadget.store.repository import Store

logger = logging.getLogger(__name__)

T = TypeVar("T")
Committed = Callable[[Sequence[tuple[batch.TurnWrite, batch.Outcome]]], Awaitable[None]]

#: Longest wait between two attempts of a failing batch.
MAX_BACKOFF_S = 2.0
#: Most transitions committed in one transaction.
MAX_GROUP = 64
#: Turns sealed between two yields to the event loop at a flush tick.
SEAL_STEP = 100


@dataclass(eq=False)
class _Transition:
    fn: Callable[[AsyncSession], Awaitable[Any]] | None
    future: asyncio.Future[Any]
    on_commit: Callable[[Any], None] | None = None
    started: bool = False
    abandoned: bool = False
    #: Never abandoned: retried until it commits, whether or not its caller still waits.
    keep: bool = False


@dataclass
class Health:
    """What the writer knows about the database."""

    ok: bool = True
    reason: str | None = None
    since: float | None = None
    failures: int = 0
    uncommitted_bytes: int = 0
    queued: int = 0

    def json(self) -> dict[str, Any]:
        """For /healthz and metrics."""
        out: dict[str, Any] = {"ok": self.ok, "uncommittedBytes": self.uncommitted_bytes}
        if not self.ok:
            out.update(reason=self.reason, downForS=round(time.monotonic() - (self.since or 0), 1))
        return out


@dataclass(eq=False)
class _Batch:
    writes: list[batch.TurnWrite] = field(default_factory=list)


class Writer:
    """Applies sealed stream writes and transitions in order (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        node: str,
        recorder: Recorder,
        interval_s: float,
        max_bytes: int,
    ) -> None:
        self._store = store
        self._node = node
        self._recorder = recorder
        self._interval = interval_s
        self._max_bytes = max_bytes
        self._queue: deque[_Batch | _Transition] = deque()
        self._carry: list[batch.TurnWrite] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._committed: list[Committed] = []
        self._closing = False
        self._next_tick = 0.0
        self.health = Health()
        #: Called with (turns written, seconds) after each committed batch (/metrics).
        self.on_batch: Callable[[int, float], None] = lambda rows, seconds: None
        recorder.on_full = self._tick_now

    def on_commit(self, callback: Committed) -> None:
        """Call `callback` with every committed (or fenced) batch's writes and outcomes."""
        self._committed.append(callback)

    def _tick_now(self) -> None:
        """A turn owes `flush_bytes`: seal at the next chance instead of the next tick."""
        self._next_tick = 0.0
        self._wake.set()

    def start(self) -> None:
        """Start the writer task (in the running loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="writer")

    @property
    def full(self) -> bool:
        """Whether the memory held for uncommitted writes is past its bound."""
        held = self.health.uncommitted_bytes + self._recorder.unsealed_bytes
        return held > self._max_bytes

    # -- callers ---------------------------------------------------------------
    async def transact(
        self,
        fn: Callable[[AsyncSession], Awaitable[T]],
        *,
        timeout: float,
        on_commit: Callable[[T], None] | None = None,
        after_stream: bool = True,
        keep: bool = False,
    ) -> T:
        """Run `fn` in a transaction after everything applied so far; its result.

        `on_commit` runs as soon as the transaction commits, before the writer goes on:
        the in-memory side of a transition, which later writes must already see.
        `after_stream=False` is for reads and bookkeeping that no stream write depends on
        (the sweep): the live turns are not sealed for it. `keep=True` is for a transition
        that must land even when nobody waits for it any more (a drone leaving): like the
        stream's batches it is retried until it commits, and its caller is only told, after
        `timeout`, that the database is unavailable.

        Raises:
            Unavailable: the transaction could not start within `timeout` seconds
                (the database is down), or failed on the database's side.
        """
        if after_stream:
            self._seal()
        loop = asyncio.get_running_loop()
        item = _Transition(fn, loop.create_future(), on_commit, keep=keep)
        if keep:  # its outcome may come when nobody waits: never "never retrieved"
            item.future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._queue.append(item)
        self._wake.set()
        try:
            result: T = await asyncio.wait_for(asyncio.shield(item.future), timeout)
            return result
        except TimeoutError:
            if item.started and not keep:
                result = await item.future
                return result
            item.abandoned = not keep
            reason = self.health.reason or "the hub's writer is busy"
            raise Unavailable(f"the database is unavailable ({reason}); try again") from None

    def later(self, fn: Callable[[AsyncSession], Awaitable[Any]]) -> None:
        """Queue `fn` as a transition nobody waits for: best effort bookkeeping (when a drone
        was last seen), committed with the transitions around it; a failure is logged."""
        item = _Transition(fn, asyncio.get_running_loop().create_future())
        item.future.add_done_callback(_log_failure)
        self._queue.append(item)
        self._wake.set()

    async def flush(self) -> None:
        """Seal now and wait until everything applied so far is committed (tests, shutdown)."""
        self._seal()
        item = _Transition(None, asyncio.get_running_loop().create_future())
        self._queue.append(item)
        self._wake.set()
        await item.future

    async def close(self, grace_s: float) -> bool:
        """Write what is owed for up to `grace_s` seconds, then stop; whether all of it was."""
        done = True
        if self._task is not None:
            try:
                await asyncio.wait_for(self.flush(), grace_s)
            except TimeoutError:
                done = False
                logger.warning(
                    "stopping with %d bytes not written (the database is unavailable): "
                    "nothing of it was acknowledged, so the drones resend it",
                    self.health.uncommitted_bytes,
                )
            self._closing = True  # a cancel alone can be lost in Python 3.11's wait_for
            self._wake.set()
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for item in self._queue:
            if isinstance(item, _Transition) and not item.future.done():
                item.future.set_exception(Unavailable("the hub is stopping"))
        return done

    # -- the loop --------------------------------------------------------------
    async def _seal_in_steps(self) -> None:
        """A flush tick: seal every turn that owes writes, `SEAL_STEP` turns at a time with
        the loop let go in between (a thousand turns sealed at once held it for ~20 ms).

        Each step is queued as soon as it is sealed, so a transition queued between two
        steps still comes after every write sealed before it (it seals the rest itself).
        """
        self._next_tick = time.monotonic() + self._interval
        for _ in range(-(-self._recorder.owing // SEAL_STEP)):
            self._seal(SEAL_STEP)
            await asyncio.sleep(0)

    def _seal(self, limit: int | None = None) -> None:
        if limit is None:
            self._next_tick = time.monotonic() + self._interval
        writes = self._recorder.seal(limit)
        if not writes:
            return
        self.health.uncommitted_bytes += sum(w.size() for w in writes)
        tail = self._queue[-1] if self._queue else None
        if isinstance(tail, _Batch):
            tail.writes.extend(writes)
        else:
            self._queue.append(_Batch(writes))

    async def _run(self) -> None:
        while not self._closing:
            if not self._queue:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, self._next_tick - time.monotonic())):
                        await self._wake.wait()
                self._wake.clear()
            if time.monotonic() >= self._next_tick:  # a flush tick: seal every live turn
                await self._seal_in_steps()
            while self._queue:
                if isinstance(self._queue[0], _Batch):
                    await self._write_batches()
                else:
                    await self._transitions(self._take_transitions())
            self.health.queued = 0

    async def _write_batches(self) -> None:
        failures = 0
        while True:
            writes = _merged(self._carry, self._take_batches())
            self._carry = []
            for w in writes:
                w.epoch = self._recorder.epoch(w.drone_id)
            began = time.perf_counter()
            try:
                outcomes = await self._store.write(writes, self._node)
            except asyncio.CancelledError:
                self._carry = writes
                raise
            except Exception as exc:
                self._carry = writes
                failures += 1
                self._down(exc, len(writes))
                await self._pause(failures)
                continue
            self._up()
            self.on_batch(len(writes), time.perf_counter() - began)
            self.health.uncommitted_bytes = max(
                0, self.health.uncommitted_bytes - sum(w.size() for w in writes)
            )
            pairs = [(w, outcomes[w.turn_id]) for w in writes]
            for callback in self._committed:
                try:
                    await callback(pairs)
                except Exception:
                    logger.exception("a commit callback failed")
            return

    def _take_batches(self) -> list[batch.TurnWrite]:
        writes: list[batch.TurnWrite] = []
        while self._queue and isinstance(self._queue[0], _Batch):
            head = self._queue.popleft()
            assert isinstance(head, _Batch)
            writes.extend(head.writes)
        return writes

    async def _pause(self, failures: int) -> None:
        """Back off before the next attempt, sealing at each tick so it takes everything."""
        delay = min(MAX_BACKOFF_S, 0.05 * 2 ** min(failures, 8))
        end = time.monotonic() + delay
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, self._interval))
            self._seal()

    def _take_transitions(self) -> list[_Transition]:
        """The transitions at the head of the queue, up to `MAX_GROUP`, that still matter
        (a flush marker alone: it resolves once everything before it is committed)."""
        group: list[_Transition] = []
        while self._queue and len(group) < MAX_GROUP:
            head = self._queue[0]
            if not isinstance(head, _Transition) or (head.fn is None and group):
                break
            self._queue.popleft()
            if not (head.abandoned or head.future.done()):
                group.append(head)
            if head.fn is None:
                break
        return group

    async def _transitions(self, group: list[_Transition]) -> None:
        """Consecutive transitions in one transaction, each settled in order once it commits.

        Each one's function runs after the ones before it (it sees their rows), as when
        each had its own transaction; a hub that many drones leave or join at once (a
        restart, a network cut) commits once per group instead of once per drone. If one
        of them fails (a refusal, or the database), the group is rolled back and each
        runs on its own, so one's failure is never another's.
        """
        if len(group) < 2:  # a flush marker is always alone
            for item in group:
                await self._transition(item)
            return
        for item in group:
            item.started = True
        results = []
        try:
            async with self._store.transaction() as session:
                for item in group:
                    assert item.fn is not None
                    results.append(await item.fn(session))
        except asyncio.CancelledError:
            for item in group:
                item.future.cancel()
            raise
        except Exception:
            for item in group:
                await self._transition(item)
            return
        self._up()
        for item, result in zip(group, results, strict=True):
            self._settle(item, result)

    async def _transition(self, item: _Transition) -> None:
        if item.abandoned or item.future.done():
            return
        if item.fn is None:  # a flush marker: everything before it is committed
            item.future.set_result(None)
            return
        item.started = True
        failures = 0
        while True:
            try:
                async with self._store.transaction() as session:
                    result = await item.fn(session)
                break
            except asyncio.CancelledError:
                item.future.cancel()
                raise
            except Exception as exc:
                if item.keep and _unreachable(exc):
                    failures += 1
                    self._down(exc, 0)
                    await self._pause(failures)
                    continue
                self._fail(item, exc)
                return
        self._up()
        self._settle(item, result)

    def _settle(self, item: _Transition, result: Any) -> None:
        """A committed transition: its in-memory side, then its caller's answer."""
        if item.on_commit is not None:
            try:
                item.on_commit(result)
            except Exception:
                logger.exception("the in-memory side of a transition failed")
        if not item.future.done():
            item.future.set_result(result)

    def _fail(self, item: _Transition, exc: Exception) -> None:
        if _unreachable(exc):
            self._down(exc, 0)
            item.future.set_exception(
                Unavailable(f"the database is unavailable ({_reason(exc)}); try again")
            )
        else:
            item.future.set_exception(exc)

    def _down(self, exc: BaseException, turns: int) -> None:
        h = self.health
        if h.ok:
            h.ok, h.since = False, time.monotonic()
            logger.error(
                "cannot write to the database (%s): %d turns' writes held and retried; "
                "the stream goes on, nothing is acknowledged until it is stored",
                _reason(exc),
                turns,
            )
        h.reason = _reason(exc)
        h.failures += 1

    def _up(self) -> None:
        h = self.health
        if not h.ok:
            logger.warning(
                "the database is back after %.1fs; held writes stored",
                time.monotonic() - (h.since or 0),
            )
            h.ok, h.reason, h.since = True, None, None


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.info("a bookkeeping write was not stored: %s", future.exception())


def _merged(first: list[batch.TurnWrite], more: list[batch.TurnWrite]) -> list[batch.TurnWrite]:
    """One write per turn: the operations of later writes follow those of earlier ones."""
    by_turn: dict[str, batch.TurnWrite] = {}
    for w in [*first, *more]:
        seen = by_turn.get(w.turn_id)
        if seen is None:
            by_turn[w.turn_id] = batch.TurnWrite(
                w.turn_id, w.drone_id, w.epoch, w.to_seq, list(w.ops)
            )
        else:
            seen.ops.extend(w.ops)
            seen.to_seq = max(seen.to_seq, w.to_seq)
    return list(by_turn.values())


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached (rather than refusing a statement)."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(exc, OSError | TimeoutError | ConnectionError | InterfaceError):
        return True
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
