"""`gadget drone` and `gadget drone register`: the drone's command line.

The main CLI calls :func:`add_drone_parser`; the parsed namespace's `func(args)`
returns the exit code. :func:`run_drone` and :func:`register_drone` are the
functions behind them.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import ValidationError

from gadget.config import DroneSettings
from gadget.drone.exceptions import DroneError, RegistrationError
from gadget.logs import LogSettings, log_context, setup_logging

if TYPE_CHECKING:
    from gadget.drone.client import Drone

__all__ = ["add_drone_parser", "register_drone", "run_drone", "serve"]

logger = logging.getLogger(__name__)


def add_drone_parser(subparsers: Any) -> None:
    """Add `drone` (run a drone) and `drone register` to the main parser's subcommands."""
    drone = subparsers.add_parser("drone", help="run a drone: a worker that runs a coding agent")
    _add_run_flags(drone)
    drone.set_defaults(func=_run_command)
    sub = drone.add_subparsers(dest="drone_command")
    register = sub.add_parser(
        "register", help="register a new drone with the hub; prints id and key"
    )
    register.add_argument("--hub", default=argparse.SUPPRESS, help="hub URL (GADGET_HUB_URL)")
    register.add_argument("--name", required=True, help="the drone's name, shown in the IDE")
    register.add_argument("--username", help="log in as this user (or set GADGET_TOKEN)")
    register.add_argument("--password", help="the user's password (asked when missing)")
    register.set_defaults(func=_register_command)


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hub", help="hub URL (GADGET_HUB_URL, default http://127.0.0.1:8420)")
    parser.add_argument("--id", dest="drone_id", help="drone registration id (GADGET_DRONE_ID)")
    parser.add_argument("--key", dest="drone_key", help="drone key (GADGET_DRONE_KEY)")
    parser.add_argument(
        "--workspace", type=Path, help="workspace folder (GADGET_WORKSPACE, default .)"
    )


def _settings(args: argparse.Namespace) -> DroneSettings:
    """Environment settings, overridden by the flags that were given."""
    given = {
        "hub_url": getattr(args, "hub", None),
        "drone_id": getattr(args, "drone_id", None),
        "drone_key": getattr(args, "drone_key", None),
        "workspace": getattr(args, "workspace", None),
    }
    return DroneSettings(**{k: v for k, v in given.items() if v is not None})


def _run_command(args: argparse.Namespace) -> int:
    return run_drone(_settings(args))


def _register_command(args: argparse.Namespace) -> int:
    settings = _settings(args)
    username, password = args.username, args.password
    if settings.token is None:
        username = username or input("username: ")
        password = (
            password if password is not None else getpass.getpass(f"password for {username}: ")
        )
    try:
        reg_id, key = asyncio.run(
            register_drone(
                settings.hub_url,
                args.name,
                token=settings.token,
                username=username,
                password=password,
            )
        )
    except RegistrationError as exc:
        print(f"gadget drone register: {exc}", file=sys.stderr)
        return 1
    print(f"registered drone {args.name!r}\n  id:  {reg_id}\n  key: {key}")
    print(
        f"\nrun it with:\n  gadget drone --hub {settings.hub_url} --id {reg_id} --key {key} --workspace DIR"
    )
    return 0


def _configure_logging() -> None:
    """`python -m gadget.drone` has no `gadget` main to set logging up (GADGET_LOG_*)."""
    if not logging.getLogger().handlers:
        try:
            setup_logging()
        except ValidationError as exc:
            from gadget.cli import settings_error

            setup_logging(LogSettings.model_construct())
            logger.warning("ignored %s (logging as text, INFO)", settings_error(exc))


def run_drone(settings: DroneSettings) -> int:
    """Run a drone in the foreground until SIGINT/SIGTERM or the hub's termination; exit code."""
    _configure_logging()
    try:
        return asyncio.run(serve(settings))
    except DroneError as exc:
        print(f"gadget drone: {exc}", file=sys.stderr)
        return 2


async def serve(settings: DroneSettings) -> int:
    """Run a drone in this event loop, stopping gracefully on SIGINT/SIGTERM; exit code."""
    if not settings.workspace.is_dir():
        raise DroneError(
            f"the workspace {settings.workspace} is not a folder; create it or pass --workspace"
        )
    from gadget.drone.client import Drone  # the agent stack loads only when a drone runs

    drone = Drone(settings)
    loop = asyncio.get_running_loop()
    # Every record of this process names the drone (signal handlers copy the context too).
    with log_context(drone=settings.drone_id):
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _on_signal, drone, sig)
        try:
            return await drone.run()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


def _on_signal(drone: Drone, sig: signal.Signals) -> None:
    if drone.stopping:
        logger.warning(
            "%s again: exiting now (the unfinished turn is recovered at the next start)", sig.name
        )
        os._exit(130)
    logger.info("%s: stopping", sig.name)
    drone.stop(f"drone stopped ({sig.name})")


async def register_drone(
    hub_url: str,
    name: str,
    *,
    token: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> tuple[str, str]:
    """Register a drone named `name` for a user; returns (registration id, key).

    Uses `token` when given, else logs in with `username` and `password`.
    """
    async with httpx.AsyncClient(base_url=hub_url.rstrip("/"), timeout=30) as http:
        try:
            if token is None:
                if not username or password is None:
                    raise RegistrationError(
                        "expected a token (GADGET_TOKEN) or a username and password"
                    )
                token = await _login(http, username, password)
            reply = await http.post(
                "/api/drones",
                json={"name": name, "hostname": socket.gethostname()},
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            raise RegistrationError(
                f"cannot reach the hub at {hub_url}: {exc} — check --hub"
            ) from exc
        body = _json(reply, "registering the drone")
        try:
            return str(body["registration"]["_id"]), str(body["key"])
        except (KeyError, TypeError):
            raise RegistrationError(
                f"expected a registration and a key from the hub, got {body!r:.200}"
            ) from None


async def _login(http: httpx.AsyncClient, username: str, password: str) -> str:
    reply = await http.post("/api/auth/login", json={"username": username, "password": password})
    body = _json(reply, f"logging in as {username}")
    if not isinstance(body, dict) or not isinstance(body.get("token"), str):
        raise RegistrationError(f"expected a token from the hub's login, got {body!r:.200}")
    return str(body["token"])


def _json(reply: httpx.Response, doing: str) -> Any:
    if reply.status_code >= 400:
        raise RegistrationError(
            f"the hub refused {doing}: HTTP {reply.status_code} {reply.text[:300]}"
        )
    try:
        return reply.json()
    except ValueError:
        raise RegistrationError(
            f"the hub's answer to {doing} is not JSON: {reply.text[:300]}"
        ) from None
