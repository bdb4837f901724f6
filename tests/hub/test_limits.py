"""The failed-login throttle, on both backends: memory (one node) and Redis (shared)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gadget.config import Settings
from gadget.hub import limits
from gadget.hub.exceptions import RateLimited
from gadget.hub.limits import LoginThrottle, MemoryThrottle, RedisThrottle, login_throttle
from tests.hub.helpers import eventually

REDIS_URL = "redis://127.0.0.1:6379/0"


async def _redis() -> aioredis.Redis:
    """A client of the local Redis server; skips the test when there is none."""
    client = aioredis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        pytest.skip(f"no Redis server at {REDIS_URL} ({exc}): the Redis backend is untested")
    return client


@contextlib.asynccontextmanager
async def redis_space() -> AsyncIterator[str]:
    """A key prefix of the test's own in the local Redis; its keys are deleted afterwards."""
    client = await _redis()
    prefix = f"gadget-test:{uuid.uuid4().hex}:"
    try:
        yield prefix
    finally:
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A Redis key prefix for this test (skipped without a Redis server)."""
    async with redis_space() as prefix:
        yield prefix


class Clock:
    """A clock the test moves by hand (memory windows without sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(
    backend: str, prefix: str, per_user: int, per_address: int, window_s: int
) -> LoginThrottle:
    """A throttle of `backend` with these limits."""
    if backend == "memory":
        return MemoryThrottle(per_user, per_address, window_s)
    client = aioredis.from_url(REDIS_URL)
    return RedisThrottle(client, per_user, per_address, window_s, prefix=prefix)


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, str]]:
    """(backend name, key prefix) for each backend."""
    if request.param == "memory":
        yield "memory", ""
        return
    async with redis_space() as prefix:
        yield "redis", prefix


async def refused(throttle: LoginThrottle, username: str, address: str | None) -> RateLimited:
    """The refusal of one more attempt (fails if the attempt is let through)."""
    with pytest.raises(RateLimited) as info:
        await throttle.attempt(username, address)
    return info.value


async def test_failures_beyond_the_limit_are_refused_until_the_window_ends(
    backend: tuple[str, str],
) -> None:
    throttle = make(*backend, per_user=3, per_address=100, window_s=60)
    try:
        for _ in range(3):
            await throttle.attempt("ann", "10.0.0.1")
        exc = await refused(throttle, "ann", "10.0.0.1")
        assert 1 <= exc.retry_after_s <= 60
        assert "too many failed logins for 'ann'" in str(exc) and "try again in" in str(exc)
        # Refused attempts keep being refused (and do not extend the window).
        again = await refused(throttle, "ann", "10.0.0.2")
        assert again.retry_after_s <= exc.retry_after_s
        await throttle.attempt("bob", "10.0.0.1")  # another username is not affected
    finally:
        await throttle.close()


async def test_a_success_clears_the_usernames_failures(backend: tuple[str, str]) -> None:
    throttle = make(*backend, per_user=3, per_address=100, window_s=60)
    try:
        for _ in range(4):
            for _ in range(2):
                await throttle.attempt("ann", "10.0.0.1")  # two typos...
            await throttle.attempt("ann", "10.0.0.1")
            await throttle.succeeded("ann", "10.0.0.1")  # ...then the right password
    finally:
        await throttle.close()


async def test_the_address_limit_spans_usernames_and_successes_give_attempts_back(
    backend: tuple[str, str],
) -> None:
    throttle = make(*backend, per_user=100, per_address=3, window_s=60)
    try:
        for _ in range(10):  # logins that succeed never use up the address
            await throttle.attempt("ann", "10.0.0.1")
            await throttle.succeeded("ann", "10.0.0.1")
        for name in ("u1", "u2", "u3"):
            await throttle.attempt(name, "10.0.0.1")
        exc = await refused(throttle, "u4", "10.0.0.1")
        assert "from this address" in str(exc)
        await throttle.attempt("u4", "10.0.0.2")  # another address is not affected
        await throttle.attempt("u5", None)  # no known address: only the username counts
    finally:
        await throttle.close()


async def test_concurrent_attempts_get_no_more_than_the_limit(backend: tuple[str, str]) -> None:
    throttle = make(*backend, per_user=5, per_address=100, window_s=60)
    try:
        results = await asyncio.gather(
            *(throttle.attempt("ann", "10.0.0.1") for _ in range(20)), return_exceptions=True
        )
        assert sum(r is None for r in results) == 5
        assert all(isinstance(r, RateLimited) for r in results if r is not None)
    finally:
        await throttle.close()


async def test_memory_windows_end() -> None:
    clock = Clock()
    throttle = MemoryThrottle(2, 100, 30, clock=clock)
    for _ in range(2):
        await throttle.attempt("ann", "10.0.0.1")
    assert (await refused(throttle, "ann", "10.0.0.1")).retry_after_s == 30
    clock.now += 29.5
    assert (await refused(throttle, "ann", "10.0.0.1")).retry_after_s == 1
    clock.now += 0.5
    await throttle.attempt("ann", "10.0.0.1")  # a new window


async def test_memory_keeps_a_bounded_number_of_counters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_MEMORY_KEYS", 50)
    clock = Clock()
    throttle = MemoryThrottle(1, 1_000_000, 30, clock=clock)
    for i in range(500):  # a flood of usernames
        clock.now += 0.01
        await throttle.attempt(f"user{i}", None)
        assert len(throttle._counters) <= 50
    # The newest counters survive the eviction.
    await refused(throttle, "user499", None)


async def test_redis_windows_end(redis_prefix: str) -> None:
    throttle = make("redis", redis_prefix, per_user=1, per_address=100, window_s=1)
    try:
        await throttle.attempt("ann", "10.0.0.1")
        assert (await refused(throttle, "ann", "10.0.0.1")).retry_after_s == 1

        async def allowed() -> bool:
            try:
                await throttle.attempt("ann", "10.0.0.1")
            except RateLimited:
                return False
            return True

        await eventually(allowed, timeout=10)
    finally:
        await throttle.close()


async def test_hub_nodes_on_one_redis_share_the_counts(redis_prefix: str) -> None:
    one = make("redis", redis_prefix, per_user=2, per_address=100, window_s=60)
    two = make("redis", redis_prefix, per_user=2, per_address=100, window_s=60)
    try:
        await one.attempt("ann", "10.0.0.1")
        await two.attempt("ann", "10.0.0.2")
        await refused(one, "ann", "10.0.0.3")
        await refused(two, "ann", "10.0.0.3")
        await one.succeeded("ann", None)  # a success on one node clears it for all
        await two.attempt("ann", "10.0.0.3")
    finally:
        await one.close()
        await two.close()


async def test_the_settings_pick_the_backend(tmp_path: Path) -> None:
    memory = login_throttle(Settings(home=tmp_path, login_max_failures=7))
    assert isinstance(memory, MemoryThrottle) and memory.max_per_user == 7
    shared = login_throttle(Settings(home=tmp_path, redis_url=REDIS_URL, login_window_s=9))
    assert isinstance(shared, RedisThrottle) and shared.window_s == 9
    await memory.close()
    await shared.close()
