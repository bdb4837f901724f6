"""Crash recovery, retries and grace timers: no turn stays processing forever.

- A drone that asks `requestCrashRecovery` for its processing turn gets
  `retry`; after `retry_delay_ms` the hub sends `processWorkOrder` for that turn
  again (the reference leaves this as a TODO). After `max_retries` the turn ends
  as error.
- A drone that disconnects mid-turn and is not back within `drone_grace_s`
  loses its turn ("drone disconnected").
- A hub that restarts finds processing turns in the database: a drone that
  reconnects gets its lock and turn back and keeps streaming into the same
  block; the others fall to the same grace timer.
"""

from __future__ import annotations

import asyncio
import logging

from gadget.hub.core import Core, Service
from gadget.hub.routing import DroneLink, Lock
from gadget.hub.sessions import Sessions
from gadget.hub.turns import WorkOrders
from gadget.protocol import (
    CrashRecoveryRequest,
    CrashRecoveryResponse,
    DroneEvent,
    HubEvent,
    TurnStatus,
)

logger = logging.getLogger(__name__)


class Recovery(Service):
    """Decides what happens to turns whose drone crashed, vanished or outlived the hub."""

    def __init__(self, core: Core, turns: WorkOrders, sessions: Sessions) -> None:
        super().__init__(core)
        self._turns = turns
        self._sessions = sessions

    # -- crash recovery --------------------------------------------------------
    async def crash_recovery(self, link: DroneLink, req: CrashRecoveryRequest) -> None:
        """Answer a restarted drone about the work order it found in its cache."""
        action = await self._decide(link, req)
        answer = CrashRecoveryResponse(turnId=req.turnId, action=action)
        if action == "retry":
            answer = answer.model_copy(update={"retryDelay": self._settings.retry_delay_ms})
        assert link.sid is not None
        await self._bus.to_sid(
            link.sid, HubEvent.CRASH_RECOVERY_RESPONSE, answer.model_dump(exclude_none=True)
        )
        if action == "retry":
            self._tasks.start_timer(
                f"retry:{req.turnId}",
                self._settings.retry_delay_ms / 1000,
                lambda: self._retry(link, req.turnId),
            )

    async def _decide(self, link: DroneLink, req: CrashRecoveryRequest) -> str:
        turn = await self._store.get_turn(req.turnId)
        if turn is None or turn.status != TurnStatus.PROCESSING.value:
            return "discard"
        chat = await self._store.get_chat_session(turn.chat_session_id)
        if chat is None or chat.drone_id != link.drone_id:
            logger.warning(
                "drone %s asked to recover turn %s of another drone", link.drone_id, turn.id
            )
            return "discard"
        if turn.retries >= self._settings.max_retries:
            reason = f"drone crashed {turn.retries + 1} times; gave up after {turn.retries} retries"
            await self._turns.fail(link, turn.id, reason)
            return "discard"
        if link.lock is None or link.lock.chat_session_id != chat.id:
            await self._restore(link, chat.id)
        link.current_turn_id = turn.id
        self._tasks.cancel_timer(f"drone-grace:{link.drone_id}")
        return "retry"

    async def _retry(self, link: DroneLink, turn_id: str) -> None:
        turn = await self._store.get_turn(turn_id)
        if turn is None or turn.status != TurnStatus.PROCESSING.value:
            return
        if link.current_turn_id != turn_id:
            return  # the turn was cancelled or failed meanwhile
        await self._store.add_retry(turn_id)
        if self._recorder.active(turn_id):
            self._recorder.new_attempt(turn_id)
        else:
            stored = await self._store.turn_out(turn_id)
            assert stored is not None
            self._recorder.start(stored, attempt=stored.retries + 1)
        snapshot = self._recorder.snapshot(turn_id)
        assert snapshot is not None
        await self._bus.to_session(
            turn.chat_session_id,
            DroneEvent.STATUS,
            f"retrying turn (attempt {snapshot.retries + 1})",
        )
        # Open IDEs redraw the turn: the next text starts the new attempt's first block.
        await self._bus.to_session(turn.chat_session_id, HubEvent.TURN_SNAPSHOT, snapshot.wire())
        self._turns.dispatch(link, snapshot)

    # -- drones coming and going -----------------------------------------------
    async def drone_online(self, link: DroneLink) -> None:
        """A drone (re)connected: stop its grace timer, or restore its turn after a hub restart."""
        was_waiting = self._tasks.cancel_timer(f"drone-grace:{link.drone_id}")
        if link.lock is None:
            await self._resume_after_restart(link)
        if link.lock is not None:
            word = "reconnected" if was_waiting or link.current_turn_id else "connected"
            await self._bus.to_session(
                link.lock.chat_session_id, DroneEvent.STATUS, f"drone {link.name} {word}"
            )
        await self._sessions.publish(link)

    async def drone_offline(self, link: DroneLink) -> None:
        """A drone disconnected: its turn waits `drone_grace_s` for it, then fails."""
        if link.lock is not None:
            await self._bus.to_session(
                link.lock.chat_session_id, DroneEvent.STATUS, f"drone {link.name} disconnected"
            )
        await self._sessions.publish(link)
        if link.current_turn_id is None:
            return
        self._arm_drone_grace(link, link.current_turn_id)

    def _arm_drone_grace(self, link: DroneLink, turn_id: str) -> None:
        async def expire() -> None:
            if link.online or link.current_turn_id != turn_id:
                return
            await self._turns.fail(link, turn_id, "drone disconnected")

        self._tasks.start_timer(
            f"drone-grace:{link.drone_id}", self._settings.drone_grace_s, expire
        )

    async def _resume_after_restart(self, link: DroneLink) -> None:
        for turn, chat in await self._store.processing_turns():
            if chat.drone_id == link.drone_id and not self._recorder.active(turn.id):
                await self._restore(link, chat.id)
                stored = await self._store.turn_out(turn.id)
                assert stored is not None
                self._recorder.start(stored, attempt=stored.retries + 1, resume_growing=True)
                link.current_turn_id = turn.id
                logger.info(
                    "resumed turn %s of drone %s after a hub restart", turn.id, link.drone_id
                )
                return

    async def _restore(self, link: DroneLink, chat_session_id: str) -> None:
        chat = await self._store.get_chat_session(chat_session_id)
        drone = await self._store.get_drone(link.drone_id)
        project = await self._store.get_project(chat.project_id) if chat else None
        user = await self._store.get_user(chat.user_id) if chat else None
        if chat is None or drone is None or project is None or user is None:
            return
        link.lock = Lock.of(chat, user.id, user.username, drone, project)

    async def orphans_at_start(self) -> None:
        """At hub start: every processing turn gets the grace period to see its drone back."""
        for turn, chat in await self._store.processing_turns():
            drone_id = chat.drone_id

            async def expire(turn_id: str = turn.id, drone_id: str | None = drone_id) -> None:
                link = self._router.drones.get(drone_id or "")
                if link is not None and link.current_turn_id == turn_id:
                    return  # its drone came back and owns it again
                stored = await self._store.get_turn(turn_id)
                if stored is not None and stored.status == TurnStatus.PROCESSING.value:
                    await self._turns.fail(link, turn_id, "drone disconnected")

            self._tasks.start_timer(f"orphan:{turn.id}", self._settings.drone_grace_s, expire)
        await asyncio.sleep(0)
