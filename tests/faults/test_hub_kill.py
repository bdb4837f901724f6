"""SIGKILL of the hub mid-stream, again and again: no token lost or doubled, the turn finishes.

The drone keeps every numbered event until the hub acknowledges it stored, and its
unacknowledged events are bounded to a few KB here, so while the hub is down the drone
stops reading the model: every kill lands mid-stream however long the restarts take.
Each restart serves the same port and data directory (SQLite in it).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fakes.llm_server import ScriptedLLM, count_tokens, numbered_reply
from tests.fakes.processes import Processes
from tests.faults.scenario import KILLS, Rig, responding
from tests.faults.viewer import TurnView

TOKENS = 2400
_NUMBER = re.compile(r"t(\d+) $")


def last_shown(view: TurnView) -> int:
    """The number of the last token the viewer shows (0 before the first)."""
    found = _NUMBER.search(view.text()[-12:])
    return int(found.group(1)) if found else 0


@pytest.mark.timeout(60 + 12 * KILLS)
async def test_hub_killed_mid_stream_loses_and_doubles_nothing(procs: Processes, ws: Path) -> None:
    reply = numbered_reply(TOKENS, chunk_delay_s=0.004)
    async with ScriptedLLM([reply]) as llm:
        rig = await Rig.start(procs, llm, ws, outbox_max_bytes=4096, llm_timeout_s=60)
        viewer = await rig.viewer()
        turn_id = await viewer.prompt("count")
        view = viewer.turn(turn_id)
        step = TOKENS // (KILLS + 1)
        for kill in range(KILLS):
            # Tokens past those of the previous kill reached the IDE: this hub is streaming.
            await viewer.wait(lambda k=kill: last_shown(view) >= (k + 1) * step, timeout=60)
            assert view.done is None, f"the turn ended before kill {kill + 1}"
            await rig.hub.kill()
            await rig.hub.start()
        await viewer.wait_done(turn_id, timeout=90)
        turn = await rig.stored(turn_id)
        await rig.close()

    stored, shown = count_tokens(responding(turn), TOKENS), count_tokens(view.text(), TOKENS)
    print(
        f"hub SIGKILLs: {KILLS}, tokens: {TOKENS}, stored (missing, duplicated): {stored}, "
        f"shown: {shown}, IDE re-locks: {viewer.locks - 1}, snapshots: {view.snapshots}, "
        f"resends ignored: {view.resends}, stored turns read: {view.rest_fills}"
    )
    assert turn["status"] == "finished", turn.get("errorMessage")
    assert stored == (0, 0)
    assert shown == (0, 0)
    assert view.done == (True, None)
    assert viewer.locks == KILLS + 1  # it re-locked after every restart
    assert rig.hub.output.text().count("hub listening on") == KILLS + 1
