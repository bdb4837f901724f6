"""The web IDE in Debian's Chromium, against a real hub, a real drone and the scripted model."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from tests.drone.e2e import new_session, running_drone
from tests.fakes.llm_server import ScriptedLLM, text_reply, tool_reply, usage
from tests.harness import HubHarness
from tests.ide.browser import BROWSER, LIVE, open_session, send, shot, sign_in, stored_text, turn_el

pytestmark = BROWSER


async def test_login_failure_register_drone_and_logout(page: Page, hub: HubHarness) -> None:
    await hub.signup("ann")
    await page.goto(hub.url)
    await page.fill("#login-username", "ann")
    await page.fill("#login-password", "wrong")
    await page.click("#login-submit")
    await expect(page.locator("#login-error")).to_have_text("Wrong username or password.")

    await sign_in(page, hub)
    await expect(page.locator("#drone-hint")).to_contain_text("No drones yet")
    await expect(page.locator(".empty-hint")).to_contain_text("GADGET_LLM_BASE_URL")
    await page.fill("#project-name", "calc")
    await page.click("#project-create")
    await expect(page.locator("#project-select option:checked")).to_have_text("calc")
    await page.click("#drone-register-panel summary")
    await page.fill("#drone-name", "laptop")
    await page.click("#drone-register")
    command = page.locator("#drone-command")
    await expect(command).to_contain_text(f"gadget drone --hub {hub.url} --id ")
    assert " --key " in await command.inner_text()
    await expect(page.locator(".drone[data-online=false] .drone-name")).to_have_text("laptop")
    await expect(page.locator("#drone-hint")).to_contain_text("No drone is online")
    await expect(page.locator("#lock-button")).to_be_disabled()
    await shot(page, "register-drone")

    await page.click("#logout")
    await expect(page.locator("#login-view")).to_be_visible()
    assert await page.evaluate("localStorage.getItem('gadget.token')") is None


async def test_prompt_streams_thinking_tools_and_markdown(
    page: Page, hub: HubHarness, ws: Path
) -> None:
    check = "python3 -c 'import calc; print(calc.add(2, 3))'"
    answer = "Fixed **add**:\n\n```python\ndef add(a, b):\n    return a + b\n```\n"
    script = [
        tool_reply(("c1", "read_file", {"path": "calc.py"}), reasoning_text="Let me look at calc.py first.",
                   pieces=8, chunk_delay_s=0.1, usage=usage(812, 41)),
        tool_reply(("c2", "edit_file", {"path": "calc.py", "old": "a - b", "new": "a + b"}), chunk_delay_s=0.05,
                   usage=usage(905, 58)),
        tool_reply(("c3", "run_command", {"command": check}), chunk_delay_s=0.05, usage=usage(1010, 37)),
        text_reply(answer, reasoning_text="It works.", pieces=16, chunk_delay_s=0.15, usage=usage(1102, 64)),
    ]  # fmt: skip
    async with ScriptedLLM(script) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await open_session(page, s)
            turn_id = await send(page, "fix add")
            # Everything shows up while the turn is still running.
            live = page.locator(LIVE)
            await expect(live.locator(".block-thinking").first).to_contain_text("Let me look")
            await expect(live.locator(".tool-card[data-tool=read_file]")).to_be_visible()
            await expect(live.locator(".block-responding")).to_contain_text("Fixed")
            await expect(page.locator("#cancel")).to_be_visible()
            await shot(page, "streaming")
            turn = turn_el(page, turn_id)
            await expect(turn).to_have_attribute("data-status", "finished", timeout=20_000)
            stored = await s.turn(turn_id)
            await expect(page.locator("#cancel")).to_be_hidden()
            edit = turn.locator(".tool-card[data-tool=edit_file]")
            await edit.locator("summary").click()
            await expect(edit.locator(".diff-line.del")).to_have_text("- a - b")
            await expect(edit.locator(".diff-line.add")).to_have_text("+ a + b")
            run = turn.locator(".tool-card[data-tool=run_command]")
            await run.locator("summary").click()
            await expect(run.locator("summary .chip")).to_have_text("exit 0")
            await expect(run.locator(".terminal")).to_contain_text("5")
            await expect(turn.locator(".block-responding strong")).to_have_text("add")
            keyword = turn.locator(".block-responding pre code.hljs .hljs-keyword").first
            await expect(keyword).to_have_text("def")
            await expect(page.locator("#status-line")).to_have_text(
                re.compile(r"^Turn finished in ")
            )
            await expect(turn.locator(".turn-usage")).to_have_text(
                re.compile(r"^3,829 in · 200 out tokens · 4 model calls \(")
            )
            # docs/screenshot.png, with the drone still online and the whole turn in view.
            await page.set_viewport_size({"width": 1280, "height": 1000})
            await shot(page, "finished-turn")
    # The live view and the stored turn agree.
    thinking = await turn.locator(".thinking-text").all_text_contents()
    assert thinking == stored_text(stored, "thinking")
    assert await turn.locator(".tool-card").count() == len(stored["toolCalls"]) == 3


async def test_model_and_tool_output_is_inert(page: Page, hub: HubHarness, ws: Path) -> None:
    evil = (
        "Look: <script>window.__xss = 'script'</script>\n\n"
        '<img src="x" onerror="window.__xss = \'img\'">\n\n'
        "[click me](javascript:window.__xss='link')\n\n"
        '<a href="#" onclick="window.__xss=\'onclick\'">anchor</a>\n\n'
        "<iframe srcdoc=\"<script>parent.__xss='iframe'</script>\"></iframe>\n\n"
        '<div style="position:fixed;inset:0">cover</div> end.'
    )
    echo = "echo '<img src=x onerror=window.__xss=1>'"
    script = [
        tool_reply(("c1", "run_command", {"command": echo}), reasoning_text="<b>bold?</b><script>window.__xss=2</script>"),
        text_reply(evil),
    ]  # fmt: skip
    async with ScriptedLLM(script) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await open_session(page, s)
            turn_id = await send(page, "<img src=x onerror=window.__xss=3>")
            turn = turn_el(page, turn_id)
            await expect(turn).to_have_attribute("data-status", "finished")

    await expect(turn.locator(".block-responding")).to_contain_text("Look:")
    await turn.locator(".tool-card summary").click()
    await turn.locator(".block-thinking summary").click()
    await expect(turn.locator(".terminal")).to_contain_text("<img src=x onerror=window.__xss=1>")
    await expect(turn.locator(".thinking-text")).to_have_text(
        "<b>bold?</b><script>window.__xss=2</script>"
    )
    await expect(turn.locator(".prompt-text")).to_have_text("<img src=x onerror=window.__xss=3>")
    await page.locator(".block-responding a", has_text="click me").click()
    await page.locator(".block-responding a", has_text="anchor").click()
    await page.wait_for_timeout(200)
    assert await page.evaluate("window.__xss") is None
    dangerous = "script, img, iframe, [onerror], [onclick], [style], a[href^='javascript']"
    assert await page.locator(".turns").locator(dangerous).count() == 0
    await shot(page, "inert-output")


async def test_unreachable_model_shows_the_drones_advice(
    page: Page, hub: HubHarness, ws: Path
) -> None:
    async with ScriptedLLM() as llm:
        url = llm.base_url  # closed at once: nothing listens there any more
    s = await new_session(hub, ScriptedLLM(), ws, llm_base_url=url, llm_retries=1)
    async with running_drone(s.settings):
        await sign_in(page, hub)
        # Before any prompt, the drone list and the first steps say how to configure a model.
        warning = page.locator(f'.drone[data-drone-id="{s.drone_id}"] .model-warning')
        await expect(warning).to_contain_text(f"cannot reach the model at {url}")
        await expect(warning).to_contain_text("GADGET_LLM_BASE_URL")
        tip = page.locator(".empty-hint")
        await expect(tip).to_contain_text('"box" cannot reach its model.')
        await expect(tip).to_contain_text("GADGET_LLM_BASE_URL")
        await page.click("#new-session")
        await expect(page.locator("#prompt")).to_be_enabled()
        turn_id = await send(page, "hello")
        error = turn_el(page, turn_id).locator(".turn-error")
        await expect(error).to_contain_text(f"cannot reach the model at {url}")
    await expect(error).to_contain_text("GADGET_LLM_BASE_URL")
    await shot(page, "model-unreachable")


def long_reply(words: int = 60, delay: float = 0.08) -> Any:
    text = " ".join(f"word{i}" for i in range(words)) + "."
    return text, text_reply(
        text, reasoning_text="Thinking it over slowly.", pieces=words, chunk_delay_s=delay
    )


async def test_reload_mid_turn_shows_the_turn_and_keeps_streaming(
    page: Page, hub: HubHarness, ws: Path
) -> None:
    text, reply = long_reply()
    async with ScriptedLLM([reply]) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await open_session(page, s)
            turn_id = await send(page, "talk slowly")
            await expect(page.locator(f"{LIVE} .block-responding")).to_contain_text("word10")
            await page.reload()
            turn = turn_el(page, turn_id)
            # Right after the reload: the prompt and what was streamed so far, still running.
            await expect(turn.locator(".prompt-text")).to_have_text("talk slowly")
            await expect(turn.locator(".block-responding")).to_contain_text("word10")
            await expect(turn).to_have_attribute("data-status", "processing")
            await expect(page.locator("#cancel")).to_be_visible()
            await expect(turn).to_have_attribute("data-status", "finished", timeout=20_000)
            stored = await s.turn(turn_id)
    assert stored_text(stored, "responding") == [text]
    assert await turn.locator(".block-responding").all_inner_texts() == [text]
    assert await turn.locator(".block-thinking").count() == 1


async def test_dropped_connection_reconnects_and_misses_nothing(
    page: Page, hub: HubHarness, ws: Path
) -> None:
    text, reply = long_reply()
    async with ScriptedLLM([reply]) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await open_session(page, s)
            turn_id = await send(page, "talk slowly")
            await expect(page.locator(f"{LIVE} .block-responding")).to_contain_text("word5")
            await page.context.set_offline(True)
            await expect(page.locator("#banner")).to_contain_text("reconnecting")
            await shot(page, "connection-lost")
            await page.wait_for_timeout(1500)  # deltas streamed meanwhile are missed live
            await page.context.set_offline(False)
            await expect(page.locator("#connection")).to_have_text("online", timeout=15_000)
            turn = turn_el(page, turn_id)
            await expect(turn).to_have_attribute("data-status", "finished", timeout=20_000)
    assert await turn.locator(".block-responding").all_inner_texts() == [text]


async def test_subagent_streams_inside_its_tool_card(page: Page, hub: HubHarness, ws: Path) -> None:
    script = [
        tool_reply(("t1", "task", {"description": "inspect", "prompt": "What does add do?"})),
        tool_reply(("s1", "read_file", {"path": "calc.py"}), reasoning_text="Child reads the file.",
                   pieces=6, chunk_delay_s=0.15),
        text_reply("add subtracts.", reasoning_text="Seen it.", pieces=6, chunk_delay_s=0.15),
        text_reply("The subagent found that add subtracts."),
    ]  # fmt: skip
    async with ScriptedLLM(script) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await open_session(page, s)
            turn_id = await send(page, "investigate add")
            card = page.locator('.tool-card[data-call-id="t1"]')
            running = card.locator(".subagent-card[data-state=running]")
            await expect(running.locator(".sub-thinking").first).to_contain_text("Child reads")
            await expect(running.locator(".sub-tool[data-tool=read_file]")).to_be_visible()
            await shot(page, "subagent-streaming")
            turn = turn_el(page, turn_id)
            await expect(turn).to_have_attribute("data-status", "finished")
    await expect(card).to_have_attribute("data-tool", "task")
    await expect(card.locator(".subagent-head")).to_contain_text("inspect")
    await expect(card.locator(".sub-response")).to_have_text("add subtracts.")
    await expect(turn.locator(".block-responding")).to_have_text(
        "The subagent found that add subtracts."
    )
    # The hub kept the subagent's stream: after a reload the card shows its steps again.
    await page.reload()
    card = turn_el(page, turn_id).locator('.tool-card[data-call-id="t1"]')
    await expect(card.locator(".sub-response")).to_have_text("add subtracts.")
    await expect(card.locator(".sub-tool[data-tool=read_file]")).to_have_count(1)
    await expect(card.locator(".sub-thinking").first).to_contain_text("Child reads")


async def test_phone_width_and_keyboard(page: Page, hub: HubHarness, ws: Path) -> None:
    async with ScriptedLLM([text_reply("Hi there.")]) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await page.set_viewport_size({"width": 390, "height": 844})
            await sign_in(page, hub)
            await expect(page.locator("#sidebar")).not_to_be_in_viewport()
            await page.click("#sidebar-toggle")
            await expect(page.locator("#sidebar")).to_be_in_viewport()
            await expect(page.locator("#new-session")).to_be_enabled()
            await page.focus("#new-session")
            await page.keyboard.press("Enter")  # a real button: the keyboard works
            await expect(page.locator("#sidebar")).not_to_be_in_viewport()
            await expect(page.locator("#prompt")).to_be_focused()
            await page.keyboard.type("hello")
            await page.keyboard.press("Shift+Enter")
            await page.keyboard.type("again")
            await expect(page.locator("#prompt")).to_have_value("hello\nagain")
            await page.keyboard.press("Enter")
            await expect(
                page.locator(".turn[data-status=finished] .block-responding")
            ).to_have_text("Hi there.")
            await shot(page, "phone")
    widths = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"horizontal overflow at phone width: {json.dumps(widths)}"


async def test_reload_with_the_drone_away_shows_history_then_reopens(
    page: Page, hub: HubHarness, ws: Path
) -> None:
    async with ScriptedLLM([text_reply("First answer."), text_reply("Second answer.")]) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await open_session(page, s)
            await send(page, "one")
            await expect(page.locator(".turn[data-status=finished]")).to_have_count(1)
        await expect(page.locator(".drone[data-online=false]")).to_be_visible()
        await page.reload()
        await expect(page.locator(".turn .block-responding")).to_have_text("First answer.")
        await expect(page.locator("#session-title")).to_contain_text("waiting for the drone")
        await expect(page.locator("#prompt")).to_be_disabled()
        async with running_drone(s.settings):
            await expect(page.locator("#prompt")).to_be_enabled()
            await send(page, "two")
            await expect(page.locator(".turn[data-status=finished]")).to_have_count(2)
    await expect(page.locator(".turn .block-responding").last).to_have_text("Second answer.")
