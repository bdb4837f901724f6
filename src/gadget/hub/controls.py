"""What the person sets for a chat session's agent: its permission mode and its model.

Both are stored on the chat session (its REST JSON, and the chatSession object of every
work order). A mode change reaches a running turn at once (hub → drone
`setPermissionMode({turnId, mode})`); a model change counts from the next turn. Every
IDE of the session hears of either (`permissionModeChanged`, `modelChanged`).
"""

from __future__ import annotations

from gadget.hub.core import Service
from gadget.hub.exceptions import Refused
from gadget.protocol import HubEvent, PermissionMode
from gadget.store.leases import Lease
from gadget.store.tables import User

#: Most of a drone's model names quoted in a refusal.
_SHOWN_MODELS = 20


class Controls(Service):
    """Permission modes and models of chat sessions, and each user's default mode."""

    def default_mode(self, user: User) -> PermissionMode:
        """The permission mode a new chat session of `user` starts in."""
        if user.default_permission_mode in {m.value for m in PermissionMode}:
            return PermissionMode(user.default_permission_mode)
        return self._settings.default_permission_mode

    async def set_permission_mode(self, lease: Lease, mode: PermissionMode) -> None:
        """Store the locked session's mode; tell a running turn's drone and the IDEs."""
        chat = lease.chat_session_id or ""
        await self._store.set_permission_mode(chat, mode)
        if lease.current_turn_id is not None:
            record = await self._drones.presence.drone(lease.drone_id)
            if record is not None and record.get("online") and record.get("sid"):
                payload = {"turnId": lease.current_turn_id, "mode": mode.value}
                await self._bus.to_sid(str(record["sid"]), HubEvent.SET_PERMISSION_MODE, payload)
        payload = {"chatSession": chat, "mode": mode.value}
        await self._bus.to_session(chat, HubEvent.PERMISSION_MODE_CHANGED, payload)

    async def set_model(self, lease: Lease, model: str | None) -> None:
        """Store the model of the locked session's next turns (None: the drone's default).

        Raises:
            Refused: the drone lists its models and `model` is not among them.
        """
        if model is not None:
            record = await self._drones.presence.drone(lease.drone_id)
            listed = record.get("models") if record is not None else None
            if isinstance(listed, list) and listed and model not in listed:
                names = ", ".join(str(m) for m in listed[:_SHOWN_MODELS])
                more = " …" if len(listed) > _SHOWN_MODELS else ""
                raise Refused(f"model {model[:80]!r} is not one the drone lists: {names}{more}")
        chat = lease.chat_session_id or ""
        await self._store.set_model(chat, model)
        payload = {"chatSession": chat, "model": model}
        await self._bus.to_session(chat, HubEvent.MODEL_CHANGED, payload)
