"""Checkpoints: a turn's changes (file tools and commands), its diffs, revert, conflicts, toggle."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gadget.drone.agent.loop import Agent
from gadget.drone.agent.model import OpenAIModel
from gadget.drone.agent.tools import default_toolbox
from gadget.drone.agent.workspace import Workspace
from gadget.drone.checkpoints import Change, Checkpoints, Conflict
from gadget.drone.exceptions import CheckpointError
from tests.drone.e2e import new_session, running_drone
from tests.drone.helpers import RecordedEvents, drone_settings
from tests.fakes.llm_server import Reply, ScriptedLLM, text_reply, tool_reply
from tests.harness import HubHarness

pytestmark = pytest.mark.timeout(30)

CALC = "def add(a, b):\n    return a - b\n"
STATUS = " M calc.py\n"


def git(ws: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    # GIT_OPTIONAL_LOCKS=0: `git status` itself must not refresh the index we watch
    env.update(GIT_AUTHOR_NAME="p", GIT_AUTHOR_EMAIL="p@x", GIT_COMMITTER_NAME="p",
               GIT_COMMITTER_EMAIL="p@x", GIT_CONFIG_GLOBAL=os.devnull,
               GIT_OPTIONAL_LOCKS="0")  # fmt: skip
    return subprocess.run(
        ["git", *args], cwd=ws, env=env, check=True, capture_output=True, text=True
    ).stdout


def tree_digest(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under `folder`: its mode, mtime and content hash."""
    out = {}
    for path in sorted(folder.rglob("*")):
        st = path.lstat()
        data = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
        out[str(path.relative_to(folder))] = (
            st.st_mode,
            st.st_mtime_ns,
            hashlib.sha256(data).hexdigest(),
        )
    return out


@pytest.fixture
def project(ws: Path) -> Iterator[Path]:
    """The workspace as a real git project of the person's; its .git must never change.

    Its `git status` is in :data:`STATUS` (the drone's .gadget/ must never show up there).
    """
    (ws / "README.md").write_text("# Calc\n")
    (ws / "run.sh").write_text("#!/bin/sh\necho run\n")
    (ws / "run.sh").chmod(0o755)
    (ws / ".gitignore").write_text("build/\n")
    (ws / ".gitattributes").write_text("* text=auto eol=crlf\n")  # must not alter our bytes
    git(ws, "init", "-q")
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", "start")
    (ws / "calc.py").write_text(CALC + "# work in progress\n")  # uncommitted, as people do
    assert git(ws, "status", "--porcelain") == STATUS
    dot_git = tree_digest(ws / ".git")
    yield ws
    assert tree_digest(ws / ".git") == dot_git, "the person's .git was touched"


async def agent_turn(ws: Path, script: list[Reply], cp: Checkpoints, turn_id: str) -> list[Change]:
    """One real turn between begin and finish: the scripted model and the real tools."""
    async with ScriptedLLM([*script, text_reply("done")]) as llm:
        settings = drone_settings(ws, llm.base_url)
        model = OpenAIModel(settings)
        agent = Agent(model, default_toolbox(), Workspace(ws), settings, RecordedEvents())
        await cp.begin(turn_id)
        try:
            await agent.run("go")
        finally:
            await model.close()
        return await cp.finish(turn_id)


def command(cmd: str, call_id: str = "r1") -> Reply:
    return tool_reply((call_id, "run_command", {"command": cmd}))


async def test_file_tool_edits_are_the_turns_changes_and_revert_restores_them(
    project: Path,
) -> None:
    ws, cp = project, Checkpoints(project)
    before = (ws / "calc.py").read_bytes()
    script = [
        tool_reply(("c1", "read_file", {"path": "calc.py"})),
        tool_reply(("c2", "edit_file", {"path": "calc.py", "old": "a - b", "new": "a + b"})),
        tool_reply(("c3", "write_file", {"path": "pkg/new/mod.py", "content": "A = 1\nB = 2\n"})),
    ]
    changes = await agent_turn(ws, script, cp, "turn-1")
    assert changes == [
        Change("calc.py", "modified", 1, 1),
        Change("pkg/new/mod.py", "added", 2, 0),
    ]
    assert changes[0].to_json() == {
        "path": "calc.py", "status": "modified", "additions": 1, "deletions": 1,
    }  # fmt: skip
    diff = await cp.diff("turn-1", "calc.py")
    assert "\n-    return a - b\n+    return a + b\n" in diff
    assert await cp.changes("turn-1") == changes
    result = await cp.revert("turn-1")
    assert result.ok and result.reverted and result.restored == ["calc.py", "pkg/new/mod.py"]
    assert (ws / "calc.py").read_bytes() == before  # byte for byte, despite eol=crlf
    assert not (ws / "pkg").exists()  # the folders the turn made are gone too
    assert await cp.reverted("turn-1")
    assert git(ws, "status", "--porcelain") == STATUS


async def test_files_changed_by_a_command_are_seen_and_reverted(project: Path) -> None:
    ws, cp = project, Checkpoints(project)
    script = [
        command(
            "rm README.md && printf 'a\\nb\\n' > out.txt && chmod -x run.sh "
            "&& ln -s calc.py link.py && mkdir -p build && echo o > build/x.o"
        )
    ]
    changes = await agent_turn(ws, script, cp, "turn-1")
    assert changes == [
        Change("README.md", "deleted", 0, 1),
        Change("link.py", "added", 1, 0),
        Change("out.txt", "added", 2, 0),
        Change("run.sh", "modified", 0, 0),  # only its mode
    ]  # build/ is ignored by the workspace's .gitignore: not snapshotted
    result = await cp.revert("turn-1")
    assert result.ok and set(result.restored) == {"README.md", "link.py", "out.txt", "run.sh"}
    assert (ws / "README.md").read_text() == "# Calc\n"
    assert not (ws / "out.txt").exists() and not (ws / "link.py").is_symlink()
    assert os.access(ws / "run.sh", os.X_OK)
    assert (ws / "build" / "x.o").exists()  # not the turn's, as far as checkpoints know
    assert git(ws, "status", "--porcelain") == STATUS


async def test_a_file_changed_since_is_a_conflict_and_the_rest_is_restored(
    project: Path,
) -> None:
    ws, cp = project, Checkpoints(project)
    script = [command("echo turn > a.txt && echo turn >> README.md")]
    await agent_turn(ws, script, cp, "turn-1")
    (ws / "README.md").write_text("# Calc\nthe person's line\n")
    result = await cp.revert("turn-1")
    assert result.restored == ["a.txt"] and not result.ok
    assert result.conflicts == [Conflict("README.md", "changed since")]
    assert result.to_json()["conflicts"] == [{"path": "README.md", "reason": "changed since"}]
    assert (ws / "README.md").read_text() == "# Calc\nthe person's line\n"  # not overwritten
    assert not (ws / "a.txt").exists() and result.reverted
    # re-applying puts back only what the revert restored
    again = await cp.revert("turn-1")
    assert again.ok and not again.reverted and again.restored == ["a.txt"]
    assert (ws / "a.txt").read_text() == "turn\n"


async def test_revert_toggles_and_reapply_is_all_or_nothing(project: Path) -> None:
    ws, cp = project, Checkpoints(project)
    await agent_turn(ws, [command("echo 1 > a.txt && echo 1 > b.txt")], cp, "turn-1")
    assert (await cp.revert("turn-1")).reverted
    assert not (ws / "a.txt").exists() and not (ws / "b.txt").exists()
    reapplied = await cp.revert("turn-1")
    assert reapplied.ok and not reapplied.reverted
    assert (ws / "a.txt").read_text() == (ws / "b.txt").read_text() == "1\n"
    assert (await cp.revert("turn-1")).reverted
    (ws / "b.txt").write_text("the person's\n")  # created again after the undo
    refused = await cp.revert("turn-1")
    assert refused.conflicts == [Conflict("b.txt", "created since")]
    assert refused.reverted and refused.restored == []
    assert not (ws / "a.txt").exists()  # nothing was re-applied


async def test_the_reverted_state_survives_a_drone_restart(project: Path) -> None:
    ws = project
    await agent_turn(ws, [command("echo new > a.txt")], Checkpoints(ws), "turn-1")
    assert (await Checkpoints(ws).revert("turn-1")).reverted
    restarted = Checkpoints(ws)  # a new drone process: state comes from .gadget/
    assert await restarted.reverted("turn-1")
    assert "+new" in await restarted.diff("turn-1", "a.txt")
    reapplied = await restarted.revert("turn-1")
    assert not reapplied.reverted and (ws / "a.txt").read_text() == "new\n"


async def test_a_later_turns_change_is_a_conflict_for_an_earlier_turn(project: Path) -> None:
    ws, cp = project, Checkpoints(project)
    await agent_turn(ws, [command("echo one > a.txt && echo one > b.txt")], cp, "turn-1")
    await agent_turn(ws, [command("echo two > a.txt")], cp, "turn-2")
    assert await cp.changes("turn-2") == [Change("a.txt", "modified", 1, 1)]
    result = await cp.revert("turn-1")
    assert result.restored == ["b.txt"]
    assert result.conflicts == [Conflict("a.txt", "changed since")]
    assert (ws / "a.txt").read_text() == "two\n"
    assert (await cp.revert("turn-2")).restored == ["a.txt"]
    assert (ws / "a.txt").read_text() == "one\n"


async def test_a_retried_turn_keeps_the_snapshot_of_its_first_attempt(project: Path) -> None:
    ws, cp = project, Checkpoints(project)
    await cp.begin("turn-1")
    (ws / "first.txt").write_text("attempt 1\n")  # then the drone died
    retried = Checkpoints(ws)
    await retried.begin("turn-1")
    (ws / "second.txt").write_text("attempt 2\n")
    paths = [c.path for c in await retried.finish("turn-1")]
    assert paths == ["first.txt", "second.txt"]


async def test_mistakes_get_clear_errors(project: Path) -> None:
    ws, cp = project, Checkpoints(project)
    with pytest.raises(CheckpointError, match="no checkpoint of turn nope"):
        await cp.revert("nope")
    await cp.begin("turn-1")
    with pytest.raises(CheckpointError, match="has not finished"):
        await cp.revert("turn-1")
    (ws / "a.txt").write_text("x\n")
    await cp.finish("turn-1")
    for bad in ("../etc/passwd", "/etc/passwd", ".git/config", ".gadget/x", ""):
        with pytest.raises(CheckpointError, match="expected a path inside the workspace"):
            await cp.diff("turn-1", bad)
    with pytest.raises(CheckpointError, match=r"did not change 'calc.py'; it changed a\.txt"):
        await cp.diff("turn-1", "calc.py")
    with pytest.raises(CheckpointError, match="install it"):
        await Checkpoints(ws, git="/nonexistent/git").begin("turn-2")


async def test_a_turn_without_changes_has_none(tmp_path: Path) -> None:
    ws = tmp_path / "empty"
    ws.mkdir()
    cp = Checkpoints(ws)
    await cp.begin("t")
    assert await cp.finish("t") == []
    result = await cp.revert("t")
    assert result.ok and result.restored == []


async def test_a_drone_turn_is_checkpointed(hub: HubHarness, ws: Path) -> None:
    """Through the real hub and drone: the turn's runner takes the checkpoint."""
    script = [
        tool_reply(("c1", "read_file", {"path": "calc.py"})),
        tool_reply(("c2", "edit_file", {"path": "calc.py", "old": "a - b", "new": "a + b"})),
        text_reply("Fixed."),
    ]
    async with ScriptedLLM(script) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await s.lock()
            turn_id = await s.submit("fix add")
            assert await s.completion(turn_id) == (turn_id, True)
    cp = Checkpoints(ws)
    assert await cp.changes(turn_id) == [Change("calc.py", "modified", 1, 1)]
    assert (await cp.revert(turn_id)).restored == ["calc.py"]
    assert (ws / "calc.py").read_text() == CALC
