"""The agent under the user's control in the web IDE (issue 10), through the real hub.

A scripted drone socket plays the drone (its events and acks are the wire's, with the
marks the test chooses): approval cards, notifications, the Changes panel and Undo,
usage, permission modes, the model picker and MCP servers.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from gadget.protocol import DroneEvent, HubEvent, IdeEvent
from tests.harness import HubHarness
from tests.ide.browser import (
    BROWSER,
    ScriptedDrone,
    Tap,
    open_session,
    scripted_drone,
    send,
    shot,
    sign_in,
    turn_el,
)

pytestmark = BROWSER

KNOWN = {str(e) for e in (*IdeEvent, *DroneEvent, *HubEvent)}


@pytest.fixture
async def hub(
    hub_factory: Callable[..., AbstractAsyncContextManager[HubHarness]],
) -> AsyncIterator[HubHarness]:
    """A hub whose new sessions start in "ask", the product's default (test hubs: "auto")."""
    async with hub_factory(default_permission_mode="ask") as h:
        yield h


def needs(*events: str) -> pytest.MarkDecorator:
    """Skip until the hub handles `events` (the hub/drone side of issue 10 lands them)."""
    missing = sorted(set(events) - KNOWN)
    return pytest.mark.skipif(bool(missing), reason=f"the hub does not handle {missing} yet")


#: In the page: a Notification that records what it was asked to show, and a tab that
#: is hidden while `window.__hidden` is true.
NOTIFICATIONS = """
window.__notes = [];
window.Notification = class {
  constructor(title, options) { window.__notes.push({ title, ...options }); }
  close() {}
  static permission = "granted";
  static requestPermission() { return Promise.resolve("granted"); }
};
Object.defineProperty(document, "visibilityState", {
  configurable: true, get: () => (window.__hidden ? "hidden" : "visible"),
});
"""

DIFF = """diff --git a/calc.py b/calc.py
index 1111111..2222222 100644
--- a/calc.py
+++ b/calc.py
@@ -1,2 +1,2 @@
 def add(a, b):
-    return a - b
+    return a + b
"""


def ok(output: str, **extra: Any) -> str:
    """A tool result as the drone sends it."""
    return json.dumps({"ok": True, "output": output, **extra})


async def ask(
    d: ScriptedDrone,
    turn: str,
    seq: int,
    call: str,
    name: str,
    server: str | None = None,
    **params: Any,
) -> None:
    """The drone asks before running `name` (an MCP tool names its `server`)."""
    payload = {"turnId": turn, "callId": call, "name": name, "parameters": json.dumps(params)}
    if server is not None:
        payload["server"] = server
    await d.say("toolApproval", payload, turn=turn, seq=seq)


async def decisions(d: ScriptedDrone, count: int) -> list[dict[str, Any]]:
    """The first `count` approvalDecision events the drone got."""
    log = d.client.log
    await log.wait_for("approvalDecision", lambda _: len(log.of("approvalDecision")) >= count)
    return [args[0] for args in log.of("approvalDecision")]


@needs("toolApproval", "answerApproval", "approvalDecision")
async def test_approval_card_reload_second_tab_first_answer_and_notification(
    browser: Browser, page: Page, hub: HubHarness
) -> None:
    d = await scripted_drone(hub)
    await page.add_init_script(NOTIFICATIONS)
    await open_session(page, d)
    await expect(page.locator("#permission-select")).to_have_value("ask")
    turn_id = await send(page, "clean and build")
    assert await d.work_order() == turn_id
    turn = turn_el(page, turn_id)
    card = turn.locator(".approval-card")

    command = "rm -rf build && make -j2"
    await ask(d, turn_id, 1, "c1", "run_command", command=command)
    await expect(card.locator(".approval-command")).to_have_text(f"$ {command}")
    await expect(turn.locator(".turn-footer")).to_contain_text("Waiting for your approval")
    await expect(page).to_have_title("Approval needed · Gadget Code")
    assert await page.evaluate("window.__notes") == []  # the tab is visible
    await shot(page, "approval-card")

    # A reload shows it again (turnSnapshot.pendingApproval).
    await page.reload()
    await expect(card.locator(".approval-command")).to_have_text(f"$ {command}")

    # A second tab shows it too; its approvalDecision is held back so its card stays.
    other = await browser.new_page(viewport={"width": 1280, "height": 800})
    tap = Tap(rule=lambda f: "hold" if f.name == "approvalDecision" else "pass")
    await tap.install(other)
    await sign_in(other, hub)
    await other.locator(".session-pick", has_text="clean and build").click()
    theirs = turn_el(other, turn_id).locator(".approval-card")
    await expect(theirs.locator(".approval-command")).to_have_text(f"$ {command}")

    await card.locator(".approval-allow").click()
    assert await decisions(d, 1) == [{"turnId": turn_id, "callId": "c1", "decision": "allow"}]
    await expect(card).to_have_count(0)
    await expect(page.locator("#status-line")).to_have_text("Allowed: run_command.")
    # The second tab answers too late: the first answer won.
    await theirs.locator(".approval-deny").click()
    await expect(other.locator("#status-line")).to_have_text(
        "run_command was already answered (in another tab)."
    )
    await expect(theirs).to_have_count(0)
    tap.release()
    tap.rule = lambda _: "pass"
    assert len(d.client.log.of("approvalDecision")) == 1

    params = json.dumps({"command": command})
    await d.say("toolCall", "c1", "run_command", params, ok(f"$ {command}\n[exit code: 0]"),
                turn=turn_id, seq=2)  # fmt: skip
    tool = turn.locator('.tool-card[data-call-id="c1"]')
    await expect(tool.locator(".chip.approval")).to_have_text("allowed by ann")

    # Hidden tab: the browser notifies; the card shows the edit's diff.
    await page.evaluate("window.__hidden = true")
    await ask(d, turn_id, 3, "c2", "edit_file", path="calc.py", old="a - b", new="a + b")
    await expect(card.locator(".diff-line.del")).to_have_text("- a - b")
    await expect(card.locator(".diff-line.add")).to_have_text("+ a + b")
    # The other tab shows it too, and drops it when this one answers.
    their_edit = turn_el(other, turn_id).locator('.approval-card[data-call-id="c2"]')
    await expect(their_edit.locator(".diff-line.add")).to_have_text("+ a + b")
    notes = await page.evaluate("window.__notes")
    assert notes == [
        {"title": "Gadget Code: approval needed", "body": "edit_file: calc.py",
         "tag": "gadget-approval-c2"},
    ]  # fmt: skip
    await page.evaluate("window.__hidden = false")
    await card.locator(".approval-deny").click()
    assert (await decisions(d, 2))[1]["decision"] == "deny"
    await expect(their_edit).to_have_count(0)
    await other.close()
    refused = json.dumps({"ok": False, "output": "The user refused this call.", "refused": True})
    edit = json.dumps({"path": "calc.py", "old": "a - b", "new": "a + b"})
    await d.say("toolCall", "c2", "edit_file", edit, refused, turn=turn_id, seq=4)
    denied = turn.locator('.tool-card[data-call-id="c2"]')
    await expect(denied).to_have_attribute("data-state", "refused")
    await expect(denied.locator(".chip.approval")).to_have_text("denied by ann")

    await ask(d, turn_id, 5, "c3", "write_file", path="notes.md", content="# Notes\n")
    await expect(card.locator("code.path")).to_have_text("notes.md")
    await expect(card.locator("pre code")).to_have_text("# Notes")
    await card.locator(".approval-session").click()
    assert (await decisions(d, 3))[2]["decision"] == "allow-session"
    # An MCP tool: the card names its server and shows the parameters.
    await ask(d, turn_id, 6, "c4", "tracker__create_issue", server="tracker", title="add is wrong")
    await expect(card.locator(".approval-head .chip.server")).to_have_text("tracker")
    await expect(card.locator(".approval-head code.tool-name")).to_have_text(
        "tracker__create_issue"
    )
    await expect(card.locator(".approval-body pre")).to_contain_text('"title": "add is wrong"')
    await card.locator(".approval-allow").click()
    assert (await decisions(d, 4))[3]["decision"] == "allow"
    await d.say("workOrderComplete", turn_id, True, turn=turn_id, seq=7)
    await expect(turn).to_have_attribute("data-status", "finished")
    await expect(page).to_have_title("Gadget Code")
    assert len(await page.evaluate("window.__notes")) == 1

    # The stored turn keeps who answered what; a reload shows it on the cards.
    await page.reload()
    await expect(turn.locator('.tool-card[data-call-id="c1"] .chip.approval')).to_have_text(
        "allowed by ann"
    )
    await expect(turn.locator(".approval-card")).to_have_count(0)


CHANGES = [
    {"path": "calc.py", "status": "modified", "additions": 1, "deletions": 1, "diff": DIFF},
    {"path": "notes/todo.md", "status": "added", "additions": 2, "deletions": 0,
     "diff": "--- /dev/null\n+++ b/notes/todo.md\n@@ -0,0 +1,2 @@\n+one\n+two\n"},
    {"path": "old.txt", "status": "deleted", "additions": 0, "deletions": 3},
]  # fmt: skip


@needs("turnChanges", "revertTurn", "turnReverted", "usage")
async def test_changes_panel_undo_and_reapply_with_a_conflict(
    browser: Browser, page: Page, hub: HubHarness
) -> None:
    d = await scripted_drone(hub)
    await open_session(page, d)
    turn_id = await send(page, "fix add")
    await d.work_order()
    usage = {"turnId": turn_id, "model": "m", "durationMs": 1500}
    await d.say("usage", {**usage, "promptTokens": 1000, "completionTokens": 50},
                turn=turn_id, seq=1)  # fmt: skip
    await d.say("usage", {**usage, "promptTokens": 1200, "completionTokens": 30},
                turn=turn_id, seq=2)  # fmt: skip
    await d.say("turnChanges", turn_id, CHANGES, turn=turn_id, seq=3)
    await d.say("workOrderComplete", turn_id, True, turn=turn_id, seq=4)
    turn = turn_el(page, turn_id)
    await expect(turn).to_have_attribute("data-status", "finished")

    panel = turn.locator(".turn-changes")
    await expect(panel.locator(".changes-total")).to_have_text("3 files · +3 \u22124")
    items = panel.locator(".change")
    await expect(items.locator(".change-path")).to_have_text(
        ["calc.py", "notes/todo.md", "old.txt"]
    )
    await expect(items.locator(".change-status")).to_have_text(["M", "A", "D"])
    calc = panel.locator('.change[data-path="calc.py"]')
    await calc.locator("summary").click()
    await expect(calc.locator(".diff-line.del")).to_have_text(["-    return a - b"])
    await expect(calc.locator(".diff-line.add")).to_have_text(["+    return a + b"])
    await expect(calc.locator(".diff-line.hunk")).to_have_text(["@@ -1,2 +1,2 @@"])
    await expect(turn.locator(".turn-usage")).to_have_text(
        "2,200 in · 80 out tokens · 2 model calls (3.0 s)"
    )
    await expect(page.locator("#session-usage")).to_have_text(
        "Session: 2,200 in · 80 out tokens · 2 model calls (3.0 s)"
    )

    # A second tab sees the undo as it happens (turnReverted).
    other = await browser.new_page(viewport={"width": 1280, "height": 800})
    await sign_in(other, hub)
    await other.locator(".session-pick", has_text="fix add").click()
    their_panel = turn_el(other, turn_id).locator(".turn-changes")
    await expect(their_panel).to_have_attribute("data-reverted", "false")

    conflict = {"path": "notes/todo.md", "reason": "changed since the turn"}
    d.revert_reply = [True, {"reverted": True, "conflicts": [conflict],
                             "restored": ["calc.py", "old.txt"]}]  # fmt: skip
    await panel.locator(".changes-undo").click()
    await d.client.log.wait_for("revertTurn")
    assert d.client.log.of("revertTurn") == [(turn_id,)]
    await expect(panel).to_have_attribute("data-reverted", "true")
    await expect(panel.locator(".chip.undone")).to_have_text("undone")
    await expect(panel.locator(".changes-undo")).to_have_text("Re-apply")
    await expect(panel.locator('.change[data-path="notes/todo.md"] .chip.warn')).to_have_text(
        "not restored"
    )
    await expect(panel.locator(".changes-conflicts")).to_contain_text("notes/todo.md")
    await expect(page.locator("#status-line")).to_have_text(
        "Turn undone (2 files); 1 changed since, left as they are."
    )
    await expect(their_panel).to_have_attribute("data-reverted", "true")
    await expect(their_panel.locator(".changes-conflicts")).to_contain_text("notes/todo.md")
    await shot(page, "changes-undone")
    await other.close()

    # The hub keeps `reverted`: a reload offers Re-apply.
    await page.reload()
    await expect(panel).to_have_attribute("data-reverted", "true")
    d.revert_reply = [True, {"reverted": False, "conflicts": [], "restored": ["calc.py"]}]
    await panel.locator(".changes-undo").click()
    await expect(panel).to_have_attribute("data-reverted", "false")
    await expect(panel.locator(".changes-undo")).to_have_text("Undo turn")
    await expect(panel.locator(".changes-conflicts")).to_have_count(0)

    # The drone's refusal is shown with its reason.
    d.revert_reply = [False, "the workspace is in user mode"]
    await panel.locator(".changes-undo").click()
    await expect(page.locator("#alerts .alert span")).to_have_text(
        "Could not undo the turn: the workspace is in user mode"
    )

    # While a turn runs, Undo waits.
    second = await send(page, "more")
    await d.work_order(2)
    await expect(panel.locator(".changes-undo")).to_be_disabled()
    await expect(panel.locator(".changes-undo")).to_have_attribute(
        "title", "A turn is running: undo once it ends."
    )
    await d.say("workOrderComplete", second, True, turn=second, seq=1)
    await expect(panel.locator(".changes-undo")).to_be_enabled()


MODELS = ["qwen3:8b", "llama3.1:8b"]
MCP = [
    {"name": "fs", "ok": True, "tools": 3},
    {"name": "broken", "ok": False, "error": "exited with status 1", "tools": 0},
]


@needs("setPermissionMode", "permissionModeChanged", "setModel")
async def test_permission_mode_model_picker_and_mcp_servers(
    browser: Browser, page: Page, hub: HubHarness
) -> None:
    d = await scripted_drone(hub, models=MODELS, mcp=MCP)
    await sign_in(page, hub)
    card = page.locator(f'.drone[data-drone-id="{d.drone_id}"]')
    await expect(card.locator('.mcp-server[data-server="fs"]')).to_have_text("fs · 3 tools")
    await expect(card.locator('.mcp-server[data-server="broken"]')).to_have_text(
        "⚠ broken: exited with status 1"
    )
    await page.click("#new-session")
    select = page.locator("#permission-select")
    await expect(select).to_have_value("ask")
    await expect(select).to_be_enabled()

    turn_id = await send(page, "look around")
    await d.work_order()
    other = await browser.new_page(viewport={"width": 1280, "height": 800})
    await sign_in(other, hub)
    await other.locator(".session-pick", has_text="look around").click()
    await expect(other.locator("#permission-select")).to_have_value("ask")

    # Changed mid-turn: the drone is told, and every tab of the session shows it.
    await select.select_option("read-only")
    await expect(page.locator("#status-line")).to_have_text("Permissions: read-only.")
    told = await d.client.log.wait_for("setPermissionMode")
    assert told[0] == {"turnId": turn_id, "mode": "read-only"}
    await expect(other.locator("#permission-select")).to_have_value("read-only")

    # An MCP tool's card names its server.
    await d.say("toolCall", "m1", "fs__read_file", json.dumps({"path": "a.txt"}),
                ok("hello", server="fs"), turn=turn_id, seq=1)  # fmt: skip
    tool = turn_el(page, turn_id).locator('.tool-card[data-call-id="m1"]')
    await expect(tool).to_have_attribute("data-server", "fs")
    await expect(tool.locator(".chip.server")).to_have_text("fs")
    await d.say("workOrderComplete", turn_id, True, turn=turn_id, seq=2)
    await expect(turn_el(page, turn_id)).to_have_attribute("data-status", "finished")

    # The model picker lists the drone's models; the next work order carries the choice.
    models = page.locator("#model-select")
    await expect(models.locator("option")).to_have_text(["default", *MODELS])
    await models.select_option("llama3.1:8b")
    await expect(page.locator("#status-line")).to_have_text(
        "Model: llama3.1:8b (from the next prompt)."
    )
    await expect(other.locator("#model-select")).to_have_value("llama3.1:8b")  # modelChanged
    await other.close()
    await send(page, "again")
    await d.work_order(2)
    chat = d.client.log.of("processWorkOrder")[1][2]
    assert (chat["permissionMode"], chat["model"]) == ("read-only", "llama3.1:8b")
    await shot(page, "session-controls")

    # A reload reads both back from the chat session.
    await page.reload()
    await expect(select).to_have_value("read-only")
    await expect(models).to_have_value("llama3.1:8b")
    await expect(page.locator("#status-line")).not_to_have_text(re.compile("Could not"))
