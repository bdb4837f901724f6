"""Work orders: a prompt becomes a turn, goes to the drone, and ends finished or error."""

from __future__ import annotations

import logging
from typing import Any

from gadget.hub.core import Core, Service
from gadget.hub.exceptions import HubError, NotFound, Refused
from gadget.hub.routing import DroneLink, IdeLink
from gadget.protocol import DroneEvent, HubEvent, TurnOut, TurnStatus, WorkspaceMode

logger = logging.getLogger(__name__)


class WorkOrders(Service):
    """Creates turns, dispatches them to drones and closes them."""

    def __init__(self, core: Core) -> None:
        super().__init__(core)
        #: Drones whose new turn is being created (a second prompt is refused meanwhile).
        self._claimed: set[str] = set()
        #: Turns an IDE asked to cancel: their end is recorded as cancelled.
        self._cancelling: set[str] = set()

    def locked_drone(self, ide: IdeLink) -> DroneLink:
        """The drone this IDE socket holds the lock of.

        Raises:
            Refused: the socket holds no lock (any more).
        """
        link = self._router.drones.get(ide.drone_id or "")
        if link is None or link.lock is None or link.lock.chat_session_id != ide.chat_session_id:
            raise Refused("no session lock: call requestSessionLock first")
        if link.lock.user_id != ide.user_id:
            raise Refused("the session lock belongs to another user")
        return link

    async def submit(self, ide: IdeLink, prompt: str) -> str:
        """Create a turn for `prompt` and send it to the locked drone; returns the turn id."""
        link = self.locked_drone(ide)
        if not link.online:
            raise Refused(f"drone {link.name} is offline")
        if link.current_turn_id is not None or link.drone_id in self._claimed:
            raise Refused(
                f"a turn is already processing ({link.current_turn_id}); wait or cancel it"
            )
        if link.workspace_mode is WorkspaceMode.USER:
            raise Refused("the workspace is in user mode: switch it back to idle to send prompts")
        assert link.lock is not None
        lock = link.lock
        self._claimed.add(link.drone_id)
        try:
            row = await self._store.create_turn(lock.chat_session_id, ide.user_id, prompt)
            turn = await self._store.turn_out(row.id)
        finally:
            self._claimed.discard(link.drone_id)
        assert turn is not None
        link.current_turn_id = turn.id
        self._recorder.start(turn)
        await self._bus.to_session(lock.chat_session_id, HubEvent.TURN_STARTED, turn.wire())
        self.dispatch(link, turn)
        return turn.id

    def dispatch(self, link: DroneLink, turn: TurnOut) -> None:
        """Send `processWorkOrder` in the background; a refusal ends the turn as error."""
        self._tasks.spawn(self._dispatch(link, turn), name=f"dispatch:{turn.id}")

    async def _dispatch(self, link: DroneLink, turn: TurnOut) -> None:
        lock = link.lock
        if link.sid is None or lock is None:
            await self.fail(link, turn.id, f"drone {link.name} is offline")
            return
        args = (lock.registration, lock.project, lock.chat_session, turn.wire())
        try:
            ack = await self._bus.call(
                link.sid,
                HubEvent.PROCESS_WORK_ORDER,
                *args,
                timeout=self._settings.work_order_ack_timeout_s,
            )
        except HubError as exc:
            await self.fail(link, turn.id, f"drone did not accept the work order: {exc}")
            return
        if not ack or ack[0] is not True:
            reason = ack[1] if len(ack) > 1 and isinstance(ack[1], str) else "refused"
            await self.fail(link, turn.id, f"drone refused the work order: {reason}")

    async def complete(
        self, link: DroneLink, turn_id: str, success: bool, message: str | None
    ) -> None:
        """The drone finished its current turn: record it, tell the IDEs, free the drone."""
        status = TurnStatus.FINISHED if success else TurnStatus.ERROR
        error = None if success else (message or "the drone reported a failure")
        cancelled = not success and turn_id in self._cancelling
        self._cancelling.discard(turn_id)
        self._recorder.finish(turn_id, status, error, cancelled)
        link.current_turn_id = None
        if link.lock is not None:
            await self._bus.to_session(
                link.lock.chat_session_id,
                DroneEvent.WORK_ORDER_COMPLETE,
                *((turn_id, success) if message is None else (turn_id, success, message)),
            )

    async def fail(
        self, link: DroneLink | None, turn_id: str, message: str, cancelled: bool = False
    ) -> None:
        """End a turn as error with `message` and tell the IDEs of its session."""
        logger.warning("turn %s failed: %s", turn_id, message)
        self._cancelling.discard(turn_id)
        if self._recorder.active(turn_id):
            self._recorder.finish(turn_id, TurnStatus.ERROR, message, cancelled)
        else:
            await self._store.set_turn_status(turn_id, TurnStatus.ERROR, message, cancelled)
        if link is not None and link.current_turn_id == turn_id:
            link.current_turn_id = None
        turn = await self._store.get_turn(turn_id)
        if turn is not None:
            await self._bus.to_session(
                turn.chat_session_id, DroneEvent.WORK_ORDER_COMPLETE, turn_id, False, message
            )

    async def cancel(self, ide: IdeLink, turn_id: str) -> None:
        """Ask the drone to cancel its current turn."""
        link = self.locked_drone(ide)
        if link.current_turn_id != turn_id:
            raise NotFound(f"turn {turn_id} is not running on this session's drone")
        if link.sid is None:
            await self.fail(link, turn_id, "cancelled (the drone was offline)", cancelled=True)
            return
        self._cancelling.add(turn_id)
        await self._bus.to_sid(link.sid, HubEvent.CANCEL_WORK_ORDER, turn_id)

    def snapshot(self, turn_id: str) -> TurnOut | None:
        """The live turn, if it is being recorded."""
        return self._recorder.snapshot(turn_id)

    async def turn_json(self, turn_id: str) -> dict[str, Any] | None:
        """The turn as JSON: live when recording (nothing buffered is missing), else stored."""
        turn = self._recorder.snapshot(turn_id) or await self._store.turn_out(turn_id)
        return turn.wire() if turn is not None else None
