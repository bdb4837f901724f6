"""Issue 10 in the web IDE with a real drone: the real hub, `gadget drone`'s agent in this
process and the scripted model. A command in "ask" mode waits for the card; Undo and
Re-apply change the real workspace."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Page, expect

from tests.drone.e2e import new_session, running_drone
from tests.fakes.llm_server import ScriptedLLM, text_reply, tool_reply, usage
from tests.harness import HubHarness
from tests.ide.browser import BROWSER, open_session, send, shot, turn_el
from tests.ide.test_web_agent import needs

pytestmark = BROWSER

CALC = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"


@needs("toolApproval", "answerApproval", "setPermissionMode", "usage")
async def test_ask_mode_holds_a_real_command_until_allowed_and_a_denied_one_never_runs(
    page: Page, hub: HubHarness, ws: Path
) -> None:
    allowed, denied = "echo approved > proof.txt", "echo nope > denied.txt"
    script = [
        tool_reply(("c1", "run_command", {"command": allowed}), usage=usage(100, 10)),
        tool_reply(("c2", "run_command", {"command": denied}), usage=usage(120, 12)),
        text_reply("One ran, one was refused.", usage=usage(140, 8)),
    ]
    async with ScriptedLLM(script) as llm:
        # Prices per million tokens: 360 in and 30 out cost $0.00102.
        s = await new_session(hub, llm, ws, llm_price_input=2.0, llm_price_output=10.0)
        async with running_drone(s.settings):
            await open_session(page, s)
            await page.select_option("#permission-select", "ask")
            await expect(page.locator("#status-line")).to_have_text("Permissions: ask.")
            turn_id = await send(page, "write the proof")
            turn = turn_el(page, turn_id)
            card = turn.locator(".approval-card")
            await expect(card.locator(".approval-command")).to_have_text(f"$ {allowed}")
            assert not (ws / "proof.txt").exists()  # the drone waits for the person
            # The drone keeps waiting across a reload; the card comes back.
            await page.reload()
            await expect(card.locator(".approval-command")).to_have_text(f"$ {allowed}")
            await shot(page, "approval-drone")
            await card.locator(".approval-allow").click()
            ran = turn.locator('.tool-card[data-call-id="c1"]')
            await expect(ran).to_have_attribute("data-state", "ok")
            await expect(ran.locator(".chip.approval")).to_have_text("allowed by ann")

            await expect(card.locator(".approval-command")).to_have_text(f"$ {denied}")
            await card.locator(".approval-deny").click()
            refused = turn.locator('.tool-card[data-call-id="c2"]')
            await expect(refused).to_have_attribute("data-state", "refused")
            await expect(refused.locator(".chip.approval")).to_have_text("denied by ann")
            await expect(turn).to_have_attribute("data-status", "finished", timeout=20_000)
            await expect(turn.locator(".turn-usage")).to_have_text(
                re.compile(r"^360 in · 30 out tokens · 3 model calls \(.+\) · \$0\.0010$")
            )
            await expect(page.locator("#session-usage")).to_have_text(
                re.compile(r"^Session: 360 in · 30 out tokens · 3 model calls")
            )
    assert (ws / "proof.txt").read_text() == "approved\n"
    assert not (ws / "denied.txt").exists()


@needs("turnChanges", "revertTurn", "turnReverted")
async def test_changes_panel_and_undo_restore_the_workspace_but_not_a_file_changed_since(
    page: Page, hub: HubHarness, ws: Path
) -> None:
    (ws / "old.txt").write_text("to be removed\n")
    command = "printf 'one\\ntwo\\n' > notes.txt && rm old.txt"
    script = [
        tool_reply(("c0", "read_file", {"path": "calc.py"})),  # edits need a read first
        tool_reply(("c1", "edit_file", {"path": "calc.py", "old": "a - b", "new": "a + b"})),
        tool_reply(("c2", "run_command", {"command": command})),
        text_reply("Fixed add, wrote notes, removed old.txt."),
    ]
    async with ScriptedLLM(script) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await open_session(page, s)
            turn_id = await send(page, "fix add, write notes, drop old.txt")
            turn = turn_el(page, turn_id)
            await expect(turn).to_have_attribute("data-status", "finished", timeout=20_000)
            panel = turn.locator(".turn-changes")
            await expect(panel.locator(".changes-total")).to_have_text("3 files · +3 \u22122")
            rows = await panel.locator(".change summary").all_inner_texts()
            assert sorted(r.split("\n")[:4] for r in rows) == [
                ["A", "notes.txt", "+2", "\u22120"],
                ["D", "old.txt", "+0", "\u22121"],
                ["M", "calc.py", "+1", "\u22121"],
            ]
            calc = panel.locator('.change[data-path="calc.py"]')
            await calc.locator("summary").click()
            await expect(calc.locator(".diff-line.del")).to_have_text(["-    return a - b"])
            await expect(calc.locator(".diff-line.add")).to_have_text(["+    return a + b"])
            await shot(page, "changes-panel")

            (ws / "notes.txt").write_text("my own notes\n")  # after the turn: not to be undone
            await panel.locator(".changes-undo").click()
            await expect(panel).to_have_attribute("data-reverted", "true")
            await expect(panel.locator('.change[data-path="notes.txt"] .chip.warn')).to_have_text(
                "not restored"
            )
            await expect(panel.locator(".changes-conflicts")).to_contain_text("notes.txt")
            await expect(page.locator("#status-line")).to_have_text(
                "Turn undone (2 files); 1 changed since, left as they are."
            )
            assert (ws / "calc.py").read_text() == CALC
            assert (ws / "old.txt").read_text() == "to be removed\n"
            assert (ws / "notes.txt").read_text() == "my own notes\n"

            await page.reload()  # the hub keeps the turn reverted
            await expect(panel.locator(".changes-undo")).to_have_text("Re-apply")
            await panel.locator(".changes-undo").click()
            await expect(panel).to_have_attribute("data-reverted", "false")
            await expect(panel.locator(".changes-undo")).to_have_text("Undo turn")
            assert (ws / "calc.py").read_text() == FIXED
            assert not (ws / "old.txt").exists()
