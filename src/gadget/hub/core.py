"""The parts every hub service shares, handed over once."""

from __future__ import annotations

from dataclasses import dataclass

from gadget.config import Settings
from gadget.hub.bus import Bus
from gadget.hub.recorder import Recorder
from gadget.hub.routing import Router
from gadget.hub.tasks import Tasks
from gadget.store.repository import Store


@dataclass(frozen=True)
class Core:
    """Settings, storage, routing state, the recorder, the bus and background tasks."""

    settings: Settings
    store: Store
    router: Router
    recorder: Recorder
    bus: Bus
    tasks: Tasks


class Service:
    """Base of the hub's services: each reads what it needs from the shared core."""

    def __init__(self, core: Core) -> None:
        self._settings = core.settings
        self._store = core.store
        self._router = core.router
        self._recorder = core.recorder
        self._bus = core.bus
        self._tasks = core.tasks
