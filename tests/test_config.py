"""GADGET_HOME: everything the hub keeps there is private to its user (0700 / 0600)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import hub_settings, running_hub


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, which alone would leave new files 0644 and folders 0755."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_everything_under_gadget_home_is_created_private(
    tmp_path: Path, umask_022: None
) -> None:
    home = tmp_path / "fresh" / "home"  # neither exists yet
    async with running_hub(hub_settings(home, secret_key=None)) as hub:
        await hub.signup("ann")  # a write: the WAL and shared-memory files exist now
        files = {p.name: mode(p) for p in home.iterdir()}
    assert mode(home) == 0o700
    assert files == {
        "gadget.db": 0o600,
        "gadget.db-wal": 0o600,
        "gadget.db-shm": 0o600,
        "secret_key": 0o600,
    }


def test_an_existing_database_keeps_its_mode(tmp_path: Path, umask_022: None) -> None:
    from gadget.store.database import make_engine

    db = tmp_path / "shared.db"
    db.write_bytes(b"")
    db.chmod(0o640)  # chosen by its owner: left alone
    make_engine(f"sqlite+aiosqlite:///{db}")
    assert mode(db) == 0o640
