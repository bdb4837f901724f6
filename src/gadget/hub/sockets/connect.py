"""Connect and disconnect: who a socket is (IDE by JWT, drone by registration key)."""

from __future__ import annotations

import logging
from typing import Any

import socketio
from pydantic import ValidationError

from gadget.hub.auth import Auth
from gadget.hub.exceptions import AuthError
from gadget.hub.recovery import Recovery
from gadget.hub.routing import IdeLink, Router, user_room
from gadget.hub.sessions import Sessions
from gadget.protocol import ModelInfo
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
        router: Router,
        sessions: Sessions,
        recovery: Recovery,
    ) -> None:
        self._sio = sio
        self._auth = auth
        self._store = store
        self._router = router
        self._sessions = sessions
        self._recovery = recovery

    def install(self) -> None:
        """Register connect and disconnect."""
        self._sio.on("connect", handler=self.on_connect)
        self._sio.on("disconnect", handler=self.on_disconnect)

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> bool:
        """Accept an IDE (`{"token"}`) or a drone (`{"registrationId", "key"}`); refuse the rest."""
        try:
            if isinstance(auth, dict) and "token" in auth:
                await self._ide(sid, auth["token"])
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

    async def _ide(self, sid: str, token: Any) -> None:
        user_id = self._auth.user_id_from_token(token)
        user = await self._store.get_user(user_id)
        if user is None:
            raise AuthError("unknown user: log in again")
        self._router.ides[sid] = IdeLink(sid, user.id, user.username)
        await self._sio.enter_room(sid, user_room(user.id))

    async def _drone(self, sid: str, auth: dict[str, Any]) -> None:
        drone_id = auth.get("registrationId")
        drone = await self._store.get_drone(drone_id) if isinstance(drone_id, str) else None
        if drone is None or not self._auth.check_drone_key(drone.key_hash, auth.get("key")):
            raise AuthError("unknown drone or wrong key: register it with `gadget drone register`")
        hostname = auth.get("hostname")
        # Cut to the column's size: PostgreSQL refuses longer values (SQLite would keep them).
        await self._store.touch_drone(
            drone.id, hostname[:255] if isinstance(hostname, str) else None
        )
        link = self._router.drone(drone.id, drone.owner_id, drone.name)
        link.model = _model_info(auth.get("model"))
        sandbox = auth.get("sandbox")
        link.sandbox = sandbox if sandbox in ("bwrap", "none") else None
        link.last_seen = utcnow().isoformat()
        replaced = self._router.attach_drone(link, sid)
        if replaced is not None:
            logger.info("drone %s reconnected; closing its older socket %s", drone.id, replaced)
            await self._sio.disconnect(replaced)
        await self._recovery.drone_online(link)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        """Forget the socket; a drone's turn and an IDE's lock get their grace period."""
        ide = self._router.ides.get(sid)
        if ide is not None:
            await self._sessions.ide_gone(ide)
            return
        link = self._router.detach_drone(sid)
        if link is not None and link.sid is None:
            link.last_seen = utcnow().isoformat()
            await self._store.touch_drone(link.drone_id)
            await self._recovery.drone_offline(link)


def _model_info(value: Any) -> dict[str, Any] | None:
    """The drone's model report, or None when absent or malformed (it is only informative)."""
    try:
        return ModelInfo.model_validate(value).model_dump(exclude_none=True) if value else None
    except ValidationError:
        logger.info("ignored a malformed model report from a drone")
        return None
