"""The parts every hub service shares, handed over once."""

from __future__ import annotations

from dataclasses import dataclass

from gadget.config import Settings
from gadget.hub.bus import Bus, drone_room, user_room
from gadget.hub.cluster import Cluster
from gadget.hub.state.drones import Drones
from gadget.hub.state.ides import Ides
from gadget.hub.stream.writer import Writer
from gadget.hub.tasks import Tasks
from gadget.protocol import HubEvent
from gadget.store.repository import Store


@dataclass(frozen=True)
class Core:
    """Settings, storage, the drones' owner, this node's IDE sockets, the bus, tasks, and
    the way to the other nodes."""

    settings: Settings
    store: Store
    drones: Drones
    ides: Ides
    writer: Writer
    bus: Bus
    tasks: Tasks
    cluster: Cluster


class Service:
    """Base of the hub's services: each reads what it needs from the shared core."""

    def __init__(self, core: Core) -> None:
        self._settings = core.settings
        self._store = core.store
        self._drones = core.drones
        self._ides = core.ides
        self._writer = core.writer
        self._bus = core.bus
        self._tasks = core.tasks
        self._cluster = core.cluster

    async def publish(self, drone_id: str, owner_id: str) -> None:
        """Tell the drone's live state (`droneState`) to the owner's IDE sockets that watch
        the drone list and to those holding its lock (each once)."""
        rooms = [user_room(owner_id), drone_room(drone_id)]
        if not self._bus.heard(rooms):  # nobody to tell: no view to read
            return
        view = await self._drones.view(drone_id)
        await self._bus.to_room(rooms, HubEvent.DRONE_STATE, view)
