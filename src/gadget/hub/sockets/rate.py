"""Per-socket event rates: a token bucket for each connected socket.

A socket may send `rate` events a second on average and `burst` at once. An event
over the limit is refused with an `error` reply (a drone keeps an unacknowledged
stream event and sends it again later, so nothing is lost); a socket that goes on
sending while over its limit — `strikes` refusals in a row — is disconnected. The
defaults are far above what a legitimate client sends (bench/relay's unpaced drone
stays below the drone limit), so they only stop a runaway or hostile client before
it stalls the hub for everyone else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum

from gadget.config import Settings


class Verdict(Enum):
    """What becomes of one event."""

    PASS = "pass"
    REFUSE = "refuse"
    DISCONNECT = "disconnect"


class Bucket:
    """`rate` events a second, up to `burst` at once; `strikes` refusals in a row disconnect."""

    __slots__ = ("_max_strikes", "burst", "rate", "stamp", "strikes", "tokens")

    def __init__(self, rate: float, burst: float, max_strikes: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()
        self.strikes = 0
        self._max_strikes = max_strikes

    def take(self, now: float | None = None) -> Verdict:
        """Spend one event's token, or say what to do with an event over the limit."""
        now = time.monotonic() if now is None else now
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            self.strikes = 0
            return Verdict.PASS
        self.tokens = tokens
        self.strikes += 1
        return Verdict.DISCONNECT if self.strikes > self._max_strikes else Verdict.REFUSE


@dataclass(frozen=True)
class Rates:
    """The limits of each kind of socket, from the settings."""

    drone_rate: float
    drone_burst: float
    ide_rate: float
    ide_burst: float
    strikes: int

    @classmethod
    def of(cls, settings: Settings) -> Rates:
        """The limits the settings configure."""
        return cls(
            float(settings.drone_events_per_s),
            float(settings.drone_events_burst),
            float(settings.ide_events_per_s),
            float(settings.ide_events_burst),
            settings.flood_strikes,
        )

    def drone(self) -> Bucket:
        """A new drone socket's bucket."""
        return Bucket(self.drone_rate, self.drone_burst, self.strikes)

    def ide(self) -> Bucket:
        """A new IDE socket's bucket."""
        return Bucket(self.ide_rate, self.ide_burst, self.strikes)
