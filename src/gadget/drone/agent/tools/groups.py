"""Process groups of running commands, remembered in `.gadget/` so a restarted drone can end them.

A drone killed with SIGKILL cannot stop the commands it was running; their
groups would outlive it. Each command's group is recorded while it runs (with
its leader's start time, so a reused pid is never mistaken for it), and the
next drone in the same workspace kills what is left at start-up. A group whose
leader (the command's bash) already exited is left alone: without its leader
the group cannot be told apart from a newer one that reused the id.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from pathlib import Path

from gadget.drone.fsio import gadget_dir, write_atomic

logger = logging.getLogger(__name__)

FILE = "commands.json"


def _stat_field(pid: int, index: int) -> int | None:
    """Field `index` after the command name of /proc/<pid>/stat (Linux), or None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[index])


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None when it is gone."""
    return _stat_field(pid, 19)


def _members(pgid: int) -> list[int]:
    """The live (not zombie) processes of group `pgid`, from /proc."""
    with os.scandir("/proc") as entries:
        pids = [int(e.name) for e in entries if e.name.isdigit()]
    found = []
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(pid)
    return found


def live_members(pgid: int) -> int:
    """How many processes of group `pgid` still run (zombies waiting for a reaper do not)."""
    return len(_members(pgid))


def signal_members(pgid: int, sig: signal.Signals, spare: int) -> int:
    """Send `sig` to every live process of group `pgid` but `spare`; how many got it."""
    count = 0
    for pid in _members(pgid):
        if pid != spare:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
                count += 1
    return count


class CommandGroups:
    """The record of running command groups of one workspace."""

    def __init__(self, workspace: Path) -> None:
        self._path = workspace / ".gadget" / FILE

    def _load(self) -> dict[str, int | None]:
        try:
            data = json.loads(self._path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self, groups: dict[str, int | None]) -> None:
        gadget_dir(self._path.parent.parent)
        write_atomic(self._path, json.dumps(groups).encode())

    def add(self, pgid: int) -> None:
        """Remember a command group that just started."""
        groups = self._load()
        groups[str(pgid)] = _start_time(pgid)
        self._save(groups)

    def discard(self, pgid: int) -> None:
        """Forget a command group that ended."""
        groups = self._load()
        if groups.pop(str(pgid), None) is not None or groups:
            self._save(groups)
        else:
            self._path.unlink(missing_ok=True)

    def reap(self, grace: float = 1.0) -> int:
        """Kill the groups an earlier drone left running (SIGTERM, then SIGKILL); how many."""
        alive = [
            int(pgid)
            for pgid, started in self._load().items()
            if started is not None and _start_time(int(pgid)) == started
        ]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pgid in alive:
                _signal(pgid, sig)
            if sig is signal.SIGTERM and alive:
                time.sleep(grace)
        if alive:
            logger.warning("ended %d command group(s) left running by an earlier drone", len(alive))
        self._path.unlink(missing_ok=True)
        return len(alive)


def _signal(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
