"""A turn's changes: what its drone reported (`turnChanges`), and undoing them (`revertTurn`).

The drone checkpoints the workspace around each turn and reports the files the turn
changed; the hub records them as the turn's `changes`. `revertTurn` asks the drone to
restore them (a second call re-applies them); the drone leaves alone, and lists, files
changed since. The hub stores whether the turn is reverted and tells every IDE of the
session (`turnReverted`).
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from gadget.hub.core import Service
from gadget.hub.exceptions import NotFound, Refused
from gadget.protocol import HubEvent, RevertOutcome, TurnStatus
from gadget.store.leases import Lease

logger = logging.getLogger(__name__)

#: Seconds a drone has to restore a turn's files.
REVERT_TIMEOUT_S = 60.0


class Changes(Service):
    """Undo and redo of finished turns."""

    async def revert(self, lease: Lease, turn_id: str) -> RevertOutcome:
        """Undo (or re-apply) a finished turn of the locked session; what the drone did.

        Raises:
            NotFound: the turn is not one of the locked session's.
            Refused: a turn is processing, the drone is offline, or it could not do it.
        """
        current = self._drones.live(lease.current_turn_id or "")
        if current is not None and current.ended:  # its end is not stored yet: wait for it
            await self._writer.flush()
            lease = await self._drones.lease(lease.drone_id) or lease
        turn = await self._store.get_turn(turn_id)
        if turn is None or turn.chat_session_id != lease.chat_session_id:
            raise NotFound(f"unknown turn {turn_id} in this chat session")
        if lease.current_turn_id is not None or turn.status == TurnStatus.PROCESSING.value:
            raise Refused("a turn is processing: wait for it to end (or cancel it) to undo one")
        record = await self._drones.presence.drone(lease.drone_id)
        if record is None or not record.get("online") or not record.get("sid"):
            raise Refused("the drone is offline: its workspace cannot be changed now")
        ack = await self._bus.call(
            str(record["sid"]), HubEvent.REVERT_TURN, turn_id, timeout=REVERT_TIMEOUT_S
        )
        if not ack or ack[0] is not True:
            reason = ack[1] if len(ack) > 1 and isinstance(ack[1], str) else "refused"
            raise Refused(reason)  # the drone's own words (it says what to do)
        try:
            outcome = RevertOutcome.model_validate(ack[1] if len(ack) > 1 else None)
        except ValidationError:
            logger.warning("drone %s answered revertTurn with %r", lease.drone_id, ack[:2])
            raise Refused("the drone's answer to revertTurn was malformed") from None
        await self._store.set_reverted(turn_id, outcome.reverted)
        payload = {
            "turnId": turn_id,
            "reverted": outcome.reverted,
            "conflicts": [c.model_dump() for c in outcome.conflicts],
        }
        await self._bus.to_session(turn.chat_session_id, HubEvent.TURN_REVERTED, payload)
        return outcome
