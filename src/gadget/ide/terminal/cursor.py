"""Where the screen is in each turn's stream: the seq cursor of issue 7.

The hub numbers every stream event of a turn (`{"turnId", "seq"}`, 1, 2, 3…)
and says in a snapshot or a stored turn which seq it includes. A `Cursor` is
the last seq applied to the screen: the next one is applied (and every held one
that follows it), one at or below it is a resend and is ignored, one beyond it
is held until the missing ones or a snapshot arrive. A snapshot ahead of the
cursor moves it; one at or behind it changes nothing on screen (a terminal
cannot take back what it printed, and the events it lacks come again).
Ordering and deduplication therefore never depend on when events arrive.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
P = TypeVar("P")

#: Events held beyond a gap, per turn; past it the oldest wait for the snapshot instead.
MAX_HELD = 10_000
#: Turns whose cursor is kept (a late resend of an older turn is still recognised).
MAX_TURNS = 16


@dataclass
class Cursor(Generic[T]):
    """One turn's last applied seq (`None` until a turnStarted or snapshot says where it is)."""

    seq: int | None = None
    held: dict[int, T] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        """Whether the turn's place is known (its start or a snapshot was seen)."""
        return self.seq is not None

    def offer(self, seq: int, item: T) -> list[T]:
        """An event numbered `seq`: the events to apply now, in order (none, or it and more)."""
        if self.seq is not None and seq <= self.seq:
            return []  # a resend of what is shown
        if self.seq is None or seq != self.seq + 1:
            if seq not in self.held and len(self.held) < MAX_HELD:
                self.held[seq] = item
            return []
        self.seq = seq
        return [item, *self._drain()]

    def reset(self, seq: int) -> tuple[bool, list[T]]:
        """A snapshot including events up to `seq`.

        Returns whether it is ahead of the cursor (then the cursor moves to it),
        and the held events that now follow on, in order.
        """
        ahead = self.seq is None or seq > self.seq
        if ahead:
            self.seq = seq
        return ahead, self._drain()

    def _drain(self) -> list[T]:
        """Forget held events the cursor has passed; take those that now follow on."""
        if self.seq is None:
            return []
        for stale in [s for s in self.held if s <= self.seq]:
            del self.held[stale]
        out = []
        while self.seq + 1 in self.held:
            self.seq += 1
            out.append(self.held.pop(self.seq))
        return out


@dataclass
class TurnStream(Generic[T, P]):
    """A turn's cursor and what the screen shows of it (`P`, e.g. a `TurnProgress`)."""

    turn_id: str
    cursor: Cursor[T]
    shown: P


class TurnStreams(Generic[T, P]):
    """The cursors of the session's recent turns, by turn id (the oldest are forgotten)."""

    def __init__(self, shown: Callable[[str], P], keep: int = MAX_TURNS) -> None:
        self._new_shown = shown
        self._keep = keep
        self._streams: OrderedDict[str, TurnStream[T, P]] = OrderedDict()

    def get(self, turn_id: str) -> TurnStream[T, P]:
        """The turn's stream, created (at an unknown place) when it is new."""
        stream = self._streams.get(turn_id)
        if stream is None:
            stream = TurnStream(turn_id, Cursor(), self._new_shown(turn_id))
            self._streams[turn_id] = stream
            while len(self._streams) > self._keep:
                self._streams.popitem(last=False)
        else:
            self._streams.move_to_end(turn_id)
        return stream

    def find(self, turn_id: str) -> TurnStream[T, P] | None:
        """The turn's stream when one is kept."""
        return self._streams.get(turn_id)

    def forget(self, turn_id: str) -> None:
        """Forget one turn (its events belong to a session no longer shown)."""
        self._streams.pop(turn_id, None)

    def gapped(self) -> list[str]:
        """Turns with events held beyond a gap (waiting for the missing ones or a snapshot)."""
        return [t for t, s in self._streams.items() if s.cursor.held]

    def clear(self) -> None:
        """Forget every turn (another session is shown)."""
        self._streams.clear()
