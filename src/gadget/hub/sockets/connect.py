"""Connect and disconnect: who a socket is (IDE by JWT, drone by registration key)."""

from __future__ import annotations

import logging
from typing import Any

import socketio
from pydantic import ValidationError

from gadget.hub.auth import Auth
from gadget.hub.bus import Bus, user_room
from gadget.hub.exceptions import AuthError
from gadget.hub.recovery import Recovery
from gadget.hub.sessions import Sessions
from gadget.hub.state.drones import Drones, Hello, Taken
from gadget.hub.state.ides import IdeLink, Ides
from gadget.logs import log_context
from gadget.protocol import MAX_ID, ErrorCode, HubEvent, McpServerInfo, ModelInfo
from gadget.store.repository import Store
from gadget.store.tables import utcnow

logger = logging.getLogger(__name__)


class ConnectHandlers:
    """Authenticates every socket at the handshake and cleans up after it."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        auth: Auth,
        store: Store,
        drones: Drones,
        ides: Ides,
        bus: Bus,
        sessions: Sessions,
        recovery: Recovery,
    ) -> None:
        self._sio = sio
        self._auth = auth
        self._store = store
        self._drones = drones
        self._ides = ides
        self._bus = bus
        self._sessions = sessions
        self._recovery = recovery

    def install(self) -> None:
        """Register connect and disconnect (client events never reach these: sockets/base.py)."""
        self._sio.on("connect", handler=self.on_connect)
        self._sio.on("disconnect", handler=self.on_disconnect)

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> bool:
        """Accept an IDE (`{"token"}`) or a drone (`{"registrationId", "key"}`); refuse the rest."""
        try:
            if isinstance(auth, dict) and "token" in auth:
                await self._ide(sid, auth["token"], auth.get("watchDrones") is True)
            elif isinstance(auth, dict) and "registrationId" in auth:
                await self._drone(sid, auth)
            else:
                raise AuthError(
                    'expected auth {"token": JWT} for an IDE or {"registrationId", "key"} for a drone'
                )
        except AuthError as exc:
            logger.warning("refused connection %s: %s", sid, exc)
            raise socketio.exceptions.ConnectionRefusedError(str(exc)) from None
        return True

    async def _ide(self, sid: str, token: Any, watch_drones: bool) -> None:
        user_id = self._auth.user_id_from_token(token)
        user = await self._store.get_user(user_id)
        if user is None:
            raise AuthError("unknown user: log in again")
        self._ides.add(IdeLink(sid, user.id, user.username))
        if watch_drones:
            await self._sio.enter_room(sid, user_room(user.id))

    async def _drone(self, sid: str, auth: dict[str, Any]) -> None:
        drone_id = auth.get("registrationId")
        drone = await self._store.get_drone(drone_id) if isinstance(drone_id, str) else None
        if drone is None or not self._auth.check_drone_key(drone.key_hash, auth.get("key")):
            raise AuthError("unknown drone or wrong key: register it with `gadget drone register`")
        with log_context(drone=drone.id, user=drone.owner_id):
            await self._drone_known(sid, drone.id, drone.owner_id, drone.name, hello_of(auth))

    async def _drone_known(
        self, sid: str, drone_id: str, owner_id: str, name: str, hello: Hello
    ) -> None:
        # Cut to the column's size: PostgreSQL refuses longer values (SQLite would keep them).
        self._drones.seen(drone_id, hello.hostname[:255] if hello.hostname else None)
        other = await self._drones.presence.drone(drone_id)
        taken = await self._drones.connect(drone_id, owner_id, name, sid, hello)
        await self._replace(taken, other)
        await self._recovery.drone_connected(taken)

    async def _replace(self, taken: Taken, other: dict[str, Any] | None) -> None:
        """Close the drone's older socket; another process with its id is told why."""
        old_sid = taken.replaced_sid
        if old_sid is None and other is not None and other.get("online"):
            old_sid = other.get("sid") if other.get("sid") != taken.state.sid else None
        if old_sid is None:
            return
        hello = taken.state.hello
        same_process = other is not None and other.get("instance") == hello.instance
        if not same_process:
            where = f"host {hello.hostname or '?'} (pid {hello.pid or '?'})"
            message = (
                f"drone {taken.state.name} was started again on {where}: this process "
                "stops. Run one drone process per registration (or register another)."
            )
            logger.warning(
                "drone %s: another process connected from %s", taken.state.drone_id, where
            )
            conflict = {"hostname": hello.hostname, "pid": hello.pid, "at": utcnow().isoformat()}
            await self._drones.note(taken.state.drone_id, conflict=conflict)
            await self._bus.to_sid(
                old_sid,
                HubEvent.ERROR,
                {"event": "connect", "message": message, "code": ErrorCode.REPLACED.value},
            )
        else:
            logger.info("drone %s reconnected; closing its older socket", taken.state.drone_id)
        await self._sio.disconnect(old_sid)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        """Forget the socket; a drone's turn and an IDE's lock get their grace period."""
        ide = self._ides.get(sid)
        if ide is not None:
            with log_context(user=ide.user_id, drone=ide.drone_id):
                await self._sessions.ide_gone(ide)
            return
        state = await self._drones.disconnect(sid)
        if state is None:
            return
        with log_context(drone=state.drone_id, user=state.owner_id):
            await self._recovery.drone_disconnected(state)
            self._drones.seen(state.drone_id)  # best effort: a database outage only logs it


def hello_of(auth: dict[str, Any]) -> Hello:
    """What a drone's `auth` says about it; malformed optional parts are ignored."""
    running = auth.get("running")
    turn = running.get("turnId") if isinstance(running, dict) else None
    seq = running.get("seq") if isinstance(running, dict) else None
    ran = (
        (turn, seq)
        if isinstance(turn, str) and 0 < len(turn) <= MAX_ID and type(seq) is int and seq >= 0
        else None
    )
    recovering = auth.get("recovering")
    pid = auth.get("pid")
    instance = auth.get("instance")
    hostname = auth.get("hostname")
    sandbox = auth.get("sandbox")
    info: dict[str, Any] = {
        "model": _model_info(auth.get("model")),
        "models": _models(auth.get("models")),
        "mcp": _mcp(auth.get("mcp")),
    }
    if sandbox in ("bwrap", "none"):
        info["sandbox"] = sandbox
    return Hello(
        instance=instance[:MAX_ID] if isinstance(instance, str) else None,
        pid=pid if type(pid) is int else None,
        hostname=hostname[:255] if isinstance(hostname, str) else None,
        says_running="running" in auth,
        running=ran,
        recovering=recovering
        if isinstance(recovering, str) and len(recovering) <= MAX_ID
        else None,
        info=info,
    )


def _model_info(value: Any) -> dict[str, Any] | None:
    """The drone's model report, or None when absent or malformed (it is only informative)."""
    try:
        return ModelInfo.model_validate(value).model_dump(exclude_none=True) if value else None
    except ValidationError:
        logger.info("ignored a malformed model report from a drone")
        return None


#: Most model names and MCP servers kept from a drone's report.
_MAX_LISTED = 500


def _models(value: Any) -> list[str] | None:
    """The model names the drone's endpoint lists, or None (unknown, or malformed)."""
    if not isinstance(value, list):
        return None
    names = [v for v in value[:_MAX_LISTED] if isinstance(v, str) and 0 < len(v) <= MAX_ID]
    return names if len(names) == len(value[:_MAX_LISTED]) else None


def _mcp(value: Any) -> list[dict[str, Any]] | None:
    """The drone's MCP servers as it reported them, or None (none, or malformed)."""
    if not isinstance(value, list):
        return None
    try:
        servers = [McpServerInfo.model_validate(v) for v in value[:_MAX_LISTED]]
    except ValidationError:
        logger.info("ignored a malformed MCP report from a drone")
        return None
    return [server.model_dump(exclude_none=True) for server in servers]
