"""The one entry point of every client event, the dispatch tables, and errors → replies.

python-socketio looks a client's event name up among *all* registered handlers,
so a client that emits ``"connect"``, ``"disconnect"`` or ``"*"`` would run the
hub's lifecycle handlers with arguments of its choosing. :class:`HubServer`
closes that door: every event a client sends enters :meth:`Dispatcher.dispatch`
and nowhere else; only the names in the hub's tables reach a handler, and the
sender is always the socket the packet came from.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
from pydantic import ValidationError
from socketio import packet as sio_packet

from gadget.hub.bus import Bus
from gadget.hub.exceptions import HubError, Resend
from gadget.hub.metrics import SECONDS_BUCKETS, Histogram
from gadget.hub.sockets.rate import Bucket, Rates, Verdict
from gadget.hub.state.drones import Drones
from gadget.hub.state.ides import Ides
from gadget.hub.transport import EngineServer
from gadget.logs import bind, unbind
from gadget.protocol import STREAM_EVENTS, ArgsError, ErrorCode, HubEvent, split_mark

logger = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Any]]
Reply = tuple[Any, ...] | None

#: Longest event name echoed back in a refusal.
_NAME_ECHO = 60


class HubServer(socketio.AsyncServer):  # type: ignore[misc]
    """python-socketio's server with client events routed only through a :class:`Dispatcher`.

    Lifecycle handlers (`connect`, `disconnect`) are still triggered by the server
    itself; a client's EVENT packet never reaches them.
    """

    dispatcher: Dispatcher | None = None

    def _engineio_server_class(self) -> type[EngineServer]:
        return EngineServer

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: Any, data: Any) -> None:
        namespace = namespace or "/"
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if sid is None or not self.manager.is_connected(sid, namespace):
            return
        if self.dispatcher is None:
            return
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            reply = await self.dispatcher.refuse(sid, "?", "expected an event name (a string)")
        else:
            reply = await self.dispatcher.dispatch(sid, data[0], data[1:])
        if id is not None:
            args = [] if reply is None else list(reply)
            await self._send_packet(
                eio_sid, self.packet_class(sio_packet.ACK, namespace=namespace, id=id, data=args)
            )


class Dispatcher:
    """Routes each incoming event by the kind of socket that sent it (IDE or drone).

    Event names overlap between directions (`requestTermination`,
    `cancelWorkOrder`), so the table is chosen by sender, never by name alone.
    Each handler runs inside the log context of its sender (drone, user, and the
    drone's live turn), so every line it logs carries those ids. It counts what it
    receives (by sender and name; names not in its tables as "other") and how long
    each drone stream event takes to be forwarded (`relay`), for /metrics.
    """

    def __init__(self, sio: HubServer, drones: Drones, ides: Ides, bus: Bus, rates: Rates) -> None:
        self._sio = sio
        self._rates = rates
        self._drones = drones
        self._ides = ides
        self._bus = bus
        self._ide: dict[str, Handler] = {}
        self._drone: dict[str, Handler] = {}
        #: Events received by sender kind and name (read by /metrics).
        self.received: dict[str, dict[str, int]] = {"drone": {}, "ide": {}}
        #: Seconds from a drone's stream event entering here to its forward.
        self.relay = Histogram(SECONDS_BUCKETS)

    def install(self, ide: dict[str, Handler], drone: dict[str, Handler]) -> None:
        """Make this dispatcher the server's only way in for client events."""
        self._ide, self._drone = dict(ide), dict(drone)
        self._sio.dispatcher = self

    async def dispatch(self, sid: str, event: str, args: list[Any]) -> Reply:
        """Run the handler of `event` for the socket `sid`, mapping errors to a refusal."""
        began = time.perf_counter()
        drone = self._drones.by_sid(sid)
        if drone is not None:
            handler, counts = self._drone.get(event), self.received["drone"]
            if drone.bucket is None:
                drone.bucket = self._rates.drone()
            bucket = drone.bucket
            live = drone.live
            ids = bind(drone=drone.drone_id, user=drone.owner_id, turn=live.id if live else None)
        elif (ide := self._ides.get(sid)) is not None:
            handler, counts = self._ide.get(event), self.received["ide"]
            if ide.bucket is None:
                ide.bucket = self._rates.ide()
            bucket = ide.bucket
            ids = bind(user=ide.user_id, drone=ide.drone_id)
        else:
            return None  # connected at the Socket.IO level, but not (or no longer) known
        name = event if handler is not None else "other"
        counts[name] = counts.get(name, 0) + 1
        try:
            verdict = bucket.take()
            if verdict is not Verdict.PASS:
                return await self._over_limit(sid, event, args, bucket, verdict)
            reply = await self._run(handler, sid, event, args)
        finally:
            unbind(ids)
        if drone is not None and event in STREAM_EVENTS:
            self.relay.observe(time.perf_counter() - began)
        return reply

    async def _run(self, handler: Handler | None, sid: str, event: str, args: list[Any]) -> Reply:
        if handler is None:
            name = event[:_NAME_ECHO]
            if event in self._ide or event in self._drone:
                return await self.refuse(sid, event, f"{name} is not accepted from this client")
            return await self.refuse(sid, event, f"unknown event {name!r}")
        try:
            result: Reply = await handler(sid, *args)
            return result
        except Resend as exc:
            extra = {"code": exc.code, "turnId": exc.turn_id, "expected": exc.expected}
            return await self.refuse(sid, event, str(exc), extra)
        except (HubError, ArgsError) as exc:
            return await self.refuse(sid, event, str(exc))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "payload"
            return await self.refuse(sid, event, f"{where}: {first['msg']}")
        except Exception:
            logger.exception("handler of %s from %s failed", event, sid)
            return await self.refuse(sid, event, "internal error (logged on the hub)")

    async def _over_limit(
        self, sid: str, event: str, args: list[Any], bucket: Bucket, verdict: Verdict
    ) -> Reply:
        """An event over its socket's rate: refused (a numbered one is resent), or a flood."""
        message = f"more than {bucket.rate:g} events a second from this socket: slow down"
        if verdict is Verdict.DISCONNECT:
            logger.warning("disconnecting %s: it kept sending over its event rate", sid)
            await self._sio.disconnect(sid)
            return (False, message)
        if bucket.strikes == 1:
            logger.warning("refusing events from %s: %s", sid, message)
        extra: dict[str, Any] = {"code": ErrorCode.LIMIT.value}
        _, marked = split_mark(args)
        if marked is not None:
            extra["turnId"], extra["expected"] = marked
        await self._bus.to_sid(
            sid, HubEvent.ERROR, {"event": event[:_NAME_ECHO], "message": message, **extra}
        )
        return (False, message)

    async def refuse(
        self, sid: str, event: str, message: str, extra: dict[str, Any] | None = None
    ) -> Reply:
        """Log a refused event, tell its sender, and answer its ack with (False, message)."""
        if extra is None:
            logger.warning("refused %s from %s: %s", event[:_NAME_ECHO], sid, message)
        else:
            logger.info("not applied now %s from %s: %s", event[:_NAME_ECHO], sid, message)
        payload = {"event": event[:_NAME_ECHO], "message": message, **(extra or {})}
        await self._bus.to_sid(sid, HubEvent.ERROR, payload)
        return (False, message)
