"""A migrated Store on a fresh SQLite file, and on a fresh PostgreSQL database when reachable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gadget.store.database import make_engine, migrate
from gadget.store.repository import Store
from tests.postgres import fresh_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A Store on an empty, migrated database (a database of its own per test on PostgreSQL)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'gadget.db'}"
        await migrate(url)
        store = Store(make_engine(url))
        yield store
        await store.close()
        return
    async with fresh_database() as url:
        await migrate(url)
        store = Store(make_engine(url))
        try:
            yield store
        finally:
            await store.close()
