"""No turn stays processing: completions lost on the way, restarts, crashes, cancels, twins.

Each scenario once wedged a turn or a drone (issue 7 §4): a `workOrderComplete` lost in
flight, a hub restarted after its drone had finished, a cancel during a crash-recovery
retry delay, a drone killed mid-turn, a drone back without the turn it was running, and
two drone processes with one id.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.fakes.llm_server import ScriptedLLM, count_tokens, numbered_reply
from tests.fakes.processes import DroneProcess, Processes
from tests.fakes.tcp_proxy import TcpProxy
from tests.faults.scenario import HUB, Rig, last_shown, mid_stream, responding

TOKENS = 300
#: A turn whose drone comes back must end within this many seconds of the hub serving.
ENDS_WITHIN_S = 10.0


async def wait_ended(rig: Rig, turn_id: str, since: float) -> float:
    """Seconds from `since` until the stored turn is no longer processing."""
    await rig.stored(turn_id, timeout=ENDS_WITHIN_S + 20)
    return time.monotonic() - since


def assert_complete(rig: Rig, turn: dict[str, object], text: str, shown: str) -> None:
    assert turn["status"] == "finished", turn.get("errorMessage")
    assert count_tokens(text, TOKENS) == (0, 0)
    assert count_tokens(shown, TOKENS) == (0, 0)


@pytest.mark.timeout(180)
async def test_completions_lost_in_flight_and_hub_restarts_never_leave_a_turn_processing(
    procs: Processes, ws: Path
) -> None:
    # Writes are committed (and acknowledged) only every 2 s: a hub killed right after it
    # forwarded a completion has not stored it.
    hub = await procs.hub(start=False, flush_interval_ms=2000, **HUB)
    port = urlsplit(hub.url).port
    assert port is not None
    replies = [numbered_reply(TOKENS, chunk_delay_s=0.002) for _ in range(3)]
    async with ScriptedLLM(replies) as llm, TcpProxy("127.0.0.1", port) as link:
        rig = await Rig.start(
            procs, llm, ws, hub=hub, drone_url=f"http://{link.address}", llm_timeout_s=60
        )
        assert rig.drone is not None
        viewer = await rig.viewer()
        figures = []

        # 1. The completion is lost on the wire: the drone sent it, the hub never got it.
        llm.pause(after=TOKENS - 10)
        turn_id = await viewer.prompt("count")
        view = viewer.turn(turn_id)
        await viewer.wait(lambda: last_shown(view) >= TOKENS - 10)
        link.pause()  # bytes from now on are held by the proxy...
        llm.resume()
        await rig.drone.output.wait_for(f"turn {turn_id} finished")
        link.abort_all()  # ...and dropped with the connection
        link.resume()
        cut = time.monotonic()
        figures.append(await wait_ended(rig, turn_id, cut))
        await viewer.wait_done(turn_id)
        assert_complete(
            rig, await rig.stored(turn_id), responding(await rig.stored(turn_id)), view.text()
        )

        # 2. The hub forwarded the completion, then died before storing it.
        turn_id = await viewer.prompt("count")
        view = viewer.turn(turn_id)
        await viewer.wait_done(turn_id)
        await hub.kill()
        link.refuse()  # the drone stays away until the stored turn is read
        await hub.start()
        before = await rig.turn(turn_id)
        assert before is not None
        # Nearly always still processing; if a flush tick stored the end just before the
        # kill, what was lost is its ack instead (the drone still holds the completion).
        unstored = before["status"] == "processing"
        link.accept()
        figures.append(await wait_ended(rig, turn_id, time.monotonic()))
        await viewer.wait_done(turn_id)
        turn = await rig.stored(turn_id)
        assert_complete(rig, turn, responding(turn), view.text())

        # 3. The drone finishes the turn while the hub is down.
        llm.pause(after=TOKENS // 2)
        turn_id = await viewer.prompt("count")
        view = viewer.turn(turn_id)
        await viewer.wait(lambda: last_shown(view) >= TOKENS // 2)
        await hub.kill()
        llm.resume()
        await rig.drone.output.wait_for(f"turn {turn_id} finished")
        await hub.start()
        figures.append(await wait_ended(rig, turn_id, time.monotonic()))
        await viewer.wait_done(turn_id)
        turn = await rig.stored(turn_id)
        assert_complete(rig, turn, responding(turn), view.text())
        await rig.close()

    cut_s, unstored_s, finished_s = figures
    print(
        f"seconds until the turn ended: completion cut in flight {cut_s:.1f}, hub killed "
        f"before storing it {unstored_s:.1f} (it was {'not ' if unstored else ''}stored), "
        f"drone finished while the hub was down {finished_s:.1f}"
    )
    assert all(s < ENDS_WITHIN_S for s in figures), figures


@pytest.mark.timeout(180)
async def test_a_killed_drone_retries_a_cancel_in_the_retry_delay_sticks_an_orphan_ends(
    procs: Processes, ws: Path
) -> None:
    hub = await procs.hub(start=False, **{**HUB, "retry_delay_ms": 2500})
    replies = [numbered_reply(TOKENS * 2, chunk_delay_s=0.004) for _ in range(4)]
    async with ScriptedLLM(replies) as llm:
        rig = await Rig.start(procs, llm, ws, hub=hub, llm_timeout_s=60)
        drone = rig.drone
        assert drone is not None
        viewer = await rig.viewer()

        # SIGKILL mid-turn: the restarted drone asks to recover it, the hub retries it, the
        # new attempt streams the whole answer again and the turn finishes.
        turn_id = await viewer.prompt("count")
        view = viewer.turn(turn_id)
        await mid_stream(llm, viewer, view, TOKENS // 2)
        await drone.kill()
        llm.resume()
        await drone.start()
        await drone.output.wait_for(f"crash recovery of turn {turn_id}: retry", timeout=30)
        await viewer.wait_done(turn_id, timeout=60)
        turn = await rig.stored(turn_id)
        assert turn["status"] == "finished" and turn["retries"] == 1, turn
        assert count_tokens(responding(turn, attempt=2), TOKENS * 2) == (0, 0)
        assert count_tokens(view.text(attempt=2), TOKENS * 2) == (0, 0)
        assert 0 < count_tokens(responding(turn, attempt=1), TOKENS * 2).missing < TOKENS * 2

        # SIGKILL again, and the person cancels while the retry waits: it is never sent.
        turn_id = await viewer.prompt("count")
        view = viewer.turn(turn_id)
        await mid_stream(llm, viewer, view, TOKENS // 2)
        await drone.kill()
        llm.resume()
        since = len(drone.output.lines)
        await drone.start()
        await drone.output.wait_for(f"crash recovery of turn {turn_id}: retry", since=since)
        assert await viewer.call("cancelWorkOrder", turn_id) in (True, [True])
        await viewer.wait_done(turn_id, timeout=30)
        cancelled = await rig.stored(turn_id)
        requests = len(llm.requests)
        await asyncio.sleep(2.5 + 0.5)  # past the retry delay and a few sweeps
        assert len(llm.requests) == requests == 3
        log = "\n".join(drone.output.lines[since:])
        assert f"turn {turn_id} started" not in log  # the work order was never sent again
        assert view.done is not None and view.done[0] is False

        # SIGKILL, and the workspace loses its work-order cache: the restarted drone runs
        # nothing and recovers nothing, so the turn ends at once with the reason.
        turn_id = await viewer.prompt("count")
        view = viewer.turn(turn_id)
        await mid_stream(llm, viewer, view, TOKENS // 2)
        await drone.kill()
        llm.resume()
        await asyncio.to_thread((ws / ".gadget" / "work-order.json").unlink)
        await drone.start()
        online = time.monotonic()
        orphan = await rig.stored(turn_id, timeout=ENDS_WITHIN_S + 20)
        orphan_s = time.monotonic() - online
        await viewer.wait_done(turn_id, timeout=30)
        await rig.close()

    print(f"a turn its restarted drone no longer runs ended {orphan_s:.1f} s after it was back")
    assert cancelled["status"] == "error" and cancelled.get("cancelled") is True, cancelled
    assert orphan["status"] == "error", orphan
    assert "no longer running it" in orphan["errorMessage"], orphan
    assert orphan_s < ENDS_WITHIN_S


@pytest.mark.timeout(120)
async def test_two_drones_with_one_id_the_older_is_told_why_and_exits(
    procs: Processes, ws: Path, tmp_path: Path
) -> None:
    async with ScriptedLLM() as llm:
        rig = await Rig.start(procs, llm, ws)
        older = rig.drone
        assert older is not None and older.pid is not None
        second = rig.settings.model_copy(update={"workspace": tmp_path / "ws2"})
        (tmp_path / "ws2").mkdir()
        newer = procs.add(DroneProcess(second, rig.api, rig.token, procs.log("newer"), "newer"))
        await newer.start(wait_online=False)
        code = await older.wait(timeout=60)
        await newer.wait_online()
        await asyncio.sleep(2.0)  # a replace loop would show in the hub's log by now
        r = await rig.api.http.get("/api/drones", headers=rig.api.bearer(rig.token))
        listed = {d["_id"]: d for d in r.json()}[rig.drone_id]
        assert newer.running
        assert await newer.terminate() == 0
        await rig.close()

    hub_log = rig.hub.output.text()
    told = older.output.text()
    print(
        f"older drone exit code {code}; hub log: "
        f"{hub_log.count('another process connected from')} conflict, "
        f"{hub_log.count('closing its older socket')} 'closing its older socket' lines; "
        f"drone list conflict: {listed['conflict']}"
    )
    assert code == 3  # EXIT_REPLACED: not restarted by `gadget up`
    assert f"pid {newer.pid}" in told and "was started again on host" in told
    assert listed["online"] is True
    assert listed["conflict"] is not None and listed["conflict"]["pid"] == newer.pid
    assert hub_log.count("another process connected from") == 1
    assert hub_log.count("closing its older socket") == 0
