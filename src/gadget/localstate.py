"""`$GADGET_HOME/local.json`: what `gadget up` remembers (mode 0600).

    {"user": {"username": "local", "password": "…"},
     "drones": {"/home/me/my-project": {"id": "…", "key": "gdk_…"}}}

The password is the one generated at the first run (dropped by `gadget user passwd`);
each workspace folder, by its absolute path, has the drone registered for it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gadget.exceptions import CommandError

STATE_FILE = "local.json"


def load_state(home: Path) -> dict[str, Any]:
    """`$GADGET_HOME/local.json`: the local user and each workspace's drone."""
    path = home / STATE_FILE
    if not path.exists():
        return {"drones": {}}
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CommandError(
            f"cannot read {path}: {exc}; fix it or move it away (a new drone is registered then)"
        ) from None
    if not isinstance(state, dict) or not isinstance(state.setdefault("drones", {}), dict):
        raise CommandError(f"{path}: expected a JSON object with a 'drones' object")
    return state


def save_state(home: Path, state: dict[str, Any]) -> None:
    """Write the state atomically, readable by this user only (it holds keys and a password)."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / STATE_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(state, fh, indent=2)
    os.replace(tmp, path)


def forget_password(home: Path, username: str) -> bool:
    """Drop the saved password of `gadget up`'s user `username` (it was changed); whether it was."""
    try:
        state = load_state(home)
    except CommandError:
        return False
    saved = state.get("user")
    if not isinstance(saved, dict) or saved.get("username") != username or "password" not in saved:
        return False
    del saved["password"]
    save_state(home, state)
    return True


def workspace_drone(home: Path, workspace: Path) -> tuple[str, str]:
    """(id, key) of the drone `gadget up` registered for `workspace`.

    Raises:
        CommandError: none is registered for it yet.
    """
    saved = load_state(home)["drones"].get(str(workspace))
    if not isinstance(saved, dict) or not {"id", "key"} <= set(saved):
        raise CommandError(f"no drone is registered for {workspace} yet: run `gadget up` there")
    return str(saved["id"]), str(saved["key"])


def forget_drone(home: Path, workspace: Path) -> str | None:
    """Drop `workspace`'s drone from the state; its id, or None when there was none."""
    state = load_state(home)
    saved = state["drones"].pop(str(workspace), None)
    if saved is None:
        return None
    save_state(home, state)
    return str(saved.get("id")) if isinstance(saved, dict) else None
