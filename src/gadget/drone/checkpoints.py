"""Checkpoints around each turn: what it changed, the diff of a file, and undoing it.

:meth:`Checkpoints.begin` snapshots the workspace before a turn changes anything and
:meth:`Checkpoints.finish` after it; the difference is the turn's changes, whoever made
them (the file tools or `run_command`). Snapshots live in a shadow git repository
(:mod:`gadget.drone.shadowgit`, `.gadget/checkpoints/git`); what the workspace's
`.gitignore` files ignore is not snapshotted, so it is neither reported nor restored.

:meth:`Checkpoints.revert` puts back every file the turn changed, except those changed
since (by the person or a later turn): they are conflicts, listed and left alone.
Reverting a reverted turn re-applies it, all or nothing. Each turn's state (its two
snapshots, whether it is reverted) is a JSON file in `.gadget/checkpoints/turns/`, so
it survives drone restarts. Keep one instance per workspace: it serializes its work.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from gadget.drone.exceptions import CheckpointError
from gadget.drone.fsio import GADGET_DIR, gadget_dir, write_atomic
from gadget.drone.history import session_file_name
from gadget.drone.shadowgit import SYMLINK, Entry, ShadowRepo, working_entry

__all__ = ["Change", "Checkpoints", "Conflict", "RevertResult"]


@dataclass(frozen=True)
class Change:
    """One file a turn changed, with its line counts (0, 0 for binary files)."""

    path: str
    status: Literal["added", "modified", "deleted"]
    additions: int
    deletions: int

    def to_json(self) -> dict[str, Any]:
        """Wire form: `{"path", "status", "additions", "deletions"}`."""
        return asdict(self)


@dataclass(frozen=True)
class Conflict:
    """A file :meth:`Checkpoints.revert` left alone, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class RevertResult:
    """What a revert (or re-apply) did; `reverted` is the turn's state afterwards."""

    turn_id: str
    reverted: bool
    restored: list[str]
    conflicts: list[Conflict]

    @property
    def ok(self) -> bool:
        """Whether every file could be put back."""
        return not self.conflicts

    def to_json(self) -> dict[str, Any]:
        """Wire form: `{"turnId", "reverted", "restored", "conflicts": [{"path", "reason"}]}`."""
        return {
            "turnId": self.turn_id,
            "reverted": self.reverted,
            "restored": self.restored,
            "conflicts": [asdict(c) for c in self.conflicts],
        }


@dataclass
class _TurnState:
    turnId: str
    before: str
    after: str | None = None
    reverted: bool = False
    #: The files the last revert restored (what a re-apply puts forward again).
    revertedPaths: list[str] = field(default_factory=list)


class Checkpoints:
    """The checkpoints of one workspace."""

    def __init__(self, workspace: Path, git: str = "git") -> None:
        """Keep them under `workspace/.gadget/checkpoints/` (created on first use)."""
        self.root = workspace.resolve()
        self.folder = self.root / GADGET_DIR / "checkpoints"
        self.repo = ShadowRepo(self.root, self.folder / "git", git)
        self._lock = asyncio.Lock()

    async def begin(self, turn_id: str) -> None:
        """Snapshot the workspace before turn `turn_id` changes anything.

        A retried turn keeps the snapshot from before its first attempt.
        """
        async with self._lock:
            await asyncio.to_thread(gadget_dir, self.root)
            await self.repo.ensure()
            state = await self._load(turn_id)
            if state is None:
                commit = await self.repo.snapshot(f"before turn {turn_id}")
                await self.repo.set_ref(self._ref(turn_id, "before"), commit)
                state = _TurnState(turn_id, commit)
            else:
                state.after, state.reverted, state.revertedPaths = None, False, []
            await self._save(state)

    async def finish(self, turn_id: str) -> list[Change]:
        """Snapshot the workspace after the turn; the files it changed."""
        async with self._lock:
            state = await self._require(turn_id, finished=False)
            await self.repo.ensure()
            state.after = await self.repo.snapshot(f"after turn {turn_id}", parent=state.before)
            await self.repo.set_ref(self._ref(turn_id, "after"), state.after)
            await self._save(state)
            return await self._changes(state)

    async def changes(self, turn_id: str) -> list[Change]:
        """The files a finished turn changed."""
        async with self._lock:
            return await self._changes(await self._require(turn_id))

    async def reverted(self, turn_id: str) -> bool:
        """Whether the turn is currently reverted."""
        async with self._lock:
            return (await self._require(turn_id, finished=False)).reverted

    async def diff(self, turn_id: str, path: str) -> str:
        """The unified diff of `path`'s change in the turn.

        Raises:
            CheckpointError: unknown or unfinished turn, or the turn did not change `path`.
        """
        async with self._lock:
            state = await self._require(turn_id)
            assert state.after is not None
            changed = await self.repo.changed(state.before, state.after)
            if _clean(path) not in changed:
                raise CheckpointError(
                    f"turn {turn_id} did not change {path!r}; it changed "
                    f"{', '.join(sorted(changed)[:20]) or 'no files'}"
                )
            return await self.repo.diff(state.before, state.after, _clean(path))

    async def revert(self, turn_id: str) -> RevertResult:
        """Undo the turn's changes (or re-apply them if it is reverted); see the module doc."""
        async with self._lock:
            state = await self._require(turn_id)
            assert state.after is not None
            changed = await self.repo.changed(state.before, state.after)
            if state.reverted:  # re-apply: from "before" back to "after", all or nothing
                plan = {p: changed[p] for p in state.revertedPaths if p in changed}
            else:
                plan = {p: (after, before) for p, (before, after) in changed.items()}
            wanted = {entry[1] for _, entry in plan.values() if entry is not None}
            blobs = await self.repo.blobs(wanted)
            restored, conflicts = await asyncio.to_thread(
                self._apply, plan, blobs, partial=not state.reverted
            )
            if state.reverted and not conflicts:
                state.reverted, state.revertedPaths = False, []
            elif not state.reverted and (restored or not conflicts):
                state.reverted, state.revertedPaths = True, restored
            await self._save(state)
            return RevertResult(turn_id, state.reverted, restored, conflicts)

    def _apply(
        self,
        plan: dict[str, tuple[Entry, Entry]],
        blobs: dict[str, bytes],
        *,
        partial: bool,
    ) -> tuple[list[str], list[Conflict]]:
        """Put each planned file from its expected entry to its target one."""
        conflicts = [
            Conflict(path, why)
            for path, (expected, _) in sorted(plan.items())
            if (why := self._conflict(path, expected)) is not None
        ]
        if conflicts and not partial:
            return [], conflicts
        skip = {c.path for c in conflicts}
        restored: list[str] = []
        for path, (_, target) in sorted(plan.items()):
            if path in skip:
                continue
            try:
                _restore(self.root, path, target, blobs)
            except OSError as exc:
                conflicts.append(Conflict(path, f"could not be restored: {exc.strerror or exc}"))
                continue
            restored.append(path)
        return restored, conflicts

    def _conflict(self, path: str, expected: Entry) -> str | None:
        """Why `path` may not be restored (it is not as the turn left it), or None."""
        target = self.root / path
        if not target.parent.resolve().is_relative_to(self.root):
            return "its folder now leads outside the workspace"
        now = working_entry(target)
        if isinstance(now, str):
            return now
        if now == expected:
            return None
        if now is None:
            return "deleted since"
        return "created since" if expected is None else "changed since"

    async def _changes(self, state: _TurnState) -> list[Change]:
        assert state.after is not None
        changed = await self.repo.changed(state.before, state.after)
        counts = await self.repo.numstat(state.before, state.after)
        out = []
        for path, (before, after) in sorted(changed.items()):
            status: Literal["added", "modified", "deleted"] = (
                "added" if before is None else "deleted" if after is None else "modified"
            )
            out.append(Change(path, status, *counts.get(path, (0, 0))))
        return out

    # -- state files -----------------------------------------------------------
    def _ref(self, turn_id: str, which: str) -> str:
        return f"refs/gadget/turns/{session_file_name(turn_id)}/{which}"

    def _state_path(self, turn_id: str) -> Path:
        return self.folder / "turns" / f"{session_file_name(turn_id)}.json"

    async def _require(self, turn_id: str, *, finished: bool = True) -> _TurnState:
        state = await self._load(turn_id)
        if state is None:
            raise CheckpointError(f"no checkpoint of turn {turn_id} in this workspace")
        if finished and state.after is None:
            raise CheckpointError(f"turn {turn_id} has not finished; wait for it to end")
        return state

    async def _load(self, turn_id: str) -> _TurnState | None:
        try:
            raw = await asyncio.to_thread(self._state_path(turn_id).read_bytes)
        except FileNotFoundError:
            return None
        try:
            state = _TurnState(**json.loads(raw))
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"the checkpoint of turn {turn_id} is damaged: {exc}") from exc
        return state if state.turnId == turn_id else None

    async def _save(self, state: _TurnState) -> None:
        path = self._state_path(state.turnId)

        def save() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(asdict(state)).encode())

        await asyncio.to_thread(save)


def _clean(path: str) -> str:
    """`path` as git names it (relative, POSIX); refuses escapes and the drone's folders."""
    parts = PurePosixPath(path.replace("\\", "/")).parts
    if not parts or path.startswith("/") or ".." in parts or parts[0] in (".git", GADGET_DIR):
        raise CheckpointError(f"expected a path inside the workspace, got {path!r}")
    return "/".join(p for p in parts if p != ".")


def _restore(root: Path, path: str, entry: Entry, blobs: dict[str, bytes]) -> None:
    """Make `root/path` match `entry` (None: remove it, and folders that become empty)."""
    target = root / path
    if entry is None:
        if target.is_symlink() or target.exists():
            target.unlink()
        folder = target.parent
        while folder != root and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
        return
    mode, blob = entry
    target.parent.mkdir(parents=True, exist_ok=True)
    if mode == SYMLINK or target.is_symlink():
        target.unlink(missing_ok=True)
    if mode == SYMLINK:
        os.symlink(os.fsdecode(blobs[blob]), target)
        return
    write_atomic(target, blobs[blob])
    current = stat.S_IMODE(target.stat().st_mode)
    if mode == "100755" and not current & stat.S_IXUSR:
        target.chmod(current | (current & 0o444) >> 2)  # x where r, as git checks out
    elif mode != "100755" and current & 0o111:
        target.chmod(current & ~0o111)
