"""Helpers of the browser tests: Debian's Chromium driven by Playwright against a real hub.

Screenshots go to artifacts/screenshots/ (gitignored) for people to look at.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Locator, Page, expect

from tests.drone.e2e import Session
from tests.harness import HubHarness

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
PASSWORD = "pw-secret"  # what tests.harness.HubHarness.signup uses
LIVE = ".turn[data-status=processing]"
PHONE = {"width": 390, "height": 844}

#: The marks of every browser test module (`pytestmark = BROWSER`).
BROWSER = [
    pytest.mark.browser,
    pytest.mark.timeout(90),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian's Chromium is missing: apt-get install chromium"
    ),
]


async def shot(page: Page, name: str) -> None:
    """Save a screenshot of the page as artifacts/screenshots/NAME.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


async def sign_in(page: Page, hub: HubHarness, username: str = "ann") -> None:
    """Sign in through the login form and wait for the hub connection."""
    await page.goto(hub.url)
    await page.fill("#login-username", username)
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    await expect(page.locator("#connection")).to_have_text("online")


async def open_session(page: Page, s: Session) -> None:
    """Sign in as the session's user and lock its drone for a new chat session."""
    await sign_in(page, s.hub)
    await expect(drone_card(page, s)).to_have_attribute("data-online", "true")
    await page.click("#new-session")
    await expect(page.locator("#prompt")).to_be_enabled()
    await expect(page.locator("#lock-hint")).to_have_text("")


async def send(page: Page, prompt: str) -> str:
    """Type a prompt and press Enter; returns the new turn's id."""
    count = await page.locator(".turn").count()
    await page.fill("#prompt", prompt)
    await page.press("#prompt", "Enter")
    turn = page.locator(".turn").nth(count)
    await expect(turn.locator(".prompt-text")).to_have_text(prompt)
    turn_id = await turn.get_attribute("data-turn-id")
    assert turn_id
    return turn_id


def turn_el(page: Page, turn_id: str) -> Locator:
    """The article of one turn."""
    return page.locator(f'.turn[data-turn-id="{turn_id}"]')


def drone_card(page: Page, s: Session) -> Locator:
    """The session's drone in the sidebar's list."""
    return page.locator(f'.drone[data-drone-id="{s.drone_id}"]')


def stored_text(turn: dict[str, Any], mode: str) -> list[str]:
    """The text blocks of one mode of a stored turn."""
    return [b["content"] for b in turn["blocks"] if b["mode"] == mode]


async def box(locator: Locator) -> dict[str, float]:
    """The element's bounding box (it must be visible)."""
    found = await locator.bounding_box()
    assert found is not None, f"{locator} is not visible"
    return dict(found)


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    """Whether two bounding boxes intersect."""
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )
