"""A turn's changes and undo end to end: checkpoints, `turnChanges`, `revertTurn`, stale edits.

The real hub and a real drone with the scripted model: a turn that edits with the file
tools and changes files with a command reports them all (with diffs) before its end;
`revertTurn` restores them, leaving a file changed since alone, and a second one
re-applies them; undo is refused while a turn runs; an edit of a file changed on disk
since the agent read it is refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.drone.control import call, result
from tests.drone.e2e import new_session, running_drone
from tests.fakes.llm_server import ScriptedLLM, text_reply, tool_reply
from tests.harness import HubHarness

pytestmark = pytest.mark.timeout(60)

CALC = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
READ = ("c1", "read_file", {"path": "calc.py"})
EDIT = ("c2", "edit_file", {"path": "calc.py", "old": "a - b", "new": "a + b"})
COMMAND = ("c3", "run_command", {"command": "printf 'one\\ntwo\\n' > notes.txt && rm old.txt"})


async def test_a_turns_changes_are_reported_and_undone_and_redone(
    hub: HubHarness, ws: Path
) -> None:
    (ws / "old.txt").write_text("to be removed\n")
    script = [tool_reply(READ), tool_reply(EDIT), tool_reply(COMMAND), text_reply("Done.")]
    async with ScriptedLLM(script) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await s.lock()
            assert s.ide is not None
            turn_id = await s.submit("fix add, write notes, drop old.txt")
            assert await s.completion(turn_id) == (turn_id, True)
            turn = await s.turn(turn_id)
            undo = await call(s.ide, "revertTurn", turn_id)
            undone = {p: (ws / p).exists() for p in ("notes.txt", "old.txt")}
            calc_undone = (ws / "calc.py").read_text()
            reverted = await s.turn(turn_id)
            redo = await call(s.ide, "revertTurn", turn_id)
            redone = await s.turn(turn_id)
    # Reported: the file tools' edit and the command's two changes, before the end.
    changes = {c["path"]: c for c in turn["changes"]}
    assert {p: (c["status"], c["additions"], c["deletions"]) for p, c in changes.items()} == {
        "calc.py": ("modified", 1, 1),
        "notes.txt": ("added", 2, 0),
        "old.txt": ("deleted", 0, 1),
    }
    assert "-    return a - b\n+    return a + b" in changes["calc.py"]["diff"]
    assert "+one\n+two" in changes["notes.txt"]["diff"]
    marked = s.ide.log.marked("turnChanges")
    assert [args for args, _ in marked] == [(turn_id, turn["changes"])]
    (_, changes_mark), (_, end_mark) = marked[0], s.ide.log.marked("workOrderComplete")[0]
    assert changes_mark is not None and end_mark is not None
    assert changes_mark[1] + 1 == end_mark[1]  # the last event before the end
    # Undone: every file as before the turn.
    assert undo == (True, {"reverted": True, "conflicts": [],
                           "restored": ["calc.py", "notes.txt", "old.txt"]})  # fmt: skip
    assert calc_undone == CALC and undone == {"notes.txt": False, "old.txt": True}
    assert reverted["reverted"] is True
    # Redone: the turn's result again.
    assert redo == (True, {"reverted": False, "conflicts": [],
                           "restored": ["calc.py", "notes.txt", "old.txt"]})  # fmt: skip
    assert "reverted" not in redone
    assert (ws / "calc.py").read_text() == FIXED and not (ws / "old.txt").exists()
    assert (ws / "notes.txt").read_text() == "one\ntwo\n"
    assert [a[0] for a in s.ide.log.of("turnReverted")] == [
        {"turnId": turn_id, "reverted": True, "conflicts": []},
        {"turnId": turn_id, "reverted": False, "conflicts": []},
    ]


async def test_a_file_changed_since_is_a_conflict_and_the_rest_is_undone(
    hub: HubHarness, ws: Path
) -> None:
    both = ("c1", "run_command", {"command": "echo a > a.txt; echo b > b.txt"})
    async with ScriptedLLM([tool_reply(both), text_reply("Wrote both.")]) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await s.lock()
            assert s.ide is not None
            turn_id = await s.submit("write a and b")
            assert await s.completion(turn_id) == (turn_id, True)
            (ws / "b.txt").write_text("the person's edit\n")  # after the turn
            undo = await call(s.ide, "revertTurn", turn_id)
            turn = await s.turn(turn_id)
    conflicts = [{"path": "b.txt", "reason": "changed since"}]
    assert undo == (True, {"reverted": True, "conflicts": conflicts, "restored": ["a.txt"]})
    assert not (ws / "a.txt").exists()
    assert (ws / "b.txt").read_text() == "the person's edit\n"
    assert turn["reverted"] is True
    assert s.ide.log.of("turnReverted")[-1] == (
        {"turnId": turn_id, "reverted": True, "conflicts": conflicts},
    )


async def test_undo_is_refused_while_a_turn_runs_and_for_unknown_turns(
    hub: HubHarness, ws: Path
) -> None:
    script = [tool_reply(("c1", "run_command", {"command": "echo x > x.txt"})), text_reply("ok")]
    async with ScriptedLLM([*script, text_reply("thinking forever", hang=True)]) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await s.lock()
            assert s.ide is not None
            done = await s.submit("write x")
            assert await s.completion(done) == (done, True)
            running = await s.submit("talk")
            await s.ide.log.wait_for("response", lambda a: True)
            busy = await call(s.ide, "revertTurn", done)
            unknown = await call(s.ide, "revertTurn", "no-such-turn")
            await call(s.ide, "cancelWorkOrder", running)
            await s.completion(running)
    assert busy == (False, "a turn is processing: wait for it to end (or cancel it) to undo one")
    assert unknown == (False, "unknown turn no-such-turn in this chat session")
    assert (ws / "x.txt").read_text() == "x\n"


async def test_an_edit_of_a_file_changed_on_disk_since_it_was_read_is_refused(
    hub: HubHarness, ws: Path
) -> None:
    again = ("c3", "read_file", {"path": "calc.py"})
    retry = ("c4", "edit_file", {"path": "calc.py", "old": "a * b", "new": "a + b"})
    script = [
        tool_reply(READ),
        tool_reply(EDIT, delay_s=0.5),  # the person edits calc.py meanwhile
        tool_reply(again),
        tool_reply(retry),
        text_reply("Fixed on the new content."),
    ]
    async with ScriptedLLM(script) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await s.lock()
            turn_id = await s.submit("fix add")
            await llm.wait_for_requests(2)
            (ws / "calc.py").write_text("def add(a, b):\n    return a * b\n")
            assert await s.completion(turn_id) == (turn_id, True)
            turn = await s.turn(turn_id)
    refused = result(turn, "c2")
    assert refused["ok"] is False
    assert refused["output"] == (
        "calc.py changed on disk since you last read it (the person or a command changed "
        "it); read_file it again and redo your change on what is there now"
    )
    assert result(turn, "c4") == {"ok": True, "output": "edited calc.py at line 2"}
    assert (ws / "calc.py").read_text() == FIXED
