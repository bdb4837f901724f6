"""The viewer's view of a turn: what the fault tests count must be what an IDE would show."""

from __future__ import annotations

from typing import Any

from tests.fakes.llm_server import count_tokens, numbered_text
from tests.faults.viewer import TurnView


def turn(seq: int, text: str, status: str = "processing", retries: int = 0) -> dict[str, Any]:
    """A turn's JSON as `turnSnapshot` and REST carry it (one responding block, attempt 1)."""
    block = {"mode": "responding", "content": text, "attempt": 1}
    return {"_id": "t1", "seq": seq, "status": status, "retries": retries, "blocks": [block]}


def test_events_apply_once_in_order_resends_ignored_gaps_held() -> None:
    view = TurnView("t1")
    tokens = numbered_text(5).split(" ")[:5]
    view.numbered("response", (tokens[0] + " ",), 1)
    view.numbered("response", (tokens[2] + " ",), 3)  # beyond a gap: held
    assert view.text() == "t0001 " and view.gaps == 1
    view.numbered("response", (tokens[1] + " ",), 2)  # the missing one: both apply
    view.numbered("response", (tokens[1] + " ",), 2)  # a resend
    view.numbered("response", (tokens[3] + " ",), 4)
    view.numbered("workOrderComplete", ("t1", True), 5)
    assert count_tokens(view.text(), 4) == (0, 0)
    assert (view.cursor, view.resends, view.applied, view.done) == (5, 1, 5, (True, None))


def test_a_snapshot_replaces_the_view_a_stored_turn_only_when_newer() -> None:
    view = TurnView("t1")
    for n in range(1, 5):
        view.numbered("response", (f"t{n:04d} ",), n)
    view.numbered("response", ("t0006 ",), 6)  # held
    assert not view.replace(turn(2, "t0001 t0002 "), from_rest=True)  # older: kept
    assert view.replace(turn(2, "t0001 t0002 "))  # a snapshot: the stream continues it
    assert view.cursor == 2 and view.held == {6: ("response", ("t0006 ",))}
    for n in (3, 4, 5):  # the hub forwards the events after its snapshot
        view.numbered("response", (f"t{n:04d} ",), n)
    assert count_tokens(view.text(), 6) == (0, 0) and not view.held
    assert view.replace(turn(9, numbered_text(6), status="finished"), from_rest=True)
    assert view.done == (True, None) and view.rest_fills == 1


def test_a_retry_starts_a_new_attempt_and_an_unmarked_end_ends_the_turn() -> None:
    view = TurnView("t1")
    view.numbered("response", ("t0001 t0002 ",), 1)
    view.replace(turn(1, "t0001 t0002 ", retries=1))  # the hub retries the turn
    view.numbered("response", ("t0001 ",), 2)
    view.numbered("response", ("t0002 ",), 3)
    assert view.text(attempt=2) == "t0001 t0002 " and view.text() == "t0001 t0002 " * 2
    view.ended(False, "cancelled")
    assert view.done == (False, "cancelled") and view.status == "error"
