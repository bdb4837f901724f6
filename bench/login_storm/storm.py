"""The login storm: N users logging in over REST, each with one login in flight at a time.

Every login is a correct one (the expensive case: the hub checks the argon2 hash, then
signs a token), so the failed-login throttle never answers in its place. The users
are registered once, before any measurement.
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass, field
from time import perf_counter

import httpx

PASSWORD = "storm-password"
#: Registrations at once (each is an argon2 hash on the hub).
CONCURRENT_SIGNUPS = 10


@dataclass
class StormResult:
    """Logins answered during the storm, their latency, and any that were not 200."""

    logins: int
    per_s: float
    p50_ms: float
    p99_ms: float
    failed: int


@dataclass
class Storm:
    """`users` logging in back to back until stopped."""

    url: str
    users: list[str]
    latencies: list[float] = field(default_factory=list)
    failed: int = 0

    @classmethod
    async def register(cls, url: str, size: int) -> Storm:
        """Sign up `size` storm users (signup is open on the bench hub)."""
        names = [f"storm{i}" for i in range(size)]
        sem = asyncio.Semaphore(CONCURRENT_SIGNUPS)
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:

            async def signup(name: str) -> None:
                async with sem:
                    body = {"username": name, "password": PASSWORD}
                    r = await http.post("/api/auth/register", json=body)
                    r.raise_for_status()

            await asyncio.gather(*(signup(n) for n in names))
        return cls(url, names)

    async def run(self, seconds: float) -> StormResult:
        """Every user logs in again as soon as its last login is answered, for `seconds`."""
        self.latencies, self.failed = [], 0
        limits = httpx.Limits(max_connections=len(self.users) + 10)
        async with httpx.AsyncClient(base_url=self.url, timeout=120, limits=limits) as http:
            begin = perf_counter()
            stop_at = begin + seconds
            await asyncio.gather(*(self._user(http, name, stop_at) for name in self.users))
            wall = perf_counter() - begin
        if len(self.latencies) < 2:
            raise RuntimeError(f"only {len(self.latencies)} logins answered 200 in the storm")
        q = statistics.quantiles(self.latencies, n=100, method="inclusive")
        return StormResult(
            len(self.latencies), len(self.latencies) / wall, q[49] * 1e3, q[98] * 1e3, self.failed
        )

    async def _user(self, http: httpx.AsyncClient, name: str, stop_at: float) -> None:
        body = {"username": name, "password": PASSWORD}
        while perf_counter() < stop_at:
            t0 = perf_counter()
            r = await http.post("/api/auth/login", json=body)
            if r.status_code == 200:
                self.latencies.append(perf_counter() - t0)
            else:
                self.failed += 1
