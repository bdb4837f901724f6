"""The recorder seals every turn, or a step of them, and keeps count of what is unsealed."""

from __future__ import annotations

from gadget.hub.stream.live import LiveTurn
from gadget.hub.stream.recorder import Recorder
from gadget.protocol import BlockMode, TurnOut, TurnStatus
from gadget.store.tables import utcnow


def _live(i: int, chat: str = "c") -> LiveTurn:
    turn = TurnOut(
        id=f"t{i}",
        chatSession=chat,
        user="u",
        prompt="p",
        status=TurnStatus.PROCESSING,
        createdAt=utcnow(),
    )
    return LiveTurn.resume(turn, f"d{i}")


def _stream(recorder: Recorder, turns: list[LiveTurn], text: str) -> None:
    for live in turns:
        live.text(live.seq + 1, BlockMode.RESPONDING, text, 1 << 20)
        recorder.applied(live, len(text))


def test_sealing_in_steps_takes_the_oldest_first_and_counts_down_unsealed_bytes() -> None:
    recorder = Recorder(1 << 20)
    turns = [recorder.add(_live(i)) for i in range(250)]
    _stream(recorder, turns, "abcd")
    assert recorder.owing == 250 and recorder.unsealed_bytes == 1000
    first = recorder.seal(100)
    assert [w.turn_id for w in first] == [f"t{i}" for i in range(100)]
    assert recorder.owing == 150 and recorder.unsealed_bytes == 600
    _stream(recorder, turns[:10], "xy")  # sealed turns owe again, after the others
    assert recorder.owing == 160 and recorder.unsealed_bytes == 620
    second = recorder.seal(150)
    assert [w.turn_id for w in second] == [f"t{i}" for i in range(100, 250)]
    assert recorder.unsealed_bytes == 20
    rest = recorder.seal()
    assert [w.turn_id for w in rest] == [f"t{i}" for i in range(10)]
    assert [op.seq for w in rest for op in w.ops] == [2] * 10
    assert recorder.owing == 0 and recorder.unsealed_bytes == 0


def test_a_dropped_turn_owes_nothing_any_more() -> None:
    recorder = Recorder(1 << 20)
    turns = [recorder.add(_live(i)) for i in range(3)]
    _stream(recorder, turns, "abc")
    recorder.drop("t1", "moved")
    assert recorder.owing == 2 and recorder.unsealed_bytes == 6


def test_a_sessions_live_turns_are_found_by_their_session_until_they_go() -> None:
    recorder = Recorder(1 << 20)
    for i in range(6):
        recorder.add(_live(i, chat=f"c{i % 2}"))
    assert sorted(recorder.snapshots_of("c0")) == ["t0", "t2", "t4"]
    recorder.add(_live(2, chat="c0"))  # a newer mirror of the same turn
    recorder.drop("t2", "moved")
    assert sorted(recorder.snapshots_of("c0")) == ["t0", "t4"]
    assert recorder.snapshots_of("c9") == {}
    recorder.drop("t0", "moved")
    recorder.drop("t4", "moved")
    assert recorder.snapshots_of("c0") == {} and "c0" not in recorder._of_session
