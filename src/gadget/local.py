"""`gadget up`: a hub, a local user and a drone for the current directory; one Ctrl-C stops all.

Its state, `$GADGET_HOME/local.json` (mode 0600), holds the local user's name and generated
password and, keyed by workspace path, each workspace's drone id and key.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from gadget.config import DroneSettings, Settings
from gadget.exceptions import CommandError
from gadget.localstate import STATE_FILE, forget_drone, load_state, save_state, workspace_drone
from gadget.logs import log_context
from gadget.runtime import run
from gadget.supervisor import DroneSupervisor, Outcome

if TYPE_CHECKING:
    from gadget.hub.app import Hub


def add_up_parser(subparsers: Any) -> None:
    """Add `gadget up` to the main parser's subcommands."""
    up = subparsers.add_parser("up", help="hub + local drone + web IDE for the current directory")
    up.add_argument("--port", type=int, help="hub port (default 8420)")
    up.add_argument("--home", help="data directory (GADGET_HOME, default ~/.gadget)")
    up.add_argument("--workspace", type=Path, help="the folder to work on (default: this one)")
    once = up.add_mutually_exclusive_group()
    once.add_argument(
        "--print-drone",
        action="store_true",
        help="print the id and key of this folder's drone and how to run it by hand, then exit",
    )
    once.add_argument(
        "--forget-drone",
        action="store_true",
        help="delete this folder's drone (the next `gadget up` here registers a new one), then exit",
    )
    up.set_defaults(func=_up_command)


def _up_command(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {"host": "127.0.0.1"}
    if args.port is not None:
        overrides["port"] = args.port
    if args.home is not None:
        overrides["home"] = args.home
    try:
        workspace = (args.workspace or Path.cwd()).resolve()
    except FileNotFoundError:  # the shell's folder was deleted under it
        print("gadget up: the current folder no longer exists; cd to one", file=sys.stderr)
        return 1
    settings = Settings(**overrides)
    try:
        if args.print_drone:
            return _print_drone(settings, workspace)
        if args.forget_drone:
            return run(_forget_drone(settings, workspace))
    except CommandError as exc:
        print(f"gadget up: {exc}", file=sys.stderr)
        return 1
    return run(up(settings, workspace))


def _print_drone(settings: Settings, workspace: Path) -> int:
    drone_id, key = workspace_drone(settings.home, workspace)
    print(f"the drone of {workspace} (from {settings.home / STATE_FILE}):")
    print(f"  id:  {drone_id}\n  key: {key}")
    print("run it by hand, while `gadget hub` serves (not `gadget up`, which runs its own):")
    print(f"  GADGET_DRONE_KEY={key} gadget drone --id {drone_id} --workspace {workspace}")
    print("(the key in the environment, not on the command line, where `ps` shows it)")
    return 0


async def _forget_drone(settings: Settings, workspace: Path) -> int:
    from gadget.hub.admin import remove_drone  # the database is opened only for this

    drone_id = forget_drone(settings.home, workspace)
    if drone_id is None:
        print(f"gadget up: no drone is registered for {workspace}; nothing to forget")
        return 0
    await remove_drone(settings, drone_id)
    print(f"forgot the drone of {workspace} ({drone_id}): its key no longer works, and")
    print("the next `gadget up` in this folder registers a new one")
    return 0


def workspace_problem(workspace: Path) -> str | None:
    """Why a drone could not serve `workspace` (checked before anything is registered)."""
    if not workspace.exists():
        return f"the workspace {workspace} does not exist; create it or pass --workspace"
    if not workspace.is_dir():
        return f"the workspace {workspace} is not a folder; pass --workspace with a folder"
    if not os.access(workspace, os.R_OK | os.X_OK):
        return f"the workspace {workspace} cannot be read by this user; fix its permissions"
    return None


async def _ensure_user(hub: Hub, state: dict[str, Any]) -> tuple[str, str, str | None, bool]:
    """(user id, username, saved password if any, created now) of the local user."""
    saved = state.get("user")
    if isinstance(saved, dict) and isinstance(saved.get("username"), str):
        user = await hub.store.user_by_name(saved["username"])
        if user is not None:
            return user.id, saved["username"], saved.get("password"), False
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


def drone_supervisor(url: str, drone_id: str, key: str, workspace: Path) -> DroneSupervisor:
    """The supervisor of this workspace's drone: `gadget drone` as a child process."""
    env = {
        **os.environ,
        "GADGET_HUB_URL": url,
        "GADGET_DRONE_ID": drone_id,
        "GADGET_DRONE_KEY": key,
        "GADGET_WORKSPACE": str(workspace),
    }
    return DroneSupervisor(
        [sys.executable, "-m", "gadget.cli", "drone"],
        env,
        drone_id=drone_id,
        cwd=str(workspace),
        check=lambda: workspace_problem(workspace),
        preexec=_die_with_parent if sys.platform == "linux" else None,
    )


def _die_with_parent() -> None:
    """Linux: the drone gets SIGTERM if `gadget up` dies without stopping it (kill -9)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)


async def _model_hint(workspace: Path) -> str | None:
    """How to configure a model when the configured one does not answer."""
    from gadget.drone.probe import probe_model

    model = await probe_model(DroneSettings(workspace=workspace))
    return None if model["reachable"] else f"{model['error']} (see docs/drone.md)"


async def up(settings: Settings, workspace: Path) -> int:
    """Serve hub + drone until SIGINT/SIGTERM (or the drone cannot start); the exit code."""
    try:
        return await _up(settings, workspace)
    except CommandError as exc:
        print(f"gadget up: {exc}", file=sys.stderr)
        return 1


async def _up(settings: Settings, workspace: Path) -> int:
    # Everything that can be refused is checked before the hub is built or anything registered.
    if problem := workspace_problem(workspace):
        raise CommandError(problem)
    state = load_state(settings.home)
    from gadget.hub.exceptions import HubError  # the hub loads only when `up` runs
    from gadget.hub.server import Server, listen, start, uvicorn_config

    try:
        sock = listen(settings.host, settings.port)
    except HubError as exc:
        raise CommandError(str(exc)) from None
    try:
        server = Server(uvicorn_config(settings))
        serving = await start(server, [sock])
        if not server.started:
            serving.result()  # raises why it stopped
    except (HubError, OSError) as exc:  # e.g. GADGET_HOME cannot be written
        sock.close()
        raise CommandError(str(exc)) from None
    hub: Hub = cast(Any, server.config.app).hub
    try:
        return await _serve_workspace(hub, state, settings, workspace, serving)
    finally:
        server.should_exit = True
        await serving


async def _serve_workspace(
    hub: Hub,
    state: dict[str, Any],
    settings: Settings,
    workspace: Path,
    serving: asyncio.Task[None],
) -> int:
    """Register what this workspace needs, run its drone, wait for a signal; the exit code."""
    user_id, username, password, created = await _ensure_user(hub, state)
    drone_id, key = await _ensure_drone(hub, state, user_id, workspace)
    await _ensure_project(hub, user_id, workspace)
    save_state(settings.home, state)
    url = f"http://{settings.host}:{settings.port}"
    supervisor = drone_supervisor(url, drone_id, key, workspace)
    with log_context(drone=drone_id, user=user_id):  # the supervisor's task copies the ids
        watching = asyncio.create_task(supervisor.run(), name="drone supervisor")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.create_task(stop.wait())
    try:
        _print_banner(url, username, password, created, settings.home, workspace)
        if hint := await _model_hint(workspace):
            print(f"  note: {hint}", flush=True)
        return await _until_the_end(waiter, serving, watching)
    finally:
        await supervisor.stop(watching)
        waiter.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _until_the_end(
    signalled: asyncio.Task[Any], serving: asyncio.Task[None], watching: asyncio.Task[Outcome]
) -> int:
    """Wait for Ctrl-C, the hub's end or a drone that cannot start; the exit code.

    A drone that was replaced or terminated is not restarted, and the hub keeps serving.
    """
    pending: set[asyncio.Task[Any]] = {signalled, serving, watching}
    while signalled in pending and serving in pending:
        _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if watching not in pending and watching.result() is Outcome.CANNOT_START:
            return 1
    if serving not in pending:
        print("gadget up: the hub stopped on its own; stopping the drone", file=sys.stderr)
        return 1
    print("\nstopping…", flush=True)
    return 0


def _print_banner(
    url: str, username: str, password: str | None, created: bool, home: Path, workspace: Path
) -> None:
    print(f"\nGadget Code is up: open {url}/", flush=True)
    print(f"  workspace: {workspace}")
    if created:
        print(
            f"  log in as {username} with password {password}  (shown once; kept in {home / STATE_FILE})"
        )
    elif password:
        print(f"  log in as {username} (password in {home / STATE_FILE})")
    else:
        print(
            f"  log in as {username} with your password (`gadget user passwd {username}` sets one)"
        )
    print("  Ctrl-C stops the hub and the drone.", flush=True)
