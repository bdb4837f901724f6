"""Acknowledgements: once a batch is committed, each drone hears how far its turn is stored."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from gadget.hub.bus import Bus
from gadget.hub.state.drones import Drones
from gadget.hub.stream.recorder import Recorder
from gadget.protocol import HubEvent
from gadget.store.batch import Outcome, TurnWrite

#: Turns acknowledged between two yields to the event loop.
ACK_STEP = 100


class Acks:
    """The writer's commit callback: `streamAck(turnId, seq)` per turn, one per batch."""

    def __init__(self, drones: Drones, recorder: Recorder, bus: Bus) -> None:
        self._drones = drones
        self._recorder = recorder
        self._bus = bus

    async def committed(self, pairs: Sequence[tuple[TurnWrite, Outcome]]) -> None:
        """Forget what is stored or lost, and acknowledge what is stored to its drone."""
        for i, (write, outcome) in enumerate(pairs):
            if i % ACK_STEP == ACK_STEP - 1:  # let the relay run between steps of a large batch
                await asyncio.sleep(0)
            self._recorder.stored(write, outcome)
            if write.drone_id is None:
                continue
            if outcome is Outcome.FENCED:
                self._drones.lost(write.drone_id, write.epoch)
                continue
            state = self._drones.here(write.drone_id)
            if state is not None:
                await self._bus.to_sid(state.sid, HubEvent.STREAM_ACK, write.turn_id, write.to_seq)
