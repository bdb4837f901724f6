"""What an agent has seen of each file in its turn, so it never overwrites changes it has not seen.

The rule (what `write_file` and `edit_file` enforce):

- a file the agent read (any part, with `read_file`) or wrote itself in this turn may be
  changed only while its content is still what the agent last saw;
- an existing file the agent has not read in this turn may not be changed at all: its
  picture of it (from an earlier turn, or a guess) may be stale, because the person can
  edit files between turns;
- a file that does not exist may be created (`write_file`).

Either refusal is a tool error that tells the model to read the file again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from gadget.drone.exceptions import ToolError

__all__ = ["FileReads"]


def _digest(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


class FileReads:
    """The content (as a digest, or "absent") each file had when the agent last saw it."""

    def __init__(self) -> None:
        """An empty record: nothing read yet."""
        self._seen: dict[Path, str | None] = {}

    def saw(self, path: Path, data: bytes | None) -> None:
        """The agent read or wrote `path`, whose content is now `data` (None: it does not exist)."""
        self._seen[path] = _digest(data)

    def check(self, path: Path, shown: str, current: bytes | None) -> None:
        """Refuse a change to `path` (content `current` now) the agent's view does not cover.

        Raises:
            ToolError: the file exists but was not read in this turn, or it changed
                (or was deleted) since the agent last saw it.
        """
        if path not in self._seen:
            if current is None:
                return
            raise ToolError(
                f"{shown} exists and you have not read it in this turn; read_file it first, "
                "then make your change to its current content"
            )
        if self._seen[path] == _digest(current):
            return
        what = "was deleted" if current is None else "changed on disk"
        raise ToolError(
            f"{shown} {what} since you last read it (the person or a command changed it); "
            "read_file it again and redo your change on what is there now"
        )
