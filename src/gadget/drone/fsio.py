"""Durable file writes and the drone's private `.gadget/` folder in a workspace."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["GADGET_DIR", "fsync_dir", "gadget_dir", "write_atomic"]

#: The workspace folder the drone keeps its state in; hidden from the agent's file tools.
GADGET_DIR = ".gadget"


def gadget_dir(workspace: Path) -> Path:
    """The `.gadget/` folder of `workspace` (created on first use)."""
    path = workspace / GADGET_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def fsync_dir(path: Path) -> None:
    """Flush a directory entry so a rename or unlink in it survives a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` all at once: temp file in the same folder, fsync, rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
