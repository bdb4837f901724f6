"""Crash recovery, reconnects and deadlines: no turn stays processing forever.

The hub never guesses what a drone runs; the drone says it at connect (its
`auth.running`), and a rule decides:

- it runs the lease's current turn → the turn resumes (its events are resent
  from the last acknowledged one and applied once);
- it runs another turn → that turn is stale: the drone is told to discard it;
- it runs nothing → the lease's turn is waiting for a retry (left alone), or the
  drone is about to ask to recover it (`auth.recovering`), or it ends now with a
  clear error; a reference drone (which says nothing) gets `recovery_window_s`
  to ask for recovery or stream into it.

A drone that asks `requestCrashRecovery` for its current turn gets `retry`; the
retry is a swept deadline (`retry_delay_ms`); after `max_retries` the turn ends.
A drone away longer than `drone_grace_s` loses its turn; a lock whose IDEs stay
away that long is released (never mid-turn).
"""

from __future__ import annotations

import logging
from typing import Any

from gadget.hub.approvals import Approvals
from gadget.hub.bus import drone_room
from gadget.hub.cluster import NodeHandler
from gadget.hub.core import Core, Service
from gadget.hub.exceptions import Unavailable
from gadget.hub.sessions import Sessions
from gadget.hub.state.drones import DroneState, Taken
from gadget.hub.turns import WorkOrders
from gadget.protocol import (
    CrashRecoveryRequest,
    CrashRecoveryResponse,
    DroneEvent,
    HubEvent,
    TurnStatus,
)
from gadget.store.leases import Lease
from gadget.store.tables import utcnow

logger = logging.getLogger(__name__)


class Recovery(Service):
    """Decides what happens to turns whose drone crashed, vanished or outlived the hub."""

    def __init__(
        self, core: Core, turns: WorkOrders, sessions: Sessions, approvals: Approvals
    ) -> None:
        super().__init__(core)
        self._turns = turns
        self._sessions = sessions
        self._approvals = approvals

    def node_handlers(self) -> dict[str, NodeHandler]:
        """What another node may tell this one (hub/cluster.py)."""
        return {"lost": self._lost, "deadline": self._deadline_handed}

    async def _elsewhere(self, kind: str, lease: Lease) -> bool:
        """Whether the drone's socket is on another live node, to which the deadline that
        this node's sweep claimed is then handed (it streams there, or retries there)."""
        if self._drones.here(lease.drone_id) is not None:
            return False
        record = await self._drones.presence.drone(lease.drone_id)
        node = record.get("node") if record is not None and record.get("online") else None
        if not isinstance(node, str) or node == self._drones.node:
            return False
        logger.info("a %s deadline of drone %s goes to node %s, which holds it",
                    kind, lease.drone_id, node)  # fmt: skip
        await self._cluster.send(node, "deadline", {"kind": kind, "droneId": lease.drone_id})
        return True

    async def _deadline_handed(self, payload: dict[str, Any]) -> None:
        """Another node's sweep claimed a deadline of a drone whose socket is here."""
        lease = await self._drones.lease(str(payload["droneId"]))
        now = utcnow()
        if lease is None:
            return
        due = {"retry": lease.retry_at, "drone": lease.drone_deadline}.get(str(payload["kind"]))
        if due is None or due > now:
            return  # cleared or moved meanwhile (the drone came back, the turn ended)
        if payload["kind"] == "retry":
            await self.retry_due(lease)
        else:
            await self.drone_stayed_away(lease)

    async def _lost(self, payload: dict[str, Any]) -> None:
        """Another node took a drone this node held at `epoch`: stop recording for it."""
        self._drones.lost(str(payload["droneId"]), int(payload["epoch"]))

    # -- drones coming and going -----------------------------------------------
    async def drone_connected(self, taken: Taken) -> None:
        """Apply the reconnect rules (module docstring) and announce the drone."""
        state, lease, hello = taken.state, taken.before, taken.state.hello
        if lease.owner_node not in (None, self._drones.node):  # it comes from another node
            payload = {"droneId": state.drone_id, "epoch": lease.epoch}
            await self._cluster.send(lease.owner_node, "lost", payload)
        current = lease.current_turn_id
        running = hello.running
        if running is not None and running[0] != current:
            await self._stale(state, *running)
        if current is not None:
            if running is not None and running[0] == current:
                live = await self._drones.adopt(state, current)
                if live is None and state.live is None:
                    await self._stale(state, *running)
                elif live is not None:
                    await self._approvals.resume(state, live)
            elif lease.retry_at is not None:
                pass  # a retry is due: the sweep sends the work order again
            elif hello.recovering == current or not hello.says_running:
                await self._drones.unclaimed(
                    state.drone_id, current, self._settings.recovery_window_s
                )
            else:
                await self._turns.fail(
                    state.drone_id,
                    current,
                    "the drone reconnected without this turn (it was no longer running it)",
                )
        if lease.chat_session_id is not None:
            word = "reconnected" if current or lease.owner_node else "connected"
            await self._bus.to_room(
                drone_room(state.drone_id), DroneEvent.STATUS, f"drone {state.name} {word}"
            )
        await self.publish(state.drone_id, state.owner_id)

    async def _stale(self, state: DroneState, turn_id: str, seq: int) -> None:
        """The drone holds events of a turn that is not current: acknowledge what is
        stored (so it forgets them) or tell it to discard the rest."""
        turn = await self._store.get_turn(turn_id)
        if (
            turn is not None
            and turn.applied_seq >= seq
            and turn.status != TurnStatus.PROCESSING.value
        ):
            await self._bus.to_sid(state.sid, HubEvent.STREAM_ACK, turn_id, turn.applied_seq)
            return
        logger.info("drone %s holds stale turn %s: told to discard it", state.drone_id, turn_id)
        answer = CrashRecoveryResponse(turnId=turn_id, action="discard")
        await self._bus.to_sid(
            state.sid, HubEvent.CRASH_RECOVERY_RESPONSE, answer.model_dump(exclude_none=True)
        )

    async def stale_event(self, state: DroneState, turn_id: str, seq: int) -> None:
        """A stream event for a turn that is not current here (answered once per turn)."""
        await self._stale(state, turn_id, seq)

    async def drone_disconnected(self, state: DroneState) -> None:
        """A drone's socket closed: tell its lock's IDEs and the drone list."""
        await self._bus.to_room(
            drone_room(state.drone_id), DroneEvent.STATUS, f"drone {state.name} disconnected"
        )
        try:
            await self.publish(state.drone_id, state.owner_id)
        except Unavailable as exc:  # the drone list learns it from the next droneState
            logger.warning("drone %s left; its state is not published: %s", state.drone_id, exc)

    # -- crash recovery --------------------------------------------------------
    async def crash_recovery(self, state: DroneState, req: CrashRecoveryRequest) -> None:
        """Answer a restarted drone about the work order it found in its cache."""
        action = await self._decide(state, req)
        answer = CrashRecoveryResponse(turnId=req.turnId, action=action)
        if action == "retry":
            answer = answer.model_copy(update={"retryDelay": self._settings.retry_delay_ms})
        await self._bus.to_sid(
            state.sid, HubEvent.CRASH_RECOVERY_RESPONSE, answer.model_dump(exclude_none=True)
        )

    async def _decide(self, state: DroneState, req: CrashRecoveryRequest) -> str:
        turn = await self._store.get_turn(req.turnId)
        lease = await self._drones.lease(state.drone_id)
        if turn is None or turn.status != TurnStatus.PROCESSING.value:
            return "discard"
        if lease is None or lease.current_turn_id != turn.id:
            logger.warning(
                "drone %s asked to recover turn %s it does not hold", state.drone_id, turn.id
            )
            return "discard"
        if turn.retries >= self._settings.max_retries:
            reason = f"drone crashed {turn.retries + 1} times; gave up after {turn.retries} retries"
            await self._turns.fail(state.drone_id, turn.id, reason)
            return "discard"
        if not await self._drones.retry_later(
            state.drone_id, turn.id, self._settings.retry_delay_ms / 1000
        ):
            return "discard"
        return "retry"

    # -- deadlines (hub/state/sweeper.py) --------------------------------------
    async def retry_due(self, lease: Lease) -> None:
        """Send a crashed drone's turn again, as a new attempt continuing its seq."""
        if await self._elsewhere("retry", lease):
            return
        state = self._drones.here(lease.drone_id)
        turn_id = lease.current_turn_id
        if state is None or turn_id is None:
            return  # the drone is away: its grace deadline decides
        live = await self._drones.start_attempt(state, turn_id)
        if live is None:
            return
        await self._bus.to_session(
            live.chat_session_id, DroneEvent.STATUS, f"retrying turn (attempt {live.attempt})"
        )
        snapshot = live.snapshot()
        # Open IDEs redraw the turn: the next text starts the new attempt's first block.
        await self._bus.to_session(live.chat_session_id, HubEvent.TURN_SNAPSHOT, snapshot.wire())
        self._turns.dispatch(state.drone_id, snapshot, state.sid)

    async def drone_stayed_away(self, lease: Lease) -> None:
        """End the turn of a drone that did not come back (or did not claim it)."""
        if lease.current_turn_id is None or await self._elsewhere("drone", lease):
            return
        state = self._drones.here(lease.drone_id)
        if state is not None and state.live is not None and state.live.id == lease.current_turn_id:
            return  # it came back and streams into it
        why = (
            "the drone reconnected without this turn and did not recover it"
            if lease.drone_deadline_reason == "unclaimed"
            else "drone disconnected"
        )
        await self._turns.fail(lease.drone_id, lease.current_turn_id, why)

    async def ides_stayed_away(self, lease: Lease) -> None:
        """Release a lock whose IDEs stayed away (a running turn keeps it)."""
        chat = lease.chat_session_id
        if chat is None:
            return
        if await self._drones.presence.ides(chat) > 0:
            return
        if lease.current_turn_id is not None:
            await self._drones.ides_away(lease.drone_id, chat)  # look again after a grace period
            return
        drone = await self._store.get_drone(lease.drone_id)
        if drone is not None:
            await self._sessions.lock_expired(lease, drone.owner_id)
