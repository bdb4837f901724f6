"""File modes of the agent's writes: an existing file keeps its mode, a new one gets the umask's."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from gadget.drone.agent.model import ToolCallRequest
from gadget.drone.agent.reads import FileReads
from gadget.drone.agent.tools import ToolContext, ToolResult, default_toolbox
from gadget.drone.agent.workspace import Workspace
from gadget.drone.fsio import gadget_dir, write_atomic
from tests.drone.helpers import RecordedEvents, drone_settings

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """A known umask for the test (the process-wide one is restored after)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def call(ws: Path, reads: FileReads, name: str, **args: object) -> ToolResult:
    ctx = ToolContext(Workspace(ws), drone_settings(ws), RecordedEvents(), "c", reads=reads)
    return await default_toolbox().execute(ToolCallRequest("c", name, json.dumps(args)), ctx)


async def test_an_edited_script_stays_executable(ws: Path, umask_022: None) -> None:
    script = ws / "run.sh"
    script.write_text("#!/bin/sh\necho old\n")
    script.chmod(0o755)
    private = ws / "secret.cfg"
    private.write_text("token = 1\n")
    private.chmod(0o640)
    reads = FileReads()
    for name in ("run.sh", "secret.cfg"):
        assert (await call(ws, reads, "read_file", path=name)).ok
    assert (await call(ws, reads, "edit_file", path="run.sh", old="old", new="new")).ok
    assert (await call(ws, reads, "write_file", path="secret.cfg", content="token = 2\n")).ok
    assert mode(script) == 0o755 and mode(private) == 0o640
    ran = await call(ws, reads, "run_command", command="./run.sh")
    assert ran.output.endswith("\nnew\n[exit code: 0]")  # no "Permission denied"


async def test_new_files_get_the_umask(ws: Path, umask_022: None) -> None:
    reads = FileReads()
    assert (await call(ws, reads, "write_file", path="pkg/new.py", content="A = 1\n")).ok
    assert mode(ws / "pkg" / "new.py") == 0o644
    os.umask(0o077)
    assert (await call(ws, reads, "write_file", path="pkg/private.py", content="B = 2\n")).ok
    assert mode(ws / "pkg" / "private.py") == 0o600


def test_write_atomic_leaves_no_temp_file_and_keeps_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_text("one")
    target.chmod(0o700)
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two" and mode(target) == 0o700
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_the_gadget_folder_is_private_and_ignored_by_git(tmp_path: Path) -> None:
    (tmp_path / ".gadget").mkdir(mode=0o755)  # as an older drone left it
    folder = gadget_dir(tmp_path)
    assert mode(folder) == 0o700
    assert (folder / ".gitignore").read_text().splitlines()[-1] == "*"
