"""The web IDE keeps each turn by the stream's seq: resends, events ahead of a gap, tabs.

A scripted drone socket streams through the real hub; between the hub and the page a
`Tap` passes, drops, holds or doubles the frames, as a network and reconnects can.
"""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, Page, expect

from tests.drone.e2e import new_session, running_drone
from tests.fakes.llm_server import ScriptedLLM, text_reply
from tests.harness import HubHarness
from tests.ide.browser import (
    BROWSER,
    LIVE,
    Frame,
    ScriptedDrone,
    Tap,
    open_session,
    scripted_drone,
    send,
    shot,
    sign_in,
    stored_text,
    turn_el,
)

pytestmark = BROWSER

TRACE = "window.__gadgetTrace = []"


async def received(page: Page, event: str, seq: int) -> int:
    """How many `event` frames numbered `seq` the page's IDE code was handed."""
    count = await page.evaluate(
        """([event, seq]) => window.__gadgetTrace.filter(
            ([name, ...args]) => name === event && args.at(-1)?.seq === seq).length""",
        [event, seq],
    )
    assert isinstance(count, int)
    return count


async def until_received(page: Page, event: str, seq: int) -> None:
    await page.wait_for_function(
        """([event, seq]) => window.__gadgetTrace.some(
            ([name, ...args]) => name === event && args.at(-1)?.seq === seq)""",
        arg=[event, seq],
    )


async def start(page: Page, hub: HubHarness, tap: Tap) -> tuple[ScriptedDrone, str]:
    """A page (tapped, traced) with a session open on a scripted drone, and a turn sent."""
    d = await scripted_drone(hub)
    await tap.install(page)
    await page.add_init_script(TRACE)
    await open_session(page, d)
    turn_id = await send(page, "count")
    assert await d.work_order() == turn_id
    return d, turn_id


async def test_a_resent_event_is_shown_once(page: Page, hub: HubHarness) -> None:
    tap = Tap()
    d, turn_id = await start(page, hub, tap)
    turn = turn_el(page, turn_id)
    text = turn.locator(".block-responding")
    await d.say("response", "one-", turn=turn_id, seq=1)
    await d.say("response", "two-", turn=turn_id, seq=2)
    await expect(text).to_have_text("one-two-")
    # The drone resends what the hub has: the hub drops it.
    await d.say("response", "two-", turn=turn_id, seq=2)
    await d.say("response", "one-", turn=turn_id, seq=1)
    # The page gets an event twice (as across a reconnect): its cursor drops the second.
    tap.rule = lambda f: "twice" if f.seq == 3 else "pass"
    await d.say("response", "three", turn=turn_id, seq=3)
    await d.say("workOrderComplete", turn_id, True, turn=turn_id, seq=4)
    await expect(turn).to_have_attribute("data-status", "finished")
    await expect(text).to_have_text("one-two-three")
    assert [await received(page, "response", n) for n in (1, 2, 3)] == [1, 1, 2]
    await hub.settle()
    assert stored_text(await hub.get_turn(d.token, turn_id), "responding") == ["one-two-three"]


async def test_an_event_ahead_waits_for_the_missing_one(page: Page, hub: HubHarness) -> None:
    tap = Tap(rule=lambda f: "hold" if f.seq == 2 else "pass")
    d, turn_id = await start(page, hub, tap)
    text = turn_el(page, turn_id).locator(".block-responding")
    for seq, piece in enumerate(["one-", "two-", "three"], start=1):
        await d.say("response", piece, turn=turn_id, seq=seq)
    await until_received(page, "response", 3)
    await expect(text).to_have_text("one-")  # three waits for two
    tap.rule = lambda _: "pass"
    tap.release()
    await expect(text).to_have_text("one-two-three")
    await d.say("workOrderComplete", turn_id, True, turn=turn_id, seq=4)
    await expect(turn_el(page, turn_id)).to_have_attribute("data-status", "finished")
    await expect(text).to_have_text("one-two-three")


async def test_an_event_ahead_of_a_lost_one_waits_for_the_snapshot(
    page: Page, hub: HubHarness
) -> None:
    tap = Tap(rule=lambda f: "drop" if f.seq == 2 else "pass")
    d, turn_id = await start(page, hub, tap)
    turn = turn_el(page, turn_id)
    text = turn.locator(".block-responding")
    # Only the snapshot can fill the gap here: the page may not fetch the turn.
    rest = f"**/api/turns/{turn_id}"
    await page.route(rest, lambda route: route.abort())
    for seq, piece in enumerate(["one-", "two-", "three-"], start=1):
        await d.say("response", piece, turn=turn_id, seq=seq)
    await until_received(page, "response", 3)
    await expect(text).to_have_text("one-")
    await shot(page, "stream-held")
    tap.rule = lambda _: "pass"
    await tap.cut()  # the page reconnects, locks again and gets turnSnapshot
    await expect(text).to_have_text("one-two-three-", timeout=15_000)
    snapshots = await page.evaluate(
        "window.__gadgetTrace.filter(([n]) => n === 'turnSnapshot').map(([, t]) => t.seq)"
    )
    assert snapshots == [3]

    # A gap that stays open without a reconnect: the page fetches the turn over REST.
    await page.unroute(rest)
    tap.rule = lambda f: "drop" if f.seq == 4 else "pass"
    await d.say("response", "four-", turn=turn_id, seq=4)
    await d.say("response", "five", turn=turn_id, seq=5)
    await until_received(page, "response", 5)
    await expect(text).to_have_text("one-two-three-four-five", timeout=15_000)
    tap.rule = lambda _: "pass"
    await d.say("workOrderComplete", turn_id, True, turn=turn_id, seq=6)
    await expect(turn).to_have_attribute("data-status", "finished")
    await expect(text).to_have_text("one-two-three-four-five")
    assert await turn.locator(".block-responding").count() == 1


async def test_a_numbered_event_the_page_cannot_show_still_moves_the_cursor(
    page: Page, hub: HubHarness
) -> None:
    # A newer hub's event in the place of seq 2: the page shows nothing for it, and seq 3
    # is not held behind it (no REST fetch may fill the gap here).
    tap = Tap(rule=lambda f: Frame("agent:from-the-future", f.args) if f.seq == 2 else "pass")
    d, turn_id = await start(page, hub, tap)
    await page.route(f"**/api/turns/{turn_id}", lambda route: route.abort())
    text = turn_el(page, turn_id).locator(".block-responding")
    await d.say("response", "one-", turn=turn_id, seq=1)
    await d.say("thinking", "never shown", turn=turn_id, seq=2)
    await d.say("response", "three", turn=turn_id, seq=3)
    await expect(text).to_have_text("one-three")
    await expect(turn_el(page, turn_id).locator(".block-thinking")).to_have_count(0)


async def test_a_second_tab_joins_mid_turn_and_both_show_it_once(
    browser: Browser, page: Page, hub: HubHarness, ws: Path
) -> None:
    words = " ".join(f"word{i}" for i in range(60)) + "."
    reply = text_reply(words, reasoning_text="Thinking it over.", pieces=60, chunk_delay_s=0.08)
    async with ScriptedLLM([reply]) as llm:
        s = await new_session(hub, llm, ws)
        async with running_drone(s.settings):
            await open_session(page, s)
            turn_id = await send(page, "talk slowly")
            await expect(page.locator(f"{LIVE} .block-responding")).to_contain_text("word10")
            other = await browser.new_page(viewport={"width": 1280, "height": 800})
            await sign_in(other, hub)
            await other.locator(".session-pick", has_text="talk slowly").click()
            theirs = turn_el(other, turn_id)
            await expect(theirs.locator(".block-responding")).to_contain_text("word10")
            await expect(theirs).to_have_attribute("data-status", "processing")
            for p in (page, other):
                await expect(turn_el(p, turn_id)).to_have_attribute(
                    "data-status", "finished", timeout=20_000
                )
            stored = await s.turn(turn_id)
            for p in (page, other):
                shown = turn_el(p, turn_id)
                assert await shown.locator(".block-responding").all_inner_texts() == [words]
                assert await shown.locator(".thinking-text").all_text_contents() == stored_text(
                    stored, "thinking"
                )
            await other.close()
    assert stored_text(stored, "responding") == [words]
