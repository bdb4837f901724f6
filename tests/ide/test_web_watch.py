"""The web IDE asks for every drone's `droneState` (`watchDrones`): its list stays live."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.harness import HubHarness
from tests.ide.browser import BROWSER, sign_in

pytestmark = BROWSER


async def test_a_drone_nobody_locked_comes_and_goes_in_the_list(
    page: Page, hub: HubHarness
) -> None:
    token = await hub.signup("ann")
    drone_id, key = await hub.create_drone(token, "box")
    await sign_in(page, hub)
    card = page.locator(f'.drone[data-drone-id="{drone_id}"]')
    await expect(card).to_have_attribute("data-online", "false")
    drone = await hub.drone(drone_id, key)  # no reload: only droneState can tell the page
    await expect(card).to_have_attribute("data-online", "true")
    await drone.close()
    await expect(card).to_have_attribute("data-online", "false")
