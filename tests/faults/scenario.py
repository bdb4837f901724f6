"""The setting of a fault test: a hub, a user with a project, a drone on a scripted model,
and an IDE viewer holding the drone's chat session.

    rig = await Rig.start(procs, llm, ws)            # hub, user ann, drone "box", project
    viewer = await rig.viewer()                      # an IDE that locked a new session
    turn_id = await viewer.prompt("count")
    ... faults ...
    turn = await rig.stored(turn_id)                 # REST, once no longer processing
    assert count_tokens(responding(turn), N) == (0, 0)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gadget.config import DroneSettings, Settings
from gadget.hub.auth import Auth
from gadget.store.database import make_engine, migrate
from gadget.store.repository import Store
from tests.drone.helpers import drone_settings
from tests.fakes.llm_server import ScriptedLLM
from tests.fakes.processes import DroneProcess, HubProcess, Processes
from tests.faults.viewer import TurnView, Viewer
from tests.harness import HubClient

__all__ = ["AHEAD", "HUB", "KILLS", "Rig", "last_shown", "mid_stream", "responding"]

#: SIGKILLs of the hub in the kill test (`GADGET_FAULT_KILLS`, default 10; 20 is the longer run).
KILLS = int(os.environ.get("GADGET_FAULT_KILLS", "10"))

#: Hub settings of fault tests: deadlines swept often; a drone away (or a hub restarted)
#: keeps its turn long enough for any test, and a crashed drone is retried soon.
HUB: dict[str, Any] = {
    "drone_grace_s": 30.0,
    "sweep_interval_s": 0.2,
    "retry_delay_ms": 300,
    "recovery_window_s": 2.0,
}


#: Tokens the model may stream past the point where a test places a fault.
AHEAD = 60

_LAST = re.compile(r"t(\d+) $")


def last_shown(view: TurnView) -> int:
    """The number of the last token the viewer shows (0 before the first)."""
    found = _LAST.search(view.text()[-12:])
    return int(found.group(1)) if found else 0


async def mid_stream(
    llm: ScriptedLLM, viewer: Viewer, view: TurnView, at: int, ahead: int = AHEAD
) -> None:
    """Stream (one token a chunk) until the IDE shows token `at`, the model holding `ahead`
    tokens later: a fault placed now lands with tokens on their way, and the turn cannot
    end before the next call (or ``llm.resume()``), however slow the machine."""
    llm.hold_at(at + ahead)
    await viewer.wait(lambda: last_shown(view) >= at, timeout=90)
    assert view.done is None, f"the turn ended before token {at}"


async def seed(settings: Settings, user: str) -> tuple[str, str, str, str]:
    """Create `user`, a drone and a project in a hub's database before the hub runs;
    the user's token, the drone's id and key, the project's id."""
    settings.ensure_home()
    url = settings.resolved_database_url()
    await migrate(url)
    store = Store(make_engine(url))
    auth = Auth(settings.resolved_secret_key(), settings.token_ttl_s, 1)
    try:
        row = await store.create_user(user, await auth.hash_password("pw-secret"))
        key, key_hash = Auth.new_drone_key()
        drone = await store.create_drone(row.id, f"box-{user}", "", key_hash)
        project = await store.create_project(row.id, "calc", "")
        return auth.issue_token(row.id), drone.id, key, project.id
    finally:
        auth.close()
        await store.close()


def responding(turn: dict[str, Any], attempt: int | None = None) -> str:
    """The responding text of a stored turn (of one attempt, or all)."""
    return "".join(
        b["content"]
        for b in turn["blocks"]
        if b["mode"] == "responding" and attempt in (None, b.get("attempt", 1))
    )


@dataclass
class Rig:
    """A hub with one user, one project and one drone on the scripted model."""

    procs: Processes
    hub: HubProcess
    api: HubClient
    token: str
    drone_id: str
    key: str
    project_id: str
    settings: DroneSettings
    drone: DroneProcess | None = None
    viewers: list[Viewer] = field(default_factory=list)

    @classmethod
    async def start(
        cls,
        procs: Processes,
        llm: ScriptedLLM,
        ws: Path,
        *,
        hub: HubProcess | None = None,
        user: str = "ann",
        drone_url: str | None = None,
        start_drone: bool = True,
        **drone: Any,
    ) -> Rig:
        """A hub (with :data:`HUB` unless given), `user`, a drone and a project.

        A hub not started yet gets them in its database first (as `gadget user add` does),
        so that the hub and the drone start together; a running one over REST.
        `drone_url` is where the drone connects (a proxy in front of the hub); the other
        keywords are DroneSettings.
        """
        if hub is None:
            hub = await procs.hub(start=False, **HUB)
        api = procs.client(hub.url)
        if hub.running:
            token = await api.signup(user)
            drone_id, key = await api.create_drone(token, f"box-{user}")
            project_id = await api.create_project(token, "calc")
        else:
            token, drone_id, key, project_id = await seed(hub.settings, user)
        values: dict[str, Any] = {"sandbox": "none", "checkpoints": False, **drone}
        settings = drone_settings(
            ws,
            llm.base_url,
            hub_url=drone_url or hub.url,
            drone_id=drone_id,
            drone_key=key,
            **values,
        )
        rig = cls(procs, hub, api, token, drone_id, key, project_id, settings)
        starting = [] if hub.running else [hub.start()]
        if start_drone:
            rig.drone = procs.add(
                DroneProcess(settings, api, token, procs.log(f"drone-{user}"), f"drone-{user}")
            )
            starting.append(rig.drone.start())
        await asyncio.gather(*starting)
        return rig

    async def viewer(self, url: str | None = None) -> Viewer:
        """An IDE (connecting to `url`, default the hub) that locked a new chat session."""
        viewer = Viewer(url or self.hub.url, self.api, self.token, self.drone_id, self.project_id)
        self.viewers.append(viewer)
        await viewer.open()
        return viewer

    async def close(self) -> None:
        """Close the viewers, then stop the drone while its hub is up (it has nothing left
        to send: it stops at once), then the hub."""
        for viewer in self.viewers:
            await viewer.close()
        if self.drone is not None and self.drone.running:
            await self.drone.terminate()
        if self.hub.running:
            await self.hub.terminate()

    async def turn(self, turn_id: str) -> dict[str, Any] | None:
        """The turn from REST now, or None while the hub does not answer."""
        try:
            r = await self.api.http.get(
                f"/api/turns/{turn_id}", headers=self.api.bearer(self.token), timeout=5
            )
        except httpx.TransportError:
            return None
        return r.json() if r.status_code == 200 else None

    async def stored(self, turn_id: str, timeout: float = 60) -> dict[str, Any]:
        """The turn from REST once it is no longer processing."""
        async with asyncio.timeout(timeout):
            while True:
                turn = await self.turn(turn_id)
                if turn is not None and turn["status"] != "processing":
                    return turn
                await asyncio.sleep(0.1)

    async def health(self) -> dict[str, Any] | None:
        """`GET /healthz`, or None while the hub does not answer."""
        with contextlib.suppress(httpx.TransportError):
            r = await self.api.http.get("/healthz", timeout=5)
            body: dict[str, Any] = r.json()
            return body
        return None
