"""The drone's socket client: connection, work orders, modes, cancel and termination."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import socketio

from gadget.config import DroneSettings
from gadget.drone.agent.mcp import McpServers
from gadget.drone.agent.model import OpenAIModel
from gadget.drone.agent.tools.groups import CommandGroups
from gadget.drone.agent.workspace import Workspace
from gadget.drone.checkpoints import Checkpoints
from gadget.drone.events import LogForwarder
from gadget.drone.exceptions import DroneError
from gadget.drone.outbox import Outbox
from gadget.drone.probe import probe_model
from gadget.drone.requests import HubRequests
from gadget.drone.sandbox import Sandbox
from gadget.drone.turn import TurnRunner
from gadget.drone.workorder import WorkOrder, WorkOrderCache
from gadget.protocol import (
    CrashRecoveryRequest,
    DroneEvent,
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
        self.outbox = Outbox(self.sio, settings.emit_coalesce_ms, settings.outbox_max_bytes)
        #: This process, as the hub tells two processes with one drone id apart.
        self.instance = uuid.uuid4().hex
        self.model = OpenAIModel(settings)
        #: The workspace's checkpoints (one instance: it serializes turns and reverts).
        self.checkpoints = Checkpoints(self.workspace.root)
        #: The MCP servers, started once per process (in :meth:`run`).
        self.mcp = McpServers(settings)
        self.runner: TurnRunner | None = None
        self.forwarder = LogForwarder(self.outbox)
        self._stopping = asyncio.Event()
        self._hard = False
        self._disconnected = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._register()

    def _register(self) -> None:
        handlers: dict[str, Callable[..., Awaitable[Any]]] = {
            "connect": self._on_connect,
            "disconnect": self._on_disconnect,
            "connect_error": self._on_connect_error,
            **HubRequests(self).table(),
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
        if self.settings.mcp_config is not None:
            # stdio servers run confined like the agent's commands
            self.mcp.sandbox = await Sandbox.detect(self.settings)
            await self.mcp.start()
        self._spawn(self.outbox.run(), "outbox")
        connection = self._spawn(self._stay_connected(), "connection")
        logger.info("drone %s serving workspace %s", self.settings.drone_id, self.workspace.root)
        try:
            await self._stopping.wait()
            await self._wind_down()
        finally:
            drone_logger.removeHandler(self.forwarder)
            connection.cancel()
            await self._cancel_tasks()
            await self.mcp.close()
            await self.model.close()
        return self.exit_code

    async def _cancel_tasks(self) -> None:
        """Cancel the drone's tasks until each has ended (Python 3.11's `wait_for` can swallow
        a cancel that lands as its inner await finishes, so one cancel is not enough)."""
        tasks = list(self._tasks)
        pending = [t for t in tasks if not t.done()]
        for _ in range(40):
            if not pending:
                break
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=0.25)
            pending = [t for t in pending if not t.done()]
        for task in tasks:  # their errors were logged where they ended; retrieved here
            if task.done() and not task.cancelled():
                task.exception()
        if not pending:
            return
        logger.warning("%d tasks did not stop: %s", len(pending), [t.get_name() for t in pending])

    @property
    def stopping(self) -> bool:
        """Whether the drone is winding down."""
        return self._stopping.is_set()

    def stop(self, reason: str = "drone stopped", *, hard: bool = False) -> None:
        """Stop: end the running turn with `reason`, then (unless `hard`: another process
        owns this drone now) send what is left, and disconnect."""
        self._hard = self._hard or hard
        if self.runner is not None:
            self.runner.cancel(reason)
        self._stopping.set()

    async def _wind_down(self) -> None:
        runner = self.runner
        if runner is not None:
            await asyncio.wait({runner.task}, timeout=STOP_GRACE_S)
        if self._hard:
            self.outbox.offline()
        try:
            async with asyncio.timeout(0 if self._hard else STOP_GRACE_S):
                await self.outbox.drain()
        except TimeoutError:
            if not self._hard:
                logger.warning("stopping with %d events not stored by the hub", len(self.outbox))
        if self.sio.connected:  # the ack of requestTermination, still queued, goes first
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.sio.eio.queue.join(), 2)
        try:  # also closes the HTTP session of failed attempts
            async with asyncio.timeout(STOP_GRACE_S):
                await self.sio.disconnect()
        except TimeoutError:
            logger.warning("the hub connection did not close within %s s", STOP_GRACE_S)
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
        listing = await self.model.list_models() if model["reachable"] else None
        held = self.outbox.holding()
        crashed = await self._crashed_order()
        await self.sio.connect(
            self.settings.hub_url,
            auth={
                "registrationId": self.settings.drone_id,
                "key": self.settings.drone_key,
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
                "instance": self.instance,
                "model": model,
                "sandbox": sandbox.kind,
                "sandboxNetwork": sandbox.network,
                "models": listing.models if listing is not None and not listing.error else None,
                "mcp": self.mcp.status(),
                # What this process runs (or still holds events of): the hub never guesses.
                "running": {"turnId": held[0], "seq": held[1]} if held else None,
                "recovering": crashed.turn_id if crashed is not None else None,
            },
            transports=["websocket"],
            wait_timeout=10,
        )

    async def _crashed_order(self) -> WorkOrder | None:
        """The work order a previous process of this drone left unfinished, if any."""
        order = await asyncio.to_thread(self.cache.load)
        held = self.outbox.holding()
        if order is None or (held is not None and held[0] == order.turn_id):
            return None
        return order

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
        order = await self._crashed_order()
        if order is not None:
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

    def set_mode(self, mode: WorkspaceMode) -> None:
        """Switch the workspace mode and tell the hub."""
        self.mode = mode
        self.outbox.emit(DroneEvent.WORKSPACE_MODE_CHANGED, mode.value)

    def start_turn(self, runner: TurnRunner) -> None:
        """Run an accepted work order in the background (one at a time)."""
        self.runner = runner
        runner.task = self._spawn(self._serve(runner), f"turn:{runner.order.turn_id}")

    async def _serve(self, runner: TurnRunner) -> None:
        try:
            await runner.run()
        finally:
            if self.runner is runner:
                self.runner = None
