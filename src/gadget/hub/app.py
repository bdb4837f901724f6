"""create_app(settings): the hub's FastAPI + Socket.IO application; nothing happens at import."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import socketio
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from gadget.config import Settings
from gadget.hub import fastjson
from gadget.hub.api import auth, chats, deps, drones, errors, projects
from gadget.hub.api import settings as prefs
from gadget.hub.approvals import Approvals
from gadget.hub.auth import Auth
from gadget.hub.bus import Bus
from gadget.hub.changes import Changes
from gadget.hub.cluster import Cluster, backends
from gadget.hub.control import AgentControl
from gadget.hub.controls import Controls
from gadget.hub.core import Core
from gadget.hub.droneviews import DroneViews
from gadget.hub.gcpolicy import FreezeSurvivors
from gadget.hub.limits import login_throttle
from gadget.hub.logs import install_frame_filter
from gadget.hub.metrics import CONTENT_TYPE, Metrics, allowed
from gadget.hub.recovery import Recovery
from gadget.hub.sessions import Sessions
from gadget.hub.sockets.base import Dispatcher, HubServer
from gadget.hub.sockets.connect import ConnectHandlers
from gadget.hub.sockets.drone import DroneHandlers
from gadget.hub.sockets.ide import IdeHandlers
from gadget.hub.sockets.rate import Rates
from gadget.hub.state.drones import Drones, node_id
from gadget.hub.state.ides import Ides
from gadget.hub.state.sweeper import Sweeper
from gadget.hub.stream.acks import Acks
from gadget.hub.stream.recorder import Recorder
from gadget.hub.stream.writer import Writer
from gadget.hub.tasks import Tasks
from gadget.hub.turns import WorkOrders
from gadget.hub.users import Users
from gadget.store.database import make_engine, migrate
from gadget.store.repository import Store

logger = logging.getLogger(__name__)


@dataclass
class Hub:
    """Every service of one hub process (a node), wired together by :func:`build_hub`."""

    settings: Settings
    sio: socketio.AsyncServer
    store: Store
    auth: Auth
    users: Users
    drones: Drones
    ides: Ides
    recorder: Recorder
    writer: Writer
    sweeper: Sweeper
    tasks: Tasks
    turns: WorkOrders
    sessions: Sessions
    recovery: Recovery
    control: AgentControl
    cluster: Cluster
    metrics: Metrics
    collector: FreezeSurvivors = field(default_factory=FreezeSurvivors)
    ready: bool = False

    async def start(self) -> None:
        """Migrate the database, start writing and sweeping deadlines."""
        await migrate(self.settings.resolved_database_url())
        self.writer.start()
        await self.sweeper.sweep(self.recovery)  # a restarted node's leases, before any socket
        self.sweeper.start(self.recovery)
        self.metrics.lag.start()
        self.metrics.gc.start()
        # Everything built so far lives as long as the process: keep it out of the
        # collector's full passes, which otherwise pause the relay (docs/performance.md);
        # from now on, the survivors of the older generations' passes too (hub/gcpolicy.py).
        self.collector.start()
        self.ready = True

    async def stop(self) -> None:
        """Write everything owed (for a few seconds if the database is down), then stop."""
        self.ready = False
        await self.metrics.lag.close()
        self.metrics.gc.stop()
        await self.collector.close()
        await self.sweeper.close()
        await self.tasks.close()
        await self.writer.close(grace_s=5.0)
        await self.cluster.close()  # after the writer: its last acks are emits too
        await self.drones.presence.close()
        await self.users.close()
        self.auth.close()
        await self.store.close()

    async def settle(self) -> None:
        """Wait until everything applied so far is stored (tests)."""
        await self.writer.flush()

    def health(self) -> dict[str, Any]:
        """What `GET /healthz` answers."""
        db = self.writer.health.json()
        status = "starting"
        if self.ready:
            status = "ok" if db["ok"] else "degraded"
        redis = self.drones.presence.health() if self.settings.redis_url else None
        if redis is not None and status == "ok" and not redis["ok"]:
            status = "degraded"
        return {
            "ok": self.ready,
            "status": status,
            "node": self.drones.node,
            "database": db,
            **({"redis": redis} if redis is not None else {}),
            "drones": len(self.drones),
            "ides": len(self.ides),
            "liveTurns": len(self.recorder),
        }


def build_hub(settings: Settings) -> Hub:
    """Create every service and register the socket handlers."""
    install_frame_filter()
    manager, presence, cluster = backends(settings, node_id())
    sio = HubServer(
        async_mode="asgi",
        cors_allowed_origins=None,  # same origin only: the IDE is served by the hub
        async_handlers=False,  # one connection's events in order (see sockets/drone.py)
        json=fastjson,
        max_http_buffer_size=settings.max_event_bytes,
        client_manager=manager,
    )
    store = Store(make_engine(settings.resolved_database_url()))
    authn = Auth(settings.resolved_secret_key(), settings.token_ttl_s, settings.password_workers)
    recorder = Recorder(settings.flush_bytes)
    writer = Writer(
        store,
        presence.node,
        recorder,
        settings.flush_interval_ms / 1000,
        settings.uncommitted_max_bytes,
    )
    drones, ides = (
        Drones(settings, store, writer, recorder, presence),
        Ides(settings.max_ide_sockets_per_user),
    )
    bus, tasks = Bus(sio, settings.ide_queue_max), Tasks()
    core = Core(settings, store, drones, ides, writer, bus, tasks, cluster, DroneViews(drones, bus))
    turns = WorkOrders(core)
    control = AgentControl(Approvals(core), Controls(core), Changes(core))
    sessions = Sessions(core, turns, control.controls)
    recovery = Recovery(core, turns, sessions, control.approvals)
    cluster.route(
        {**turns.node_handlers(), **control.approvals.node_handlers(), **recovery.node_handlers()}
    )
    writer.on_commit(Acks(drones, recorder, bus).committed)
    sweeper = Sweeper(
        store,
        writer,
        presence,
        settings.drone_grace_s,
        settings.sweep_interval_s,
        settings.db_timeout_s,
    )
    ConnectHandlers(sio, authn, store, drones, ides, bus, sessions, recovery).install()
    dispatcher = Dispatcher(sio, drones, ides, bus, Rates.of(settings))
    metrics = Metrics(drones, ides, recorder, writer, bus, dispatcher)
    writer.on_commit(metrics.committed)
    dispatcher.install(
        ide=IdeHandlers(ides, sessions, turns, control, bus).table(),
        drone=DroneHandlers(
            drones, writer, bus, turns, recovery, control.approvals, settings.flush_bytes
        ).table(),
    )
    users = Users(store, authn, login_throttle(settings))
    return Hub(
        settings,
        sio,
        store,
        authn,
        users,
        drones,
        ides,
        recorder,
        writer,
        sweeper,
        tasks,
        turns,
        sessions,
        recovery,
        control,
        cluster,
        metrics,
    )


def _web_root() -> Path:
    return Path(str(files("gadget.ide") / "web"))


def build_api(hub: Hub) -> FastAPI:
    """The REST API, /healthz and the web IDE's files."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()

    api = FastAPI(title="Gadget Code hub", lifespan=lifespan)
    api.state.hub = hub
    errors.install(api)
    for module in (auth, projects, drones, chats, prefs):
        api.include_router(module.router)

    @api.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        return JSONResponse(hub.health(), status_code=200 if hub.ready else 503)

    @api.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        host = request.client.host if request.client else None
        if not allowed(
            hub.settings.metrics_token,
            request.headers.get("authorization"),
            host,
            request.headers.get,
        ):
            return JSONResponse({"detail": "metrics: not allowed from here"}, status_code=403)
        return Response(hub.metrics.render(), media_type=CONTENT_TYPE)

    web = _web_root()
    if (web / "index.html").is_file():
        api.mount("/static", StaticFiles(directory=web), name="static")

        @api.get("/", include_in_schema=False)
        async def index() -> FileResponse:
            return FileResponse(web / "index.html", headers={"Cache-Control": "no-cache"})

    return api


def create_app(settings: Settings | None = None) -> Any:
    """The hub's ASGI application (Socket.IO at /socket.io, everything else FastAPI)."""
    hub = build_hub(settings or Settings())
    app = socketio.ASGIApp(hub.sio, other_asgi_app=build_api(hub))
    app.hub = hub
    return app


__all__ = ["Hub", "build_hub", "create_app", "deps"]
