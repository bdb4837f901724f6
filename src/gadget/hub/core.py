"""The parts every hub service shares, handed over once."""

from __future__ import annotations

from dataclasses import dataclass

from gadget.config import Settings
from gadget.hub.bus import Bus
from gadget.hub.cluster import Cluster
from gadget.hub.droneviews import DroneViews
from gadget.hub.state.drones import Drones
from gadget.hub.state.ides import Ides
from gadget.hub.stream.writer import Writer
from gadget.hub.tasks import Tasks
from gadget.store.repository import Store


@dataclass(frozen=True)
class Core:
    """Settings, storage, the drones' owner, this node's IDE sockets, the bus, tasks, the
    way to the other nodes, and `droneState`'s sender."""

    settings: Settings
    store: Store
    drones: Drones
    ides: Ides
    writer: Writer
    bus: Bus
    tasks: Tasks
    cluster: Cluster
    views: DroneViews


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
        self._views = core.views

    async def publish(self, drone_id: str, owner_id: str) -> None:
        """Tell the drone's live state (`droneState`) to the owner's IDE sockets that watch
        the drone list and to those holding its lock (each once; hub/droneviews.py)."""
        await self._views.publish(drone_id, owner_id)
