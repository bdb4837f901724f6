"""A fresh PostgreSQL database per test on the local server, or a clear skip without one."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432"


async def _admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(f"{PG_SERVER}/test", timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG_SERVER}/test: {exc}")


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """The SQLAlchemy URL of a new, empty database, dropped afterwards."""
    admin = await _admin()
    name = f"gadget_test_{secrets.token_hex(6)}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_URL}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
