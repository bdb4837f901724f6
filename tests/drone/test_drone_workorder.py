"""The work-order cache: atomic, readable back, and never fatal when damaged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gadget.drone.workorder import WorkOrder, WorkOrderCache

pytestmark = pytest.mark.timeout(10)


def test_save_load_clear(tmp_path: Path) -> None:
    cache = WorkOrderCache(tmp_path)
    order = WorkOrder("proj", "turn-1", "chat-1", {"_id": "turn-1", "prompt": "hi"})
    assert cache.load() is None
    cache.save(order)
    assert json.loads(cache.path.read_text()) == {
        "workspaceId": "proj",
        "turnId": "turn-1",
        "chatSessionId": "chat-1",
        "turn": {"_id": "turn-1", "prompt": "hi"},
    }
    assert cache.load() == order and order.prompt == "hi"
    # no temp file left; the folder ignores itself for the person's git
    assert sorted(p.name for p in cache.path.parent.iterdir()) == [".gitignore", "work-order.json"]
    cache.clear()
    cache.clear()
    assert cache.load() is None


def test_a_damaged_cache_is_set_aside(tmp_path: Path) -> None:
    cache = WorkOrderCache(tmp_path)
    cache.path.parent.mkdir()
    cache.path.write_text('{"turnId": ')
    assert cache.load() is None
    assert (cache.path.parent / "work-order.corrupt.json").exists() and not cache.path.exists()
