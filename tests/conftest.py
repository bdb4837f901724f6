"""Fixtures shared by every test: a real hub on a loopback port."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from gadget.store.repository import Store, open_store
from tests.harness import HubHarness, hub_settings, running_hub
from tests.postgres import fresh_database

# Property tests: the default "ci" profile is derandomized (the same examples on every run,
# so CI cannot fail on an unlucky seed) with a per-example deadline; `HYPOTHESIS_PROFILE=long`
# explores with random seeds and many more examples (run it before changing the dispatcher or
# the protocol: see docs/testing.md).
_SLOW_FIXTURES = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=50,
    deadline=10_000,
    suppress_health_check=_SLOW_FIXTURES,
)
settings.register_profile(
    "long",
    derandomize=False,
    max_examples=2_000,
    deadline=10_000,
    suppress_health_check=_SLOW_FIXTURES,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[HubHarness]:
    """A hub with its own SQLite file in tmp_path, signup open, short timers."""
    async with running_hub(hub_settings(tmp_path / "home")) as h:
        yield h


@pytest.fixture
def hub_factory(tmp_path: Path) -> Callable[..., AbstractAsyncContextManager[HubHarness]]:
    """Start hubs with custom settings (same home each time: a restart keeps the database).

    `port` reuses a stopped hub's port, so its clients can reconnect to the new one.
    """

    def factory(port: int = 0, **overrides: Any) -> AbstractAsyncContextManager[HubHarness]:
        return running_hub(hub_settings(tmp_path / "home", **overrides), port=port)

    return factory


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """A drone workspace holding one small bug: calc.py's add subtracts."""
    root = tmp_path / "ws"
    root.mkdir()
    (root / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    return root


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A Store on an empty, migrated database (a database of its own per test on PostgreSQL)."""
    async with AsyncExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'gadget.db'}"
        else:
            url = await stack.enter_async_context(fresh_database())
        yield await stack.enter_async_context(open_store(url))
