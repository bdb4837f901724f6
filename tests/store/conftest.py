"""A migrated Store on a fresh SQLite file, and on a fresh PostgreSQL database when reachable."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from gadget.store.database import make_engine, migrate
from gadget.store.repository import Store

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432"


async def _pg_admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(f"{PG_SERVER}/test", timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG_SERVER}/test: {exc}")


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
    admin = await _pg_admin()
    name = f"gadget_test_{secrets.token_hex(6)}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"{PG_URL}/{name}"
        await migrate(url)
        store = Store(make_engine(url))
        try:
            yield store
        finally:
            await store.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
