"""The drone's socket client: connection, work orders, modes, cancel and termination."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import socketio

from gadget.config import DroneSettings
from gadget.drone.agent.model import OpenAIModel
from gadget.drone.agent.tools.groups import CommandGroups
from gadget.drone.agent.workspace import Workspace
from gadget.drone.events import LogForwarder
from gadget.drone.exceptions import DroneError, WorkOrderError
from gadget.drone.outbox import Outbox
from gadget.drone.probe import probe_model
from gadget.drone.sandbox import Sandbox
from gadget.drone.turn import TurnRunner
from gadget.drone.workorder import WorkOrder, WorkOrderCache
from gadget.protocol import (
    CrashRecoveryRequest,
    CrashRecoveryResponse,
    DroneEvent,
    HubEvent,
    Ref,
    TurnOut,
    WorkspaceMode,
)

__all__ = ["Drone"]

logger = logging.getLogger(__name__)

#: Seconds a stopping drone waits for its turn to end and its events to go out.
STOP_GRACE_S = 5.0


class Drone:
    """A drone process: connects to the hub forever and runs one work order at a time."""

    def __init__(self, settings: DroneSettings) -> None:
        """Prepare the drone for `settings`; build it in the event loop (connects in :meth:`run`)."""
        if not settings.drone_id or not settings.drone_key:
            raise DroneError(
                "expected a drone id and key (--id/--key or GADGET_DRONE_ID/GADGET_DRONE_KEY); "
                "get them with `gadget drone register`"
            )
        self.settings = settings
        self.workspace = Workspace(settings.workspace)
        self.cache = WorkOrderCache(self.workspace.root)
        self.mode = WorkspaceMode.IDLE
        self.exit_code = 0
        self.sio = socketio.AsyncClient(
            reconnection=False, logger=False, engineio_logger=False, handle_sigint=False
        )
        self.outbox = Outbox(self.sio, settings.emit_coalesce_ms)
        self.model = OpenAIModel(settings)
        self.runner: TurnRunner | None = None
        self.forwarder = LogForwarder(self.outbox)
        self._stopping = asyncio.Event()
        self._disconnected = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._register()

    def _register(self) -> None:
        handlers: dict[str, Callable[..., Awaitable[Any]]] = {
            "connect": self._on_connect,
            "disconnect": self._on_disconnect,
            "connect_error": self._on_connect_error,
            HubEvent.PROCESS_WORK_ORDER: self._on_process_work_order,
            HubEvent.CRASH_RECOVERY_RESPONSE: self._on_crash_recovery_response,
            HubEvent.REQUEST_WORKSPACE_MODE: self._on_request_workspace_mode,
            HubEvent.CANCEL_WORK_ORDER: self._on_cancel_work_order,
            HubEvent.REQUEST_TERMINATION: self._on_request_termination,
            HubEvent.ERROR: self._on_error,
        }
        for event, handler in handlers.items():
            self.sio.on(str(event), handler)

    # -- life cycle ------------------------------------------------------------
    async def run(self) -> int:
        """Serve work orders until stopped; the process exit code."""
        drone_logger = logging.getLogger("gadget.drone")
        if drone_logger.level == logging.NOTSET:
            drone_logger.setLevel(logging.INFO)  # the IDE gets the drone's info records
        drone_logger.addHandler(self.forwarder)
        await asyncio.to_thread(CommandGroups(self.workspace.root).reap, self.settings.kill_grace_s)
        self._spawn(self.outbox.run(), "outbox")
        connection = self._spawn(self._stay_connected(), "connection")
        logger.info("drone %s serving workspace %s", self.settings.drone_id, self.workspace.root)
        try:
            await self._stopping.wait()
            await self._wind_down()
        finally:
            drone_logger.removeHandler(self.forwarder)
            connection.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.model.close()
        return self.exit_code

    @property
    def stopping(self) -> bool:
        """Whether the drone is winding down."""
        return self._stopping.is_set()

    def stop(self, reason: str = "drone stopped") -> None:
        """Stop gracefully: end the running turn with `reason`, flush, disconnect."""
        if self.runner is not None:
            self.runner.cancel(reason)
        self._stopping.set()

    async def _wind_down(self) -> None:
        runner = self.runner
        if runner is not None:
            await asyncio.wait({runner.task}, timeout=STOP_GRACE_S)
        try:
            async with asyncio.timeout(STOP_GRACE_S):
                await self.outbox.drain()
        except TimeoutError:
            logger.warning("stopping with %d events not sent to the hub", len(self.outbox))
        await self.sio.disconnect()  # also closes the HTTP session of failed attempts
        logger.info("drone stopped")

    async def _stay_connected(self) -> None:
        """Connect, wait for the connection to drop, and again: forever, with backoff and jitter."""
        failures = 0
        while not self._stopping.is_set():
            self._disconnected.clear()
            try:
                await self._connect()
            except (socketio.exceptions.ConnectionError, ValueError) as exc:
                # ValueError: the engine is still closing the previous connection
                failures += 1
                delay = self._backoff(failures)
                logger.warning(
                    "cannot connect to the hub at %s (%s); retrying in %.1fs",
                    self.settings.hub_url,
                    exc or type(exc).__name__,
                    delay,
                )
                await self._sleep_unless_stopping(delay)
                continue
            except Exception:
                failures += 1
                logger.exception("unexpected failure connecting to the hub; retrying")
                await self._sleep_unless_stopping(self._backoff(failures))
                continue
            failures = 0
            await self._disconnected.wait()

    async def _connect(self) -> None:
        model = await probe_model(self.settings)
        if not model["reachable"]:
            logger.warning("%s", model["error"])
        sandbox = await Sandbox.detect(self.settings)
        await self.sio.connect(
            self.settings.hub_url,
            auth={
                "registrationId": self.settings.drone_id,
                "key": self.settings.drone_key,
                "hostname": socket.gethostname(),
                "model": model,
                "sandbox": sandbox.kind,
                "sandboxNetwork": sandbox.network,
            },
            transports=["websocket"],
            wait_timeout=10,
        )

    def _backoff(self, failures: int) -> float:
        base = self.settings.reconnect_delay_s * 2.0 ** min(failures - 1, 16)
        return min(base, self.settings.reconnect_delay_max_s) * random.uniform(0.5, 1.5)

    async def _sleep_unless_stopping(self, delay: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), delay)
        except TimeoutError:
            return

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("background task %s failed", task.get_name(), exc_info=task.exception())

    # -- connection events -----------------------------------------------------
    async def _on_connect(self) -> None:
        logger.info("connected to the hub at %s", self.settings.hub_url)
        self.outbox.online()
        order = await asyncio.to_thread(self.cache.load)
        running = self.runner.order.turn_id if self.runner is not None else None
        if order is not None and order.turn_id != running:
            logger.info(
                "found the unfinished turn %s of a previous run; asking the hub", order.turn_id
            )
            request = CrashRecoveryRequest(
                workspaceId=order.workspace_id,
                turnId=order.turn_id,
                chatSessionId=order.chat_session_id,
            )
            self.outbox.emit(DroneEvent.REQUEST_CRASH_RECOVERY, request.model_dump())

    async def _on_disconnect(self, reason: Any = None) -> None:
        logger.warning("disconnected from the hub (%s)", reason)
        self.outbox.offline()
        self._disconnected.set()

    async def _on_connect_error(self, data: Any = None) -> None:
        logger.info("connection error from the hub: %s", data)

    async def _on_error(self, *args: Any) -> None:
        logger.warning("the hub reported an error: %s", args)

    # -- hub requests ------------------------------------------------------------
    async def _on_process_work_order(
        self, registration: Any, project: Any, chat_session: Any, turn: Any
    ) -> bool | tuple[bool, str]:
        if self._stopping.is_set():
            return False, "the drone is shutting down"
        if self.runner is not None:
            return False, f"the drone is busy with turn {self.runner.order.turn_id}"
        if self.mode == WorkspaceMode.USER:
            return False, "the workspace is in user mode; set it back to idle first"
        try:
            order = _work_order(registration, project, chat_session, turn)
        except WorkOrderError as exc:
            return False, str(exc)
        runner = TurnRunner(order, self)
        self.runner = runner  # before any await: a second order is refused as busy
        try:
            await asyncio.to_thread(self.cache.save, order)
        except OSError as exc:
            self.runner = None
            return False, f"cannot write the work-order cache in {self.workspace.root}: {exc}"
        runner.task = self._spawn(self._serve(runner), f"turn:{order.turn_id}")
        return True

    async def _serve(self, runner: TurnRunner) -> None:
        try:
            await runner.run()
        finally:
            self.runner = None

    def set_mode(self, mode: WorkspaceMode) -> None:
        """Switch the workspace mode and tell the hub."""
        self.mode = mode
        self.outbox.emit(DroneEvent.WORKSPACE_MODE_CHANGED, mode.value)

    async def _on_crash_recovery_response(self, data: Any) -> None:
        try:
            answer = CrashRecoveryResponse.model_validate(data)
        except ValueError as exc:
            logger.warning("ignoring a malformed crashRecoveryResponse: %s", exc)
            return
        cached = await asyncio.to_thread(self.cache.load)
        running = self.runner.order.turn_id if self.runner is not None else None
        if cached is not None and cached.turn_id == answer.turnId and running != answer.turnId:
            await asyncio.to_thread(self.cache.clear)
        logger.info("crash recovery of turn %s: %s", answer.turnId, answer.action)

    async def _on_request_workspace_mode(self, mode: Any) -> bool | tuple[bool, str]:
        try:
            wanted = WorkspaceMode(mode)
        except ValueError:
            return False, f"expected a mode of idle, user or agent, got {mode!r}"
        if self.runner is not None or wanted == WorkspaceMode.AGENT:
            self.outbox.emit(DroneEvent.WORKSPACE_MODE_CHANGED, self.mode.value)
            why = (
                "an agent turn is running" if self.runner else "agent mode starts with a work order"
            )
            return False, why
        self.set_mode(wanted)
        return True

    async def _on_cancel_work_order(self, turn_id: Any = None) -> None:
        runner = self.runner
        if runner is None or (turn_id and turn_id != runner.order.turn_id):
            logger.info("cancelWorkOrder for %s: no such running turn", turn_id)
            return
        runner.cancel("cancelled")

    async def _on_request_termination(self, *_: Any) -> bool:
        logger.info("termination requested by the hub")
        self.exit_code = 0
        self.stop("drone terminated")
        return True


def _work_order(registration: Any, project: Any, chat_session: Any, turn: Any) -> WorkOrder:
    """Validate processWorkOrder's arguments into a work order."""
    try:
        Ref.model_validate(registration)
        project_ref = Ref.model_validate(project)
        chat_ref = Ref.model_validate(chat_session)
        turn_out = TurnOut.model_validate(turn)
    except ValueError as exc:
        raise WorkOrderError(f"malformed work order: {exc}") from None
    return WorkOrder(
        workspace_id=project_ref.id,
        turn_id=turn_out.id,
        chat_session_id=chat_ref.id,
        turn=dict(turn),
    )
