"""Failed-login throttling per username and per client address, for one or several hub nodes.

:class:`LoginThrottle` holds the logic once; a backend supplies two primitives over
counters that live for a fixed window from their first count (`_add`, `_forget`):
:class:`MemoryThrottle` for one hub process, :class:`RedisThrottle` (INCRBY +
EXPIRE NX in one transaction) so every node behind a load balancer shares the counts.

An attempt is counted *before* its password is checked and taken back when it
succeeds, so a burst of concurrent guesses cannot all slip in before the first
failure is counted: at most the limit's worth of passwords is checked per window.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from gadget.config import Settings
from gadget.hub.exceptions import RateLimited

#: Most counters the memory backend keeps (one per username or address seen failing lately).
MAX_MEMORY_KEYS = 100_000


@dataclass(frozen=True)
class Count:
    """A counter's value and the whole seconds left in its window."""

    value: int
    retry_after_s: int


class LoginThrottle(ABC):
    """Counts login attempts per username and per client address in a fixed window."""

    def __init__(self, max_per_user: int, max_per_address: int, window_s: int) -> None:
        self.max_per_user = max_per_user
        self.max_per_address = max_per_address
        self.window_s = window_s

    async def attempt(self, username: str, address: str | None) -> None:
        """Count a login attempt; raise while the username or the address is over its limit.

        Raises:
            RateLimited: more than the allowed failures in the current window.
        """
        user = await self._add(_user_key(username), 1)
        where = await self._add(_address_key(address), 1) if address else None
        if user.value > self.max_per_user:
            raise RateLimited(
                f"too many failed logins for {username!r}: try again in {user.retry_after_s} s",
                user.retry_after_s,
            )
        if where is not None and where.value > self.max_per_address:
            raise RateLimited(
                f"too many failed logins from this address: try again in {where.retry_after_s} s",
                where.retry_after_s,
            )

    async def succeeded(self, username: str, address: str | None) -> None:
        """The attempt was right: clear the username's failures, take the address's count back."""
        await self._forget(_user_key(username))
        if address:
            await self._add(_address_key(address), -1)

    @abstractmethod
    async def close(self) -> None:
        """Release the backend's resources."""

    @abstractmethod
    async def _add(self, key: str, amount: int) -> Count:
        """Add `amount` to `key` (a new counter starts its window now); its new count."""

    @abstractmethod
    async def _forget(self, key: str) -> None:
        """Delete `key`'s counter."""


def _user_key(username: str) -> str:
    return f"user:{username}"


def _address_key(address: str) -> str:
    return f"address:{address}"


class MemoryThrottle(LoginThrottle):
    """Counters in this process's memory (one hub node)."""

    def __init__(
        self,
        max_per_user: int,
        max_per_address: int,
        window_s: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(max_per_user, max_per_address, window_s)
        self._clock = clock
        #: key → [count, end of its window]; insertion order is window order.
        self._counters: dict[str, list[float]] = {}

    async def _add(self, key: str, amount: int) -> Count:
        now = self._clock()
        counter = self._counters.get(key)
        if counter is None or counter[1] <= now:
            self._counters.pop(key, None)
            if len(self._counters) >= MAX_MEMORY_KEYS:
                self._evict(now)
            counter = self._counters[key] = [0, now + self.window_s]
        counter[0] += amount
        return Count(int(counter[0]), max(1, math.ceil(counter[1] - now)))

    async def _forget(self, key: str) -> None:
        self._counters.pop(key, None)

    async def close(self) -> None:
        """Nothing to release."""

    def _evict(self, now: float) -> None:
        """Drop ended windows; if the map is still full, the oldest windows (a flood of keys)."""
        for key in [k for k, (_, end) in self._counters.items() if end <= now]:
            del self._counters[key]
        excess = len(self._counters) - MAX_MEMORY_KEYS // 2
        for key in list(self._counters)[: max(0, excess)]:
            del self._counters[key]


class RedisThrottle(LoginThrottle):
    """Counters in Redis, shared by every hub node using the same server."""

    def __init__(
        self,
        client: aioredis.Redis,
        max_per_user: int,
        max_per_address: int,
        window_s: int,
        prefix: str = "gadget:login:",
    ) -> None:
        super().__init__(max_per_user, max_per_address, window_s)
        self._redis = client
        self._prefix = prefix

    async def _add(self, key: str, amount: int) -> Count:
        name = self._prefix + key
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incrby(name, amount)
            pipe.expire(name, self.window_s, nx=True)  # the window starts at the first count
            pipe.ttl(name)
            value, _, ttl = await pipe.execute()
        return Count(int(value), max(1, int(ttl)))

    async def _forget(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)

    async def close(self) -> None:
        """Close the Redis connections."""
        await self._redis.aclose()


def login_throttle(settings: Settings) -> LoginThrottle:
    """The throttle `settings` ask for: Redis when `redis_url` is set, else memory."""
    limits = (
        settings.login_max_failures,
        settings.login_max_failures_per_address,
        settings.login_window_s,
    )
    if settings.redis_url:
        prefix = f"{settings.redis_namespace}:login:"
        return RedisThrottle(aioredis.from_url(settings.redis_url), *limits, prefix=prefix)
    return MemoryThrottle(*limits)
