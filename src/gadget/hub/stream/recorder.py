"""The live turns recorded on this node, and the sealing of what they owe the database.

Handlers apply stream events to a :class:`~gadget.hub.stream.live.LiveTurn` and
tell the recorder (:meth:`Recorder.applied`); the writer seals every turn that
changed at each flush tick (:meth:`Recorder.seal`) into one batch. A turn that has
ended stays readable here until its end is stored, so REST and snapshots never
read a half-written turn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from itertools import islice

from gadget.hub.stream.live import LiveTurn
from gadget.protocol import TurnOut
from gadget.store import batch

logger = logging.getLogger(__name__)

#: The lease epoch this node holds for a drone, or None when it holds none.
EpochOf = Callable[[str], int | None]


class Recorder:
    """Every live turn of this node, by id, and which of them owe writes."""

    def __init__(self, flush_bytes: int) -> None:
        self.flush_bytes = flush_bytes
        self._turns: dict[str, LiveTurn] = {}
        #: The ids of the live turns of each chat session (REST lists a session's turns).
        self._of_session: dict[str, set[str]] = {}
        self._dirty: dict[str, LiveTurn] = {}
        self._epoch_of: EpochOf = lambda _drone: None
        #: Bytes applied since the last seal (text and operations not yet handed to the writer).
        self.unsealed_bytes = 0
        #: Called when a turn owes `flush_bytes` or more: the writer seals early.
        self.on_full: Callable[[], None] = lambda: None

    def bind(self, epoch_of: EpochOf) -> None:
        """Where the recorder learns the epoch each drone is held at (the drones' owner)."""
        self._epoch_of = epoch_of

    def __len__(self) -> int:
        """How many turns are live here."""
        return len(self._turns)

    # -- live turns ------------------------------------------------------------
    def add(self, live: LiveTurn) -> LiveTurn:
        """Record `live` from now on (replacing an older mirror of the same turn)."""
        self._turns[live.id] = live
        self._of_session.setdefault(live.chat_session_id, set()).add(live.id)
        return live

    def get(self, turn_id: str) -> LiveTurn | None:
        """The live turn `turn_id`, if it is recorded here."""
        return self._turns.get(turn_id)

    def snapshot(self, turn_id: str) -> TurnOut | None:
        """The live turn as JSON-ready model, or None if it is not recorded here."""
        live = self._turns.get(turn_id)
        return live.snapshot() if live is not None else None

    def snapshots_of(self, chat_session_id: str) -> dict[str, TurnOut]:
        """The live turns of one chat session, as JSON-ready models, by id."""
        ids = self._of_session.get(chat_session_id, ())
        return {turn_id: self._turns[turn_id].snapshot() for turn_id in ids}

    def drop(self, turn_id: str, why: str) -> None:
        """Stop recording a turn: what it still owes is discarded (another node owns it)."""
        live = self._turns.pop(turn_id, None)
        if live is not None:
            self._unindex(live)
            owing = self._dirty.pop(turn_id, None)
            if owing is not None:
                self._forget_unsealed(owing)
            logger.info("stopped recording turn %s here: %s", turn_id, why)

    # -- writes ----------------------------------------------------------------
    def applied(self, live: LiveTurn, size: int) -> None:
        """An event was applied to `live`: it owes writes."""
        self._dirty[live.id] = live
        live.unsealed_bytes += size
        self.unsealed_bytes += size
        if live.pending_bytes >= self.flush_bytes:
            self.on_full()

    @property
    def owing(self) -> int:
        """How many turns owe writes."""
        return len(self._dirty)

    def seal(self, limit: int | None = None) -> list[batch.TurnWrite]:
        """The writes owed so far, one per turn, each up to its turn's seq: every turn's,
        or the first `limit` turns' (oldest first)."""
        if limit is None or limit >= len(self._dirty):
            dirty, self._dirty = list(self._dirty.values()), {}
            self.unsealed_bytes = 0
            for live in dirty:
                live.unsealed_bytes = 0
        else:
            dirty = [self._dirty.pop(turn_id) for turn_id in list(islice(self._dirty, limit))]
            for live in dirty:
                self._forget_unsealed(live)
        writes = []
        for live in dirty:
            write = live.seal(self._epoch_of(live.drone_id) or -1)
            if write is not None:
                writes.append(write)
        return writes

    def seal_one(self, live: LiveTurn) -> batch.TurnWrite | None:
        """What `live` owes now (before a transition that must come after it)."""
        self._dirty.pop(live.id, None)
        self._forget_unsealed(live)
        return live.seal(self._epoch_of(live.drone_id) or -1)

    def epoch(self, drone_id: str | None) -> int:
        """The epoch to fence a write for `drone_id` with, now (-1: none is held)."""
        if drone_id is None:
            return -1
        return self._epoch_of(drone_id) or -1

    def stored(self, write: batch.TurnWrite, outcome: batch.Outcome) -> None:
        """A sealed write was committed (or fenced): forget ended or lost turns."""
        live = self._turns.get(write.turn_id)
        if live is None:
            return
        if outcome is batch.Outcome.FENCED:
            self.drop(write.turn_id, "its drone's lease moved to another node")
        elif live.ended and not live.ops and write.to_seq >= live.seq:
            del self._turns[write.turn_id]
            self._unindex(live)

    def _unindex(self, live: LiveTurn) -> None:
        ids = self._of_session.get(live.chat_session_id)
        if ids is not None:
            ids.discard(live.id)
            if not ids:
                del self._of_session[live.chat_session_id]

    def _forget_unsealed(self, live: LiveTurn) -> None:
        self.unsealed_bytes -= live.unsealed_bytes
        live.unsealed_bytes = 0
