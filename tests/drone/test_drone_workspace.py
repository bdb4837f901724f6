"""Confinement and the file / search tools, against a real directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gadget.drone.agent.model import ToolCallRequest
from gadget.drone.agent.reads import FileReads
from gadget.drone.agent.tools import ToolContext, ToolResult, default_toolbox
from gadget.drone.agent.workspace import Workspace
from gadget.drone.exceptions import WorkspaceEscape
from tests.drone.helpers import RecordedEvents, drone_settings

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("def add(a, b):\n    return a - b\n")
    (root / ".gadget").mkdir()
    (root / ".gadget" / "work-order.json").write_text("{}")
    (tmp_path / "secret.txt").write_text("top secret")
    return root


async def call(ws: Path, name: str, reads: FileReads | None = None, **args: object) -> ToolResult:
    """Run one tool call; calls sharing `reads` are one agent's turn."""
    ctx = ToolContext(
        Workspace(ws), drone_settings(ws), RecordedEvents(), "call-1", reads=reads or FileReads()
    )
    return await default_toolbox().execute(ToolCallRequest("call-1", name, json.dumps(args)), ctx)


@pytest.mark.parametrize(
    "path",
    [
        "../secret.txt",
        "/etc/passwd",
        "src/../../secret.txt",
        "link/secret.txt",
        "outlink",
        ".gadget/work-order.json",
    ],
)
async def test_escapes_are_refused_with_a_tool_error(ws: Path, path: str) -> None:
    (ws / "link").symlink_to(ws.parent)
    (ws / "outlink").symlink_to(ws.parent / "secret.txt")
    for name, args in [
        ("read_file", {}),
        ("write_file", {"content": "x"}),
        ("edit_file", {"old": "a", "new": "b"}),
    ]:
        result = await call(ws, name, path=path, **args)
        assert not result.ok, (name, path, result)
        assert "outside the workspace" in result.output or ".gadget/" in result.output
    assert (ws.parent / "secret.txt").read_text() == "top secret"


def test_resolve_keeps_inner_symlinks_and_absolute_paths_inside(ws: Path) -> None:
    (ws / "alias").symlink_to(ws / "src")
    w = Workspace(ws)
    assert w.resolve("alias/app.py") == (ws / "src" / "app.py").resolve()
    assert w.resolve(str(ws / "src" / "app.py")) == (ws / "src" / "app.py").resolve()
    with pytest.raises(WorkspaceEscape):
        w.resolve(str(ws.parent))


async def test_read_file_numbers_lines_and_pages(ws: Path) -> None:
    (ws / "big.txt").write_text("".join(f"line {i}\n" for i in range(1, 11)))
    result = await call(ws, "read_file", path="big.txt", offset=3, limit=2)
    assert result.ok
    assert result.output == "     3\tline 3\n     4\tline 4\n[6 more lines; read on with offset=5]"
    missing = await call(ws, "read_file", path="nope.txt")
    assert not missing.ok and "does not exist" in missing.output


async def test_edit_file_needs_one_exact_match(ws: Path) -> None:
    (ws / "dup.txt").write_text("x = 1\nx = 1\n")
    reads = FileReads()
    for path in ("src/app.py", "dup.txt"):
        assert (await call(ws, "read_file", reads, path=path)).ok
    none = await call(ws, "edit_file", reads, path="src/app.py", old="a * b", new="a + b")
    assert not none.ok and "not found in src/app.py" in none.output
    many = await call(ws, "edit_file", reads, path="dup.txt", old="x = 1", new="x = 2")
    assert not many.ok and "occurs 2 times in dup.txt" in many.output
    ok = await call(ws, "edit_file", reads, path="src/app.py", old="a - b", new="a + b")
    assert ok.ok and ok.output == "edited src/app.py at line 2"
    assert (ws / "src" / "app.py").read_text() == "def add(a, b):\n    return a + b\n"


async def test_write_file_creates_folders(ws: Path) -> None:
    result = await call(ws, "write_file", path="pkg/new/mod.py", content="A = 1\n")
    assert result.ok and result.output == "created pkg/new/mod.py (1 lines)"
    assert (ws / "pkg" / "new" / "mod.py").read_text() == "A = 1\n"


async def test_list_dir_hides_gadget_and_gitignored(ws: Path) -> None:
    (ws / ".gitignore").write_text("build/\n*.log\n")
    (ws / "build").mkdir()
    (ws / "build" / "out.o").write_text("")
    (ws / "run.log").write_text("")
    (ws / "outside").symlink_to(ws.parent)
    result = await call(ws, "list_dir", path=".")
    assert result.output.splitlines() == [".gitignore", "src/", "  app.py"]


async def test_search_honours_gitignore_glob_and_reports_lines(ws: Path) -> None:
    (ws / ".gitignore").write_text("vendor/\n")
    (ws / "vendor").mkdir()
    (ws / "vendor" / "lib.py").write_text("def add(x): pass\n")
    (ws / "notes.md").write_text("add more tests\n")
    result = await call(ws, "search", pattern=r"def \w+\(", path=".")
    assert result.output == "src/app.py:1: def add(a, b):"
    only_md = await call(ws, "search", pattern="add", glob="*.md")
    assert only_md.output == "notes.md:1: add more tests"
    bad = await call(ws, "search", pattern="(")
    assert not bad.ok and "bad regular expression" in bad.output


async def test_unknown_tool_and_bad_arguments_are_tool_errors(ws: Path) -> None:
    ctx = ToolContext(Workspace(ws), drone_settings(ws), RecordedEvents(), "c")
    box = default_toolbox()
    unknown = await box.execute(ToolCallRequest("c", "rm_rf", "{}"), ctx)
    assert not unknown.ok and "unknown tool 'rm_rf'" in unknown.output
    broken = await box.execute(ToolCallRequest("c", "read_file", '{"path": '), ctx)
    assert not broken.ok and "expected JSON arguments" in broken.output
    missing = await box.execute(ToolCallRequest("c", "read_file", "{}"), ctx)
    assert not missing.ok and "path: Field required" in missing.output


async def test_run_command_reports_output_and_exit_code(ws: Path) -> None:
    result = await call(ws, "run_command", command="echo hi; ls src; exit 3")
    assert result.output == "$ echo hi; ls src; exit 3\nhi\napp.py\n[exit code: 3]"


async def test_run_command_hides_the_drones_secrets(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GADGET_DRONE_KEY", "sekrit")
    result = await call(ws, "run_command", command='echo "key=${GADGET_DRONE_KEY:-unset}"')
    assert "key=unset" in result.output


async def test_run_command_caps_output_with_a_note(ws: Path) -> None:
    ctx = ToolContext(
        Workspace(ws), drone_settings(ws, command_output_limit=200), RecordedEvents(), "c"
    )
    call_ = ToolCallRequest("c", "run_command", json.dumps({"command": "seq 1 10000"}))
    result = await default_toolbox().execute(call_, ctx)
    assert "bytes of output elided" in result.output
    assert result.output.splitlines()[1] == "1" and result.output.splitlines()[-2] == "10000"


async def test_run_command_timeout_kills_the_process_group(ws: Path) -> None:
    # Unsandboxed, so the pid the command writes is this machine's (test_sandbox.py: bwrap).
    ctx = ToolContext(Workspace(ws), drone_settings(ws, sandbox="none"), RecordedEvents(), "c")
    pid_file = ws / "child.pid"
    command = f"(sleep 30 & echo $! > {pid_file}; wait) ; echo never"
    args = json.dumps({"command": command, "timeout": 0.5})
    result = await default_toolbox().execute(ToolCallRequest("c", "run_command", args), ctx)
    assert result.output.splitlines()[1:] == [
        "[timed out after 0.5s; its process group was killed]"
    ]
    assert not _alive(int(pid_file.read_text()))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")
