"""The web IDE's layout and first steps: logs drawer, scrolling, drone cards, tips, phone."""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

from playwright.async_api import Page, expect

from tests.drone.e2e import new_session, running_drone
from tests.fakes.llm_server import ScriptedLLM, text_reply, tool_reply
from tests.harness import HubHarness
from tests.ide.browser import (
    BROWSER,
    PHONE,
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


async def test_logs_drawer_floats_reads_well_and_survives_a_reload(
    page: Page, hub: HubHarness, ws: Path
) -> None:
    script = [
        tool_reply(("c1", "run_command", {"command": "echo hi"})),
        text_reply("Said hi."),
    ]
    async with ScriptedLLM(script) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await open_session(page, s)
            turn_id = await send(page, "say hi")
            await expect(turn_el(page, turn_id)).to_have_attribute("data-status", "finished")
            await expect(page.locator("#log-count")).not_to_have_text("0")
            turns, menu = await box(page.locator("#turns")), await box(page.locator("#mode-select"))

            await page.click("#logs-toggle")
            drawer = page.locator("#logs-drawer")
            await expect(drawer).to_be_visible()
            # At 1280 px the drawer floats over the conversation: nothing is squeezed, and
            # the session bar, the composer and the status line stay clear of it.
            assert await box(page.locator("#turns")) == turns
            assert await box(page.locator("#mode-select")) == menu
            for clear in ("#mode-select", "#release-button", "#send", "#logs-toggle"):
                assert not overlap(await box(drawer), await box(page.locator(clear))), clear
            await page.locator("#mode-select").click(trial=True)

            logs = page.locator("#log-list .log")
            messages = await logs.locator(".log-message").all_inner_texts()
            assert messages, "the turn logged nothing"
            text = await page.locator("#log-list").inner_text()
            assert '{"logger"' not in text and '"logger":' not in text, text
            await expect(logs.locator(".log-logger").first).to_have_text(re.compile(r"^gadget\."))
            await shot(page, "logs-drawer")

            # A reload of the tab shows the session's recent logs again.
            await page.reload()
            await expect(page.locator("#session-title")).to_have_text("say hi · box")
            await page.click("#logs-toggle")
            await expect(logs.locator(".log-message")).to_have_text(messages)


async def test_a_sent_prompt_is_scrolled_into_view(page: Page, hub: HubHarness, ws: Path) -> None:
    script = [
        *(tool_reply((f"c{i}", "run_command", {"command": f"seq {i} 400"})) for i in (1, 2, 3)),
        text_reply("Counted."),
        text_reply("Second answer."),
    ]
    async with ScriptedLLM(script) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await open_session(page, s)
            first = await send(page, "count")
            await expect(turn_el(page, first)).to_have_attribute("data-status", "finished")
            # The reader opens long cards and scrolls up to read them.
            cards = turn_el(page, first).locator(".tool-card[data-tool=run_command]")
            for i in range(3):
                await cards.nth(i).locator("summary").click()
                await expect(cards.nth(i).locator(".terminal")).to_be_visible()
            await page.locator("#turns").evaluate("el => { el.scrollTop = 0; }")
            below = "el => el.scrollHeight - el.clientHeight - el.scrollTop"
            assert await page.locator("#turns").evaluate(below) > 600
            await page.fill("#prompt", "and now?")
            await page.press("#prompt", "Enter")
            second = page.locator(".turn").nth(1)
            await expect(second.locator(".prompt-text")).to_have_text("and now?")
            await expect(second.locator(".turn-prompt")).to_be_in_viewport()
            await expect(second).to_have_attribute("data-status", "finished")
            await expect(second.locator(".block-responding")).to_be_in_viewport()


async def test_first_steps_tip_the_model_only_when_it_is_unreachable_and_name_the_menu(
    page: Page, hub: HubHarness, ws: Path
) -> None:
    async with ScriptedLLM() as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await sign_in(page, hub)
            await expect(drone_card(page, s).locator(".drone-model")).to_have_text(
                re.compile(r"^model: ")
            )
            steps = page.locator(".empty-hint")
            await expect(steps).to_contain_text("Open session")
            await expect(steps).not_to_contain_text("GADGET_LLM_BASE_URL")
            await expect(steps).not_to_contain_text("☰")
            await expect(steps).to_contain_text("in the sidebar")

            await page.set_viewport_size(PHONE)
            await expect(steps).to_contain_text("behind the ☰ menu")
            await expect(steps).to_contain_text("Pick a drone and a project in the ☰ menu")
            await expect(steps).not_to_contain_text("in the sidebar")
            await shot(page, "phone-first-steps")


async def test_offline_drone_card_says_when_it_went_away(
    page: Page, hub: HubHarness, ws: Path
) -> None:
    async with ScriptedLLM() as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await open_session(page, s)
            card = drone_card(page, s)
            await expect(card.locator(".lock-holder")).to_have_text("locked by you")
            await page.wait_for_timeout(1100)  # the drone connected more than a second ago
            stopped = time.time()
        await expect(card).to_have_attribute("data-online", "false")
        for when in ("live", "after a reload"):
            meta = card.locator(".drone-meta")
            await expect(meta).to_contain_text("offline · last seen ")
            seen = await card.get_attribute("data-last-seen")
            assert seen is not None
            assert datetime.fromisoformat(seen.replace("Z", "+00:00")).timestamp() >= stopped - 0.5
            # No mode chip or "idle": the drone is not idle, it is away.
            await expect(card.locator(".chip.mode")).to_have_count(0)
            await expect(card).not_to_contain_text("idle")
            if when == "live":  # the hub keeps the lock while the IDE is there
                await expect(card.locator(".drone-state")).to_have_text("lock kept for you")
                await shot(page, "offline-drone")
            await page.reload()
            await expect(card).to_have_attribute("data-online", "false")


async def test_drone_card_warns_when_commands_run_without_a_sandbox(
    page: Page, hub: HubHarness, ws: Path
) -> None:
    async with ScriptedLLM() as llm:
        s = await new_session(hub, llm, ws)
    await sign_in(page, hub)
    card = drone_card(page, s)
    for sandbox in ("none", "bwrap"):
        # A drone socket that reports its sandbox at connect, as the drone does.
        drone = await hub.connect(
            {"registrationId": s.drone_id, "key": s.settings.drone_key, "sandbox": sandbox}
        )
        await expect(card).to_have_attribute("data-online", "true")
        await expect(card).to_have_attribute("data-sandbox", sandbox)
        chip = card.locator(".sandbox-chip")
        if sandbox == "none":
            await expect(chip).to_have_text("no sandbox")
            await expect(chip).to_have_attribute("title", re.compile("without a sandbox"))
            await shot(page, "no-sandbox")
        else:
            await expect(chip).to_have_count(0)
        await drone.close()
        await expect(card).to_have_attribute("data-online", "false")
