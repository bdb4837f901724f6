"""droneState of the drones changed at one moment is read once and sent to each."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from gadget.hub.bus import Bus
from gadget.hub.droneviews import DroneViews
from gadget.hub.state.drones import Drones


class _Drones:
    """What DroneViews reads of the drones' owner: their views, counted."""

    def __init__(self, fail: bool = False) -> None:
        self.reads: list[list[str]] = []
        self.fail = fail

    async def views(self, drone_ids: list[str]) -> dict[str, dict[str, Any]]:
        self.reads.append(list(drone_ids))
        await asyncio.sleep(0)
        if self.fail:
            raise RuntimeError("the database is unavailable")
        return {d: {"_id": d, "read": len(self.reads)} for d in drone_ids}


class _Bus:
    """What DroneViews sends through: every emit, and who would hear it."""

    def __init__(self, deaf: set[str] | None = None) -> None:
        self.sent: list[tuple[list[str], str, Any]] = []
        self.deaf = deaf or set()

    def heard(self, rooms: list[str]) -> bool:
        return not any(r in self.deaf for r in rooms)

    async def to_room(self, rooms: list[str], event: str, *args: Any) -> None:
        self.sent.append((rooms, event, args[0]))


def _views(drones: _Drones, bus: _Bus) -> DroneViews:
    return DroneViews(cast(Drones, drones), cast(Bus, bus))


async def test_changes_at_one_moment_are_read_together_and_sent_to_each() -> None:
    drones, bus = _Drones(), _Bus()
    views = _views(drones, bus)
    await asyncio.gather(
        *(views.publish(f"d{i}", "u1") for i in range(50)), views.publish("d0", "u1")
    )
    assert drones.reads == [[f"d{i}" for i in range(50)]]
    assert [args["_id"] for _, _, args in bus.sent] == [f"d{i}" for i in range(50)]
    assert bus.sent[0][:2] == (["user:u1", "drone:d0"], "droneState")


async def test_a_change_after_a_read_began_is_read_again() -> None:
    drones, bus = _Drones(), _Bus()
    views = _views(drones, bus)
    first = asyncio.ensure_future(views.publish("d1", "u1"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the first read has begun
    await asyncio.gather(first, views.publish("d1", "u1"))
    assert drones.reads == [["d1"], ["d1"]]
    assert [args["read"] for _, _, args in bus.sent] == [1, 2]


async def test_nobody_listening_reads_nothing_and_a_failed_read_reaches_every_caller() -> None:
    drones, bus = _Drones(fail=True), _Bus(deaf={"user:u2"})
    views = _views(drones, bus)
    await views.publish("d9", "u2")
    assert drones.reads == []
    results = await asyncio.gather(
        views.publish("d1", "u1"), views.publish("d2", "u1"), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    with pytest.raises(RuntimeError):
        await views.publish("d3", "u1")
