"""An orjson-backed `json` module for python-socketio (its packets call dumps/loads)."""

from __future__ import annotations

from typing import Any

import orjson


def dumps(obj: Any, **_: Any) -> str:
    """Serialize like json.dumps (compact); keyword options of the stdlib are ignored."""
    return orjson.dumps(obj).decode()


def loads(s: str | bytes, **_: Any) -> Any:
    """Parse like json.loads."""
    return orjson.loads(s)
