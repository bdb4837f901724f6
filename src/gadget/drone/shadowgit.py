"""A shadow git repository under `.gadget/` whose work tree is the workspace.

Git runs with `GIT_DIR` pointing into `.gadget/` and `GIT_WORK_TREE` at the workspace,
with the person's git configuration shut out (no global or system config, no hooks,
no filters), so it never reads or writes the workspace's own `.git`. It stores files
byte for byte (`.gitattributes` filters and end-of-line conversion are switched off),
skips `.git/` and `.gadget/`, and honours the workspace's `.gitignore` files.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import stat
from pathlib import Path

from gadget.drone.exceptions import CheckpointError

__all__ = ["Entry", "ShadowRepo", "working_entry"]

logger = logging.getLogger(__name__)

#: A file as git records it: (mode, blob id), e.g. ("100644", "e69de…"); None: no file.
Entry = tuple[str, str] | None
#: Git's mode of a nested repository (a gitlink); such entries are left alone.
GITLINK = "160000"
SYMLINK = "120000"

CONFIG = """\
[core]
\tautocrlf = false
\tsafecrlf = false
\tsymlinks = true
\tfileMode = true
\tfsmonitor = false
\texcludesFile = {devnull}
\thooksPath = {devnull}
[gc]
\tauto = 0
[advice]
\taddEmbeddedRepo = false
[commit]
\tgpgSign = false
"""
EXCLUDE = "/.git/\n/.gadget/\n"
#: Highest-precedence attributes: raw bytes, whatever the workspace's .gitattributes say.
ATTRIBUTES = "* -text -eol -filter -ident -working-tree-encoding\n"
IDENTITY = {
    "GIT_AUTHOR_NAME": "Gadget drone",
    "GIT_AUTHOR_EMAIL": "drone@gadget.invalid",
    "GIT_COMMITTER_NAME": "Gadget drone",
    "GIT_COMMITTER_EMAIL": "drone@gadget.invalid",
}


def working_entry(path: Path) -> Entry | str:
    """What git would record for `path` now: its entry, None when absent, or a reason it can't."""
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            mode, data = SYMLINK, os.fsencode(os.readlink(path))
        elif stat.S_ISREG(st.st_mode):
            mode = "100755" if st.st_mode & stat.S_IXUSR else "100644"
            data = path.read_bytes()
        else:
            return "is now a folder or a special file"
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    return mode, hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class ShadowRepo:
    """The workspace's checkpoint repository (git plumbing only; no state of its own)."""

    def __init__(self, workspace: Path, git_dir: Path, git: str = "git") -> None:
        """Use `git_dir` (created by :meth:`ensure`) for snapshots of `workspace`."""
        self.workspace, self.git_dir, self.git = workspace, git_dir, git
        self._ready = False

    def _env(self, work_tree: bool = True) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update(
            GIT_DIR=str(self.git_dir),
            GIT_CONFIG_NOSYSTEM="1",
            GIT_CONFIG_GLOBAL=os.devnull,
            GIT_TERMINAL_PROMPT="0",
            LC_ALL="C",
            **IDENTITY,
        )
        if work_tree:
            env["GIT_WORK_TREE"] = str(self.workspace)
        return env

    async def run(
        self, *args: str, stdin: bytes | None = None, check: bool = True, work_tree: bool = True
    ) -> bytes:
        """Run one git command in the workspace; its stdout.

        Raises:
            CheckpointError: git is missing, or the command failed (with `check`).
        """
        try:
            proc = await asyncio.create_subprocess_exec(
                self.git,
                *args,
                cwd=self.workspace,
                env=self._env(work_tree),
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError:
            raise CheckpointError(
                f"checkpoints need git, and {self.git!r} was not found — install it "
                "(apt install git) or set GADGET_CHECKPOINTS=false"
            ) from None
        out, err = await proc.communicate(stdin)
        if proc.returncode != 0:
            message = err.decode(errors="replace").strip()[-2000:]
            if check:
                raise CheckpointError(
                    f"git {args[0]} failed in the checkpoint repository: {message}"
                )
            logger.warning("git %s in the checkpoint repository: %s", args[0], message)
        return out

    async def ensure(self) -> None:
        """Create the repository on first use; clear a lock a killed drone left behind."""
        if self._ready:
            return
        if not (self.git_dir / "HEAD").exists():
            self.git_dir.parent.mkdir(parents=True, exist_ok=True)
            await self.run("init", "--quiet", "--template=", work_tree=False)
            await asyncio.to_thread(self._configure)
        lock = self.git_dir / "index.lock"
        if lock.exists():  # only this drone uses the repository; a lock is a dead run's
            logger.warning("removing a stale %s", lock)
            lock.unlink(missing_ok=True)
        self._ready = True

    def _configure(self) -> None:
        with (self.git_dir / "config").open("a", encoding="utf-8") as fh:
            fh.write(CONFIG.format(devnull=os.devnull))
        info = self.git_dir / "info"
        info.mkdir(exist_ok=True)
        (info / "exclude").write_text(EXCLUDE, encoding="utf-8")
        (info / "attributes").write_text(ATTRIBUTES, encoding="utf-8")

    async def snapshot(self, message: str, parent: str | None = None) -> str:
        """Record the workspace as it is now; the new commit's id."""
        # unreadable files are skipped (and logged) rather than failing the snapshot;
        # .gadget/ is kept out twice: by info/exclude and by its own "*" .gitignore
        await self.run("add", "--all", "--ignore-errors", check=False)
        tree = (await self.run("write-tree")).decode().strip()
        parents = ["-p", parent] if parent else []
        return (await self.run("commit-tree", tree, *parents, "-m", message)).decode().strip()

    async def set_ref(self, name: str, commit: str) -> None:
        """Point ref `name` at `commit` (keeps it from ever being collected)."""
        await self.run("update-ref", name, commit)

    async def changed(self, before: str, after: str) -> dict[str, tuple[Entry, Entry]]:
        """Each file that differs between two snapshots: (its entry before, after)."""
        raw = await self.run("diff-tree", "-r", "-z", "--raw", "--no-renames", before, after)
        fields = raw.split(b"\0")
        out: dict[str, tuple[Entry, Entry]] = {}
        for meta, path in zip(fields[0::2], fields[1::2], strict=False):
            if not meta.startswith(b":"):
                continue
            old_mode, new_mode, old_id, new_id, _ = meta[1:].decode().split(" ")
            if GITLINK in (old_mode, new_mode):
                continue
            old: Entry = None if old_mode == "000000" else (old_mode, old_id)
            new: Entry = None if new_mode == "000000" else (new_mode, new_id)
            out[os.fsdecode(path)] = (old, new)
        return out

    async def numstat(self, before: str, after: str) -> dict[str, tuple[int, int]]:
        """Lines added and deleted per changed file (0, 0 for binary files)."""
        raw = await self.run("diff-tree", "-r", "-z", "--numstat", "--no-renames", before, after)
        out: dict[str, tuple[int, int]] = {}
        for record in raw.split(b"\0"):
            parts = record.split(b"\t", 2)
            if len(parts) == 3:
                added, deleted, path = parts
                out[os.fsdecode(path)] = (_count(added), _count(deleted))
        return out

    async def diff(self, before: str, after: str, path: str) -> str:
        """The unified diff of one file between two snapshots."""
        out = await self.run(
            "diff", "--no-color", "--no-ext-diff", "--no-textconv", before, after,
            "--", f":(literal){path}",
        )  # fmt: skip
        return out.decode("utf-8", errors="replace")

    async def blobs(self, ids: set[str]) -> dict[str, bytes]:
        """The contents of blobs, by id."""
        if not ids:
            return {}
        order = sorted(ids)
        raw = await self.run("cat-file", "--batch", stdin="".join(f"{i}\n" for i in order).encode())
        out: dict[str, bytes] = {}
        at = 0
        for blob_id in order:
            end = raw.index(b"\n", at)
            header = raw[at:end].decode().split(" ")
            if len(header) != 3 or header[1] != "blob":
                raise CheckpointError(f"the checkpoint repository lacks blob {blob_id}: {header}")
            size = int(header[2])
            out[blob_id] = raw[end + 1 : end + 1 + size]
            at = end + 1 + size + 1
        return out


def _count(text: bytes) -> int:
    return int(text) if text.isdigit() else 0
