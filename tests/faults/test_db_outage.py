"""The database fails; the stream does not.

The hub stores on PostgreSQL (a fresh database per test) through a loopback TCP proxy
that resets every connection and refuses new ones for a while. Meanwhile the relay to
the IDE goes on, nothing is acknowledged to the drone, and `/healthz` says degraded
with the reason; once the database is back the writer commits everything it held. A
hub stopped while the database is down exits without acknowledging what it did not
commit, and the drone resends it to the next hub.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.fakes.llm_server import ScriptedLLM, count_tokens, numbered_reply
from tests.fakes.processes import Processes
from tests.fakes.tcp_proxy import TcpProxy
from tests.faults.scenario import HUB, Rig, last_shown, mid_stream, responding
from tests.postgres import fresh_database

pytestmark = pytest.mark.postgres

OUTAGE_S = 3.0


@pytest.fixture
async def db_proxy() -> AsyncIterator[tuple[TcpProxy, str]]:
    """A proxy to the local PostgreSQL, and the URL of a fresh database through it."""
    async with fresh_database() as url, TcpProxy("127.0.0.1", 5432) as proxy:
        parts = urlsplit(url)
        netloc = parts.netloc.replace(":5432", f":{proxy.port}")
        yield proxy, urlunsplit(parts._replace(netloc=netloc))


async def wait_health(rig: Rig, status: str, timeout: float = 30) -> dict[str, Any]:
    """`/healthz` once it says `status` ("ok" or "degraded")."""
    async with asyncio.timeout(timeout):
        while True:
            health = await rig.health()
            if health is not None and health.get("status") == status:
                return health
            await asyncio.sleep(0.05)


@pytest.mark.timeout(150)
async def test_two_outages_mid_stream_lose_nothing_and_the_ide_keeps_streaming(
    procs: Processes, ws: Path, db_proxy: tuple[TcpProxy, str]
) -> None:
    proxy, url = db_proxy
    tokens = 2400
    hub = await procs.hub(start=False, database_url=url, db_timeout_s=5.0, **HUB)
    async with ScriptedLLM([numbered_reply(tokens, chunk_delay_s=0.005)]) as llm:
        rig = await Rig.start(procs, llm, ws, hub=hub, llm_timeout_s=60)
        viewer = await rig.viewer()
        turn_id = await viewer.prompt("count")
        view = viewer.turn(turn_id)
        during, reasons = [], []
        for at in (tokens // 6, tokens * 4 // 7):
            # 400 more tokens (2 s of the model) stream on during the outage.
            await mid_stream(llm, viewer, view, at, ahead=400)
            start = time.monotonic()
            proxy.outage(OUTAGE_S)
            degraded = await wait_health(rig, "degraded", timeout=OUTAGE_S + 5)
            reasons.append(degraded["database"]["reason"])
            await asyncio.sleep(max(0.0, start + OUTAGE_S - time.monotonic()))
            during.append(view.deltas_between(start, start + OUTAGE_S))
            await wait_health(rig, "ok")
        llm.resume()
        await viewer.wait_done(turn_id, timeout=60)
        turn = await rig.stored(turn_id)
        await rig.close()

    stored, shown = count_tokens(responding(turn), tokens), count_tokens(view.text(), tokens)
    print(
        f"PostgreSQL outages: 2 x {OUTAGE_S:g} s, tokens: {tokens}, stored: {stored}, "
        f"shown: {shown}, response events shown during each outage: {during}, "
        f"connections refused: {proxy.stats.refused}, healthz reasons: {reasons}"
    )
    assert turn["status"] == "finished", turn.get("errorMessage")
    assert stored == (0, 0)
    assert shown == (0, 0)
    assert all(n > 0 for n in during), during  # the relay went on while the database was down
    assert all(reasons), reasons
    assert proxy.stats.refused > 0


@pytest.mark.timeout(150)
async def test_a_hub_stopped_while_the_database_is_down_acks_nothing_it_did_not_store(
    procs: Processes, ws: Path, db_proxy: tuple[TcpProxy, str]
) -> None:
    proxy, url = db_proxy
    tokens = 2400
    hub = await procs.hub(start=False, database_url=url, db_timeout_s=5.0, **HUB)
    async with ScriptedLLM([numbered_reply(tokens, chunk_delay_s=0.005)]) as llm:
        rig = await Rig.start(procs, llm, ws, hub=hub, llm_timeout_s=60)
        viewer = await rig.viewer()
        turn_id = await viewer.prompt("count")
        view = viewer.turn(turn_id)
        await mid_stream(llm, viewer, view, tokens // 5, ahead=300)
        proxy.refuse()
        proxy.abort_all()
        down_at = last_shown(view)
        await viewer.wait(lambda: last_shown(view) >= down_at + 100, timeout=30)
        await wait_health(rig, "degraded")
        code = await hub.terminate(timeout=20)  # with writes it could not commit
        proxy.accept()
        await hub.start()
        # Then SIGKILL mid-stream on PostgreSQL too.
        await mid_stream(llm, viewer, view, tokens * 3 // 4)
        await hub.kill()
        await hub.start()
        llm.resume()
        await viewer.wait_done(turn_id, timeout=60)
        turn = await rig.stored(turn_id)
        await rig.close()

    stored, shown = count_tokens(responding(turn), tokens), count_tokens(view.text(), tokens)
    print(
        f"SIGTERM with PostgreSQL down (exit code {code}), then SIGKILL: tokens: {tokens}, "
        f"stored: {stored}, shown: {shown}, IDE re-locks: {viewer.locks - 1}, "
        f"connects: {viewer.connects}, snapshots: {view.snapshots}, stored turns read: {view.rest_fills}"
    )
    assert code == 0
    assert turn["status"] == "finished", turn.get("errorMessage")
    assert stored == (0, 0)
    assert shown == (0, 0)


@pytest.mark.timeout(150)
async def test_a_drone_that_leaves_during_an_outage_and_never_returns_loses_its_turn(
    procs: Processes, ws: Path, db_proxy: tuple[TcpProxy, str]
) -> None:
    proxy, url = db_proxy
    grace_s = 2.0
    hub = await procs.hub(
        start=False, database_url=url, **{**HUB, "db_timeout_s": 1.0, "drone_grace_s": grace_s}
    )
    async with ScriptedLLM([numbered_reply(600, chunk_delay_s=0.005)]) as llm:
        rig = await Rig.start(procs, llm, ws, hub=hub, llm_timeout_s=60)
        assert rig.drone is not None
        viewer = await rig.viewer()
        turn_id = await viewer.prompt("count")
        view = viewer.turn(turn_id)
        await mid_stream(llm, viewer, view, 100)
        proxy.refuse()
        proxy.abort_all()
        await wait_health(rig, "degraded")
        await rig.drone.kill()  # it leaves while its grace deadline cannot be stored
        await asyncio.sleep(1.0 + 0.5)  # longer than the hub waits for the database
        assert any(s.endswith(" disconnected") for s in viewer.statuses), viewer.statuses
        proxy.accept()
        await wait_health(rig, "ok")
        back = time.monotonic()
        turn = await rig.stored(turn_id, timeout=grace_s + 20)
        ended_s = time.monotonic() - back
        await rig.close()

    print(f"a drone gone during an outage: its turn ended {ended_s:.1f} s after the database")
    assert turn["status"] == "error" and turn["errorMessage"] == "drone disconnected", turn
    assert count_tokens(responding(turn), 600).duplicated == 0
