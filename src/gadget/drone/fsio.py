"""Durable file writes and the drone's private `.gadget/` folder in a workspace."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

__all__ = ["GADGET_DIR", "fsync_dir", "gadget_dir", "write_atomic"]

#: The workspace folder the drone keeps its state in; hidden from the agent's file tools.
GADGET_DIR = ".gadget"
#: Written into `.gadget/` so the person's own git never lists the drone's state.
IGNORE_ALL = "# the Gadget drone's state (history, checkpoints); never committed\n*\n"


def gadget_dir(workspace: Path) -> Path:
    """The `.gadget/` folder of `workspace`: created on first use, private (0700), git-ignored."""
    path = workspace / GADGET_DIR
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(0o700)  # made by an older drone with the umask's mode
    ignore = path / ".gitignore"
    if not ignore.exists():
        write_atomic(ignore, IGNORE_ALL.encode())
    return path


def fsync_dir(path: Path) -> None:
    """Flush a directory entry so a rename or unlink in it survives a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` all at once: temp file in the same folder, fsync, rename.

    An existing file keeps its permission bits (an edited 0755 script stays
    executable); a new file gets the process umask's, as with a plain `open`.
    """
    try:
        mode: int | None = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = None
    tmp = path.with_name(f".{path.name[:200]}.{secrets.token_hex(6)}.tmp")
    # 0o666 before the umask, as open() does; mkstemp would force 0600.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            if mode is not None:
                os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
