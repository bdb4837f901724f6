"""SIGKILL of the hub mid-stream, again and again: no token lost or doubled, the turn finishes.

Before each kill the model streams until the IDE shows the next share of the tokens,
with a few dozen more on their way (in the drone, on the wire, applied but not stored):
every kill lands mid-stream however long the restarts take. Each restart serves the same
port and data directory (SQLite in it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.llm_server import ScriptedLLM, count_tokens, numbered_reply
from tests.fakes.processes import Processes
from tests.faults.scenario import KILLS, Rig, mid_stream, responding

TOKENS = 2400


@pytest.mark.timeout(120 + 20 * KILLS)
async def test_hub_killed_mid_stream_loses_and_doubles_nothing(procs: Processes, ws: Path) -> None:
    reply = numbered_reply(TOKENS, chunk_delay_s=0.002)
    async with ScriptedLLM([reply]) as llm:
        rig = await Rig.start(procs, llm, ws, llm_timeout_s=60)
        viewer = await rig.viewer()
        turn_id = await viewer.prompt("count")
        view = viewer.turn(turn_id)
        step = TOKENS // (KILLS + 1)
        for kill in range(KILLS):
            await mid_stream(llm, viewer, view, (kill + 1) * step)
            await rig.hub.kill()
            await rig.hub.start()
        llm.resume()
        await viewer.wait_done(turn_id, timeout=90)
        turn = await rig.stored(turn_id)
        await rig.close()

    stored, shown = count_tokens(responding(turn), TOKENS), count_tokens(view.text(), TOKENS)
    print(
        f"hub SIGKILLs: {KILLS}, tokens: {TOKENS}, stored (missing, duplicated): {stored}, "
        f"shown: {shown}, IDE connections: {viewer.connects}, re-locks: {viewer.locks - 1}, "
        f"snapshots: {view.snapshots}, "
        f"resends ignored: {view.resends}, stored turns read: {view.rest_fills}"
    )
    assert turn["status"] == "finished", turn.get("errorMessage")
    assert stored == (0, 0)
    assert shown == (0, 0)
    assert view.done == (True, None)
    # It streamed from every hub (a kill may land between a re-lock's snapshot and its ack).
    assert viewer.connects >= KILLS + 1
    assert rig.hub.output.text().count("hub listening on") == KILLS + 1
