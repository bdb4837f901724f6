"""`gadget up`: a hub, a local user and a drone for the current directory; one Ctrl-C stops all."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from gadget.config import DroneSettings, Settings
from gadget.runtime import run

if TYPE_CHECKING:
    from gadget.hub.app import Hub

STATE_FILE = "local.json"


def add_up_parser(subparsers: Any) -> None:
    """Add `gadget up` to the main parser's subcommands."""
    up = subparsers.add_parser("up", help="hub + local drone + web IDE for the current directory")
    up.add_argument("--port", type=int, help="hub port (default 8420)")
    up.add_argument("--home", help="data directory (GADGET_HOME, default ~/.gadget)")
    up.add_argument(
        "--workspace", type=Path, default=Path.cwd(), help="default: the current directory"
    )
    up.set_defaults(func=_up_command)


def _up_command(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {"host": "127.0.0.1"}
    if args.port is not None:
        overrides["port"] = args.port
    if args.home is not None:
        overrides["home"] = args.home
    return run(up(Settings(**overrides), args.workspace.resolve()))


def _load_state(home: Path) -> dict[str, Any]:
    path = home / STATE_FILE
    if not path.exists():
        return {"drones": {}}
    state: dict[str, Any] = json.loads(path.read_text())
    state.setdefault("drones", {})
    return state


def _save_state(home: Path, state: dict[str, Any]) -> None:
    home.mkdir(parents=True, exist_ok=True)
    path = home / STATE_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(state, fh, indent=2)
    os.replace(tmp, path)


async def _ensure_user(hub: Hub, state: dict[str, Any]) -> tuple[str, str, str, bool]:
    """(user id, username, password, created now) of the local user."""
    saved = state.get("user")
    if saved:
        user = await hub.store.user_by_name(saved["username"])
        if user is not None:
            return user.id, saved["username"], saved["password"], False
    username = os.environ.get("USER") or "local"
    if not username.replace("_", "").replace("-", "").isalnum():
        username = "local"
    if await hub.store.user_by_name(username) is not None:
        username = f"{username}-{secrets.token_hex(2)}"
    password = secrets.token_urlsafe(12)
    user = await hub.users.create(username, password)
    state["user"] = {"username": username, "password": password}
    return user.id, username, password, True


async def _ensure_drone(
    hub: Hub, state: dict[str, Any], user_id: str, workspace: Path
) -> tuple[str, str]:
    """(registration id, key) of this workspace's drone, registered on first use."""
    saved = state["drones"].get(str(workspace))
    if saved:
        drone = await hub.store.get_drone(saved["id"])
        if drone is not None and drone.owner_id == user_id:
            return saved["id"], saved["key"]
    from gadget.hub.auth import Auth

    key, key_hash = Auth.new_drone_key()
    drone = await hub.store.create_drone(
        user_id, workspace.name or "workspace", socket.gethostname(), key_hash
    )
    state["drones"][str(workspace)] = {"id": drone.id, "key": key}
    return drone.id, key


async def _ensure_project(hub: Hub, user_id: str, workspace: Path) -> None:
    name = workspace.name or "workspace"
    if not any(p.name == name for p in await hub.store.list_projects(user_id)):
        await hub.store.create_project(user_id, name, f"the folder {workspace}")


def _start_drone(url: str, drone_id: str, key: str, workspace: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "GADGET_HUB_URL": url,
        "GADGET_DRONE_ID": drone_id,
        "GADGET_DRONE_KEY": key,
    }
    env["GADGET_WORKSPACE"] = str(workspace)
    # Its own session: a terminal's Ctrl-C reaches only `gadget up`, which stops the drone once.
    return subprocess.Popen(
        [sys.executable, "-m", "gadget.cli", "drone"],
        env=env,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )


def _die_with_parent() -> None:
    """Linux: the drone gets SIGTERM if `gadget up` dies without stopping it (kill -9)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)


async def _model_hint() -> str | None:
    """How to configure a model when the configured one does not answer."""
    from gadget.drone.probe import probe_model

    model = await probe_model(DroneSettings())
    return None if model["reachable"] else f"{model['error']} (see docs/drone.md)"


async def _stop_drone(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        for _ in range(100):
            if proc.poll() is not None:
                return
            await asyncio.sleep(0.1)
        proc.kill()
    await asyncio.to_thread(proc.wait)


async def up(settings: Settings, workspace: Path) -> int:
    """Serve hub + drone until SIGINT/SIGTERM; the exit code."""
    from gadget.hub.server import Server, start, uvicorn_config  # the hub loads only when `up` runs

    config = uvicorn_config(settings)
    server = Server(config)
    serving = await start(server)
    if not server.started:
        print(
            f"gadget up: the hub could not start on port {settings.port} (in use? try --port)",
            file=sys.stderr,
        )
        return 1
    hub: Hub = cast(Any, config.app).hub
    state = _load_state(settings.home)
    user_id, username, password, created = await _ensure_user(hub, state)
    drone_id, key = await _ensure_drone(hub, state, user_id, workspace)
    await _ensure_project(hub, user_id, workspace)
    _save_state(settings.home, state)
    url = f"http://{settings.host}:{settings.port}"
    drone = _start_drone(url, drone_id, key, workspace)
    _print_banner(url, username, password, created, settings.home, workspace)
    if hint := await _model_hint():
        print(f"  note: {hint}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({waiter, serving}, return_when=asyncio.FIRST_COMPLETED)
    print("\nstopping…", flush=True)
    await _stop_drone(drone)
    server.should_exit = True
    await serving
    waiter.cancel()
    return 0


def _print_banner(
    url: str, username: str, password: str, created: bool, home: Path, workspace: Path
) -> None:
    print(f"\nGadget Code is up: open {url}/", flush=True)
    print(f"  workspace: {workspace}")
    if created:
        print(
            f"  log in as {username} with password {password}  (shown once; kept in {home / STATE_FILE})"
        )
    else:
        print(f"  log in as {username} (password in {home / STATE_FILE})")
    print("  Ctrl-C stops the hub and the drone.", flush=True)
