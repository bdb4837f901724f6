"""Helpers of the browser tests: Debian's Chromium driven by Playwright against a real hub.

Screenshots go to artifacts/screenshots/ (gitignored) for people to look at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import pytest
import socketio
from playwright.async_api import Locator, Page, WebSocketRoute, expect

from gadget.protocol import mark
from tests.harness import Client, HubHarness

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


class HasDrone(Protocol):
    """A user's drone on a hub (tests.drone.e2e.Session, ScriptedDrone)."""

    @property
    def hub(self) -> HubHarness: ...

    @property
    def drone_id(self) -> str: ...


async def open_session(page: Page, s: HasDrone) -> None:
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


def drone_card(page: Page, s: HasDrone) -> Locator:
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


@dataclass
class ScriptedDrone:
    """A drone socket the test speaks for: it acknowledges work orders and mode switches,
    answers `revertTurn` with `revert_reply`, records every hub→drone event in `client.log`,
    and the test emits the stream events it wants, with the marks it wants."""

    hub: HubHarness
    token: str
    drone_id: str
    project_id: str
    client: Client
    #: The ack of the next `revertTurn` (the drone's `(true, {reverted, conflicts, restored})`).
    revert_reply: list[Any] = field(default_factory=lambda: [False, "no revert scripted"])

    async def work_order(self, count: int = 1) -> str:
        """The id of the `count`-th turn the hub sent to this drone."""
        log = self.client.log
        await log.wait_for("processWorkOrder", lambda _: len(log.of("processWorkOrder")) >= count)
        turn_id: str = log.of("processWorkOrder")[count - 1][3]["_id"]
        return turn_id

    async def say(self, event: str, *args: Any, turn: str, seq: int) -> None:
        """Emit a stream event of `turn` numbered `seq`."""
        await self.client.emit(event, *args, mark(turn, seq))


async def scripted_drone(hub: HubHarness, username: str = "ann", **auth: Any) -> ScriptedDrone:
    """A user, a project and a scripted drone socket (online) on `hub`; `auth` adds to the
    drone's connect auth (e.g. `models`, `mcp`)."""
    token = await hub.signup(username)
    drone_id, key = await hub.create_drone(token, "box")
    project_id = await hub.create_project(token, "calc")
    drone: list[ScriptedDrone] = []

    def setup(sio: socketio.AsyncClient) -> None:
        def acked(event: str, reply: Callable[[], Any]) -> None:
            async def handler(*args: Any) -> Any:
                drone[0].client.log.add(event, args)
                return reply()

            sio.on(event, handler=handler)

        acked("processWorkOrder", lambda: True)
        acked("requestWorkspaceMode", lambda: True)
        acked("requestTermination", lambda: True)
        acked("revertTurn", lambda: tuple(drone[0].revert_reply))

    client = await hub.connect({"registrationId": drone_id, "key": key, **auth}, setup)
    drone.append(ScriptedDrone(hub, token, drone_id, project_id, client))
    return drone[0]


Action = Literal["pass", "drop", "hold", "twice"]


@dataclass
class Frame:
    """One hub→page Socket.IO event as the page's socket receives it."""

    name: str
    args: list[Any]

    @property
    def seq(self) -> int | None:
        """The stream mark's seq, when the event has one."""
        last = self.args[-1] if self.args else None
        if isinstance(last, dict) and set(last) == {"turnId", "seq"}:
            seq = last["seq"]
            return seq if isinstance(seq, int) else None
        return None


@dataclass
class Tap:
    """The page's WebSocket to the hub, through Playwright: each hub→page event frame can be
    passed, dropped, held (until `release`), delivered twice, or replaced by another frame,
    as `rule` says."""

    rule: Callable[[Frame], Action | Frame] = lambda _: "pass"
    held: list[tuple[WebSocketRoute, str]] = field(default_factory=list)
    pages: list[WebSocketRoute] = field(default_factory=list)

    async def install(self, page: Page) -> None:
        """Route the page's Socket.IO connections (call before it loads)."""
        await page.route_web_socket(re.compile(r"/socket\.io/"), self._route)

    def _route(self, ws: WebSocketRoute) -> None:
        hub = ws.connect_to_server()
        ws.on_message(hub.send)
        hub.on_message(lambda message: self._from_hub(ws, message))
        self.pages.append(ws)

    def _from_hub(self, ws: WebSocketRoute, message: str | bytes) -> None:
        action: Action | Frame = "pass"
        if isinstance(message, str) and message.startswith("42["):
            name, *args = json.loads(message[2:])
            action = self.rule(Frame(name, args))
        if isinstance(action, Frame):
            ws.send("42" + json.dumps([action.name, *action.args]))
            return
        if action == "hold":
            self.held.append((ws, str(message)))
            return
        if action != "drop":
            ws.send(message)
        if action == "twice":
            ws.send(message)

    def release(self) -> None:
        """Deliver the held frames, in the order they came."""
        held, self.held = self.held, []
        for ws, message in held:
            ws.send(message)

    async def cut(self) -> None:
        """Close the page's current connection (it reconnects by itself)."""
        await self.pages[-1].close(code=1001, reason="cut by the test")
