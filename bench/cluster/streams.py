"""bench.relay's drone → IDE streams, with the drone and the IDE on chosen nodes.

Each stream is one registered drone streaming a real turn (locked and prompted by its
IDE socket, recorded by the drone's node) and one IDE socket; the same client code as
bench.relay (raw Engine.IO/Socket.IO framing), so only where the sockets are differs.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from bench.relay.clients import Stream, _bounded, _register
from bench.relay.wire import Socket


async def _stream(
    drone_url: str, ide_url: str, token: str, project_id: str, drone: tuple[str, str], window: int
) -> Stream:
    got_order = asyncio.Event()

    def on_drone_event(name: str, args: list[Any]) -> list[Any] | None:
        if name != "processWorkOrder":
            return None
        got_order.set()
        return [True]  # the hub fails the turn unless the drone acks it

    s = Stream(drone=Socket(on_drone_event), window=window)
    await s.drone.connect(drone_url, {"registrationId": drone[0], "key": drone[1]})
    await s.ide.connect(ide_url, {"token": token})
    ok, chat_id = await s.ide.call(
        "requestSessionLock", {"_id": drone[0]}, {"_id": project_id}, None
    )
    assert ok is True, chat_id
    ok, turn_id = await s.ide.call("submitPrompt", "stream tokens")
    assert ok is True, turn_id
    async with asyncio.timeout(30):
        await got_order.wait()
    return s


async def placed_streams(
    register_url: str, placements: dict[str, tuple[str, str]], n: int, window: int
) -> dict[str, list[Stream]]:
    """For each name, N streams with their drones on the first URL, IDEs on the second.

    One user owns every drone (registered on `register_url`).
    """
    token, project_id, drones = await _register(register_url, n * len(placements))
    out: dict[str, list[Stream]] = {}
    for i, (name, (drone_url, ide_url)) in enumerate(placements.items()):
        mine = drones[i * n : (i + 1) * n]
        jobs = [
            functools.partial(_stream, drone_url, ide_url, token, project_id, d, window)
            for d in mine
        ]
        out[name] = await _bounded(jobs)
    return out
