"""Connections cut mid-stream (the hub keeps running): no token lost or doubled.

The drone and the IDE each reach the hub through a loopback TCP proxy; every cut resets
both sides of both connections at once, dropping whatever was in flight. The drone
reconnects and resends what the hub had not acknowledged; the IDE re-locks and
continues from `turnSnapshot` by its cursor.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.fakes.llm_server import ScriptedLLM, count_tokens, numbered_reply
from tests.fakes.processes import Processes
from tests.fakes.tcp_proxy import TcpProxy
from tests.faults.scenario import HUB, Rig, mid_stream, responding

TOKENS = 2400
CUTS = 6


@pytest.mark.timeout(180)
async def test_cut_connections_lose_and_double_nothing(procs: Processes, ws: Path) -> None:
    hub = await procs.hub(start=False, **HUB)
    port = urlsplit(hub.url).port
    assert port is not None
    reply = numbered_reply(TOKENS, chunk_delay_s=0.002)
    async with (
        ScriptedLLM([reply]) as llm,
        TcpProxy("127.0.0.1", port) as to_drone,
        TcpProxy("127.0.0.1", port) as to_ide,
    ):
        rig = await Rig.start(
            procs,
            llm,
            ws,
            hub=hub,
            drone_url=f"http://{to_drone.address}",
            llm_timeout_s=60,
        )
        viewer = await rig.viewer(f"http://{to_ide.address}")
        turn_id = await viewer.prompt("count")
        view = viewer.turn(turn_id)
        step = TOKENS // (CUTS + 1)
        for cut in range(CUTS):
            await mid_stream(llm, viewer, view, (cut + 1) * step)
            assert to_drone.abort_all() >= 1 and to_ide.abort_all() >= 1
        llm.resume()
        await viewer.wait_done(turn_id, timeout=60)
        turn = await rig.stored(turn_id)
        assert hub.running
        await rig.close()

    stored, shown = count_tokens(responding(turn), TOKENS), count_tokens(view.text(), TOKENS)
    print(
        f"cuts: {CUTS} (drone and IDE), tokens: {TOKENS}, stored: {stored}, shown: {shown}, "
        f"drone connections: {to_drone.stats.accepted}, IDE re-locks: {viewer.locks - 1}, "
        f"resends ignored: {view.resends}, stored turns read: {view.rest_fills}"
    )
    assert turn["status"] == "finished", turn.get("errorMessage")
    assert stored == (0, 0)
    assert shown == (0, 0)
    assert view.done == (True, None)
    assert viewer.locks == CUTS + 1
    assert to_drone.stats.aborted >= CUTS and to_drone.stats.accepted >= CUTS + 1
    assert hub.starts == 1  # the hub never restarted
