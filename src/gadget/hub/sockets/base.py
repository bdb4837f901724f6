"""The one boundary that maps socket handler errors to replies, and the dispatch tables."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
from pydantic import ValidationError

from gadget.hub.bus import Bus
from gadget.hub.exceptions import HubError
from gadget.hub.routing import Router
from gadget.protocol import ArgsError, HubEvent

logger = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Any]]
Reply = tuple[Any, ...] | None


class Dispatcher:
    """Routes each incoming event by the kind of socket that sent it (IDE or drone).

    Event names overlap between directions (`requestTermination`,
    `cancelWorkOrder`), so the table is chosen by sender, never by name alone.
    """

    def __init__(self, sio: socketio.AsyncServer, router: Router, bus: Bus) -> None:
        self._sio = sio
        self._router = router
        self._bus = bus
        self._ide: dict[str, Handler] = {}
        self._drone: dict[str, Handler] = {}

    def install(self, ide: dict[str, Handler], drone: dict[str, Handler]) -> None:
        """Register every event of both tables, plus a catch-all for unknown events."""
        self._ide, self._drone = ide, drone
        for event in {*ide, *drone}:
            self._sio.on(event, handler=self._entry(event))
        self._sio.on("*", handler=self._unknown)

    def _entry(self, event: str) -> Callable[..., Awaitable[Reply]]:
        async def entry(sid: str, *args: Any) -> Reply:
            if sid in self._router.drone_sids:
                handler = self._drone.get(event)
            elif sid in self._router.ides:
                handler = self._ide.get(event)
            else:
                return None
            if handler is None:
                return await self.refuse(sid, event, f"{event} is not accepted from this client")
            try:
                result: Reply = await handler(sid, *args)
                return result
            except (HubError, ArgsError) as exc:
                return await self.refuse(sid, event, str(exc))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "payload"
                return await self.refuse(sid, event, f"{where}: {first['msg']}")
            except Exception:
                logger.exception("handler of %s from %s failed", event, sid)
                return await self.refuse(sid, event, "internal error (logged on the hub)")

        return entry

    async def _unknown(self, event: str, sid: str, *args: Any) -> Reply:
        return await self.refuse(sid, str(event), f"unknown event {event!r}")

    async def refuse(self, sid: str, event: str, message: str) -> Reply:
        """Log a refused event, tell its sender, and answer its ack with (False, message)."""
        logger.warning("refused %s from %s: %s", event, sid, message)
        await self._bus.to_sid(sid, HubEvent.ERROR, {"event": event, "message": message})
        return (False, message)
