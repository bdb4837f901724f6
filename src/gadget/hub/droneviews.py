"""`droneState` for many drones at once: the views of one moment read together.

Every lock, turn or connection change of a drone tells its owner's watching IDE sockets
and its lock's holders what the drone looks like now (`droneState`, built from presence,
the lease and the holder's name). When a thousand drones leave or come back at once (a
hub restart, a network cut) each change read its lease alone: 10 % of the hub's CPU in
the reconnect storm (docs/performance.md). Here the changes asked for in one turn of the
event loop are read with one query and sent together; each caller still returns only
once its drone's state has been sent, read after its change.
"""

from __future__ import annotations

import asyncio

from gadget.hub.bus import Bus, drone_room, user_room
from gadget.hub.state.drones import Drones
from gadget.protocol import HubEvent


class DroneViews:
    """Sends `droneState`, reading the views asked for at the same moment together."""

    def __init__(self, drones: Drones, bus: Bus) -> None:
        self._drones = drones
        self._bus = bus
        #: Drones whose state is to be sent: their owner, and the future their callers await.
        self._due: dict[str, tuple[str, asyncio.Future[None]]] = {}

    async def publish(self, drone_id: str, owner_id: str) -> None:
        """Send the drone's state to its owner's watching sockets and its lock's holders."""
        if not self._bus.heard([user_room(owner_id), drone_room(drone_id)]):
            return  # nobody to tell: no view to read
        due = self._due.get(drone_id)
        if due is None:
            if not self._due:
                asyncio.get_running_loop().call_soon(self._start)
            due = self._due[drone_id] = (owner_id, asyncio.get_running_loop().create_future())
        await asyncio.shield(due[1])

    def _start(self) -> None:
        batch, self._due = self._due, {}
        task = asyncio.get_running_loop().create_task(self._send(batch), name="drone-views")
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _send(self, batch: dict[str, tuple[str, asyncio.Future[None]]]) -> None:
        try:
            views = await self._drones.views(list(batch))
            for drone_id, (owner_id, _) in batch.items():
                rooms = [user_room(owner_id), drone_room(drone_id)]
                await self._bus.to_room(rooms, HubEvent.DRONE_STATE, views[drone_id])
        except BaseException as exc:
            for _, future in batch.values():
                if future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
            raise
        for _, future in batch.values():
            if not future.done():
                future.set_result(None)


__all__ = ["DroneViews"]
