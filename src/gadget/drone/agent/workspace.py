"""Confinement of the agent's file tools to the workspace directory (path checks only)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pathspec import GitIgnoreSpec

from gadget.drone.exceptions import ToolError, WorkspaceEscape
from gadget.drone.fsio import GADGET_DIR

__all__ = ["Workspace"]

#: Folders never listed or searched (they are noise, or the drone's own state).
SKIPPED_DIRS = frozenset({".git", GADGET_DIR})


class Workspace:
    """The directory the agent works in; every tool path is resolved through it."""

    def __init__(self, root: Path) -> None:
        """Bind to `root` (resolved once: symlinks in the root itself are allowed)."""
        self.root = root.resolve()

    def resolve(self, path: str) -> Path:
        """The real path of `path` (relative to the root or absolute) inside the workspace.

        Raises:
            WorkspaceEscape: the path (after `..` and symlinks) leaves the workspace,
                or points into the drone's `.gadget/` folder.
        """
        if not path or "\x00" in path:
            raise ToolError(f"expected a path inside the workspace, got {path!r}")
        given = Path(path).expanduser()
        real = (given if given.is_absolute() else self.root / given).resolve()
        if not real.is_relative_to(self.root):
            raise WorkspaceEscape(
                f"{path!r} resolves to {real}, outside the workspace {self.root}; "
                "use paths inside the workspace"
            )
        if self.is_hidden(real):
            raise WorkspaceEscape(
                f"{path!r} is inside {GADGET_DIR}/, which is reserved for the drone"
            )
        return real

    def is_hidden(self, real: Path) -> bool:
        """Whether a resolved path lies in the drone's reserved `.gadget/` folder."""
        rel = real.relative_to(self.root).parts
        return bool(rel) and rel[0] == GADGET_DIR

    def relative(self, real: Path) -> str:
        """The path as the model should see it: relative to the root, `.` for the root."""
        rel = real.relative_to(self.root).as_posix()
        return rel or "."

    def walk(self, start: Path, max_depth: int = 1000) -> Iterator[tuple[Path, int]]:
        """Files and folders under `start` (with their depth), honouring .gitignore files.

        Symlinks are not followed; entries leading out of the workspace are left out.
        """
        yield from self._walk(start, 1, max_depth, self._ignores_for(start))

    def _walk(
        self, folder: Path, depth: int, max_depth: int, ignores: list[tuple[Path, GitIgnoreSpec]]
    ) -> Iterator[tuple[Path, int]]:
        ignores = [*ignores, *self._spec(folder)]
        try:
            entries = sorted(folder.iterdir(), key=lambda p: p.name)
        except OSError:
            return
        for entry in entries:
            if entry.name in SKIPPED_DIRS or self._ignored(entry, ignores):
                continue
            if entry.is_symlink() and not entry.resolve().is_relative_to(self.root):
                continue
            yield entry, depth
            if depth < max_depth and entry.is_dir() and not entry.is_symlink():
                yield from self._walk(entry, depth + 1, max_depth, ignores)

    def _ignores_for(self, start: Path) -> list[tuple[Path, GitIgnoreSpec]]:
        """The .gitignore specs of the folders above `start`, down from the root."""
        specs: list[tuple[Path, GitIgnoreSpec]] = []
        folder = self.root
        for part in start.relative_to(self.root).parts:
            specs.extend(self._spec(folder))
            folder = folder / part
        return specs

    @staticmethod
    def _spec(folder: Path) -> list[tuple[Path, GitIgnoreSpec]]:
        try:
            lines = (folder / ".gitignore").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        return [(folder, GitIgnoreSpec.from_lines(lines.splitlines()))]

    @staticmethod
    def _ignored(entry: Path, ignores: list[tuple[Path, GitIgnoreSpec]]) -> bool:
        for base, spec in ignores:
            rel = entry.relative_to(base).as_posix()
            if spec.match_file(rel + "/" if entry.is_dir() else rel):
                return True
        return False
