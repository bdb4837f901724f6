"""The web IDE's controls say what they cannot do: workspace modes, sending, sessions, cancel."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from tests.drone.e2e import new_session, running_drone
from tests.fakes.llm_server import ScriptedLLM, text_reply
from tests.harness import HubHarness
from tests.ide.browser import (
    BROWSER,
    LIVE,
    box,
    drone_card,
    open_session,
    overlap,
    send,
    shot,
    sign_in,
    turn_el,
)

pytestmark = BROWSER

MENU = "#mode-select option:not([disabled]):not([hidden])"


async def chat_session_id(page: Page) -> str:
    """The chat session the page holds (the lock it keeps for a reload)."""
    value = await page.evaluate("JSON.parse(localStorage.getItem('gadget.lock')).chatSession")
    assert isinstance(value, str)
    return value


async def test_workspace_menu_offers_idle_and_user_and_shows_refusals(
    page: Page, hub: HubHarness, ws: Path
) -> None:
    async with ScriptedLLM([text_reply("still going", hang=True)]) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await open_session(page, s)
            # Only a work order enters agent mode: the menu does not offer it.
            assert await page.locator(MENU).evaluate_all("os => os.map(o => o.value)") == [
                "idle",
                "user",
            ]
            # A menu that offered it anyway (an older page, another client): the drone's
            # reason is shown, and the menu goes back to the mode the drone is in.
            await page.evaluate(
                "() => { const o = document.querySelector('#mode-select option[value=agent]');"
                " o.disabled = false; o.hidden = false; }"
            )
            await page.select_option("#mode-select", "agent")
            refusal = re.compile(
                r"^Workspace mode unchanged \(idle\): .*agent mode starts with a work order\.$"
            )
            await expect(page.locator("#status-line")).to_have_text(refusal)
            await expect(page.locator("#alerts .alert span")).to_have_text(refusal)
            await expect(page.locator("#mode-select")).to_have_value("idle")
            # While a turn runs, agent mode is shown as the drone's state, not as a choice.
            await send(page, "work")
            await expect(page.locator(f"{LIVE} .block-responding")).to_have_text("still going")
            await expect(page.locator("#mode-select")).to_have_value("agent")
            await expect(page.locator("#mode-select")).to_be_disabled()
            await page.click("#cancel")
            await expect(page.locator("#mode-select")).to_have_value("idle")
            await expect(page.locator("#mode-select")).to_be_enabled()


async def test_user_mode_disables_sending_and_says_why(
    page: Page, hub: HubHarness, ws: Path
) -> None:
    async with ScriptedLLM([text_reply("Back to work.")]) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await open_session(page, s)
            await page.select_option("#mode-select", "user")
            await expect(drone_card(page, s)).to_have_attribute("data-mode", "user")
            await expect(page.locator("#status-line")).to_have_text("Workspace mode: user.")
            await expect(page.locator("#send")).to_be_disabled()
            hint = page.locator("#composer-hint")
            await expect(hint).to_be_visible()
            await expect(hint).to_contain_text("user mode")
            await expect(hint).to_contain_text("switch Workspace to idle")
            # Enter does not send either: no turn is created.
            await page.fill("#prompt", "hello")
            await page.press("#prompt", "Enter")
            await shot(page, "user-mode")
            r = await hub.http.get(
                f"/api/chat-sessions/{await chat_session_id(page)}/turns",
                headers=hub.bearer(s.token),
            )
            assert r.status_code == 200 and r.json() == [], r.text
            await expect(page.locator(".turn")).to_have_count(0)
            await expect(page.locator("#prompt")).to_have_value("hello")  # the draft is kept

            await page.select_option("#mode-select", "idle")
            await expect(page.locator("#send")).to_be_enabled()
            await expect(hint).to_be_hidden()
            turn_id = await send(page, "hello")
            await expect(turn_el(page, turn_id)).to_have_attribute("data-status", "finished")


async def test_status_line_says_the_turn_finished_and_how_long_it_took(
    page: Page, hub: HubHarness, ws: Path
) -> None:
    async with ScriptedLLM([text_reply("Done.", pieces=4, chunk_delay_s=0.1)]) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await open_session(page, s)
            turn_id = await send(page, "quick one")
            turn = turn_el(page, turn_id)
            await expect(turn).to_have_attribute("data-status", "finished")
            # The drone's agent → idle comes after the turn's end and must not replace it.
            await expect(drone_card(page, s)).to_have_attribute("data-mode", "idle")
            took = re.compile(r"^Turn finished in \d+(\.\d)? (ms|s)\.$")
            await expect(page.locator("#status-line")).to_have_text(took)
            await expect(turn.locator(".turn-done")).to_have_text(re.compile(r"^Finished in "))
            await page.reload()
            await expect(turn.locator(".turn-done")).to_have_text(re.compile(r"^Finished in "))


async def test_cancelled_turn_is_shown_as_cancelled_not_failed(
    page: Page, hub: HubHarness, ws: Path
) -> None:
    async with ScriptedLLM([text_reply("I am still talk", hang=True)]) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await open_session(page, s)
            turn_id = await send(page, "talk")
            await expect(page.locator(f"{LIVE} .block-responding")).to_have_text("I am still talk")
            await page.click("#cancel")
            turn = turn_el(page, turn_id)
            await expect(turn).to_have_attribute("data-status", "cancelled")
            await expect(turn.locator(".turn-cancelled")).to_have_text(
                re.compile(r"^Cancelled after ")
            )
            await expect(turn.locator(".turn-error")).to_have_count(0)
            await expect(page.locator("#status-line")).to_have_text(
                re.compile(r"^Turn cancelled after .+\.$")
            )
            await expect(page.locator("#cancel")).to_be_hidden()
            await expect(page.locator("#send")).to_be_enabled()
            await shot(page, "cancelled-turn")
            # The stored turn reads the same after a reload.
            await page.reload()
            await expect(turn).to_have_attribute("data-status", "cancelled")
            await expect(turn.locator(".turn-cancelled")).to_be_visible()
            await expect(turn.locator(".turn-error")).to_have_count(0)


async def test_new_session_while_a_turn_runs_leaves_the_session_as_it_was(
    browser: Browser, page: Page, hub: HubHarness, ws: Path
) -> None:
    async with ScriptedLLM([text_reply("I am still talk", hang=True)]) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await open_session(page, s)
            turn_id = await send(page, "talk")
            await expect(page.locator(f"{LIVE} .block-responding")).to_have_text("I am still talk")
            await expect(page.locator("#new-session")).to_be_disabled()
            await expect(page.locator("#lock-hint")).to_contain_text("A turn is running")
            await expect(page.locator("#session-title")).to_have_text("talk · box")

            # Another tab of the same user tries: the hub refuses (the drone is busy).
            other = await browser.new_page(viewport={"width": 1280, "height": 800})
            await sign_in(other, hub)
            await expect(other.locator("#new-session")).to_be_enabled()
            await other.click("#new-session")
            alert = other.locator("#alerts .alert")
            await expect(alert).to_contain_text("Could not open a new session: ")
            await expect(alert).to_contain_text("busy with a turn of another session")
            await expect(other.locator("#session-title")).to_have_text("No session")
            await expect(other.locator("#status-line")).to_have_text(
                "Could not open a new session."
            )
            # The empty session the refused request left is not listed.
            names = other.locator("#session-list .session-name")
            await expect(names).to_have_text(["talk"])
            # The alert sits clear of the Logs button, which still works.
            assert not overlap(await box(alert), await box(other.locator("#logs-toggle")))
            await other.click("#logs-toggle")
            await expect(other.locator("#logs-drawer")).to_be_visible()
            await shot(other, "refused-new-session")
            await other.close()

            # The first tab still shows its session and its running turn.
            turn = turn_el(page, turn_id)
            await expect(turn).to_have_attribute("data-status", "processing")
            await expect(page.locator("#session-title")).to_have_text("talk · box")
            await expect(page.locator("#session-list .session-name")).to_have_text(["talk"])
            await page.click("#cancel")
            await expect(turn).to_have_attribute("data-status", "cancelled")
            await expect(page.locator("#new-session")).to_be_enabled()
