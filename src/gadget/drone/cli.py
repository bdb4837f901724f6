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
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import ValidationError

from gadget.config import DroneSettings
from gadget.drone.exceptions import DroneError, KeyFileError, RegistrationError
from gadget.logs import LogSettings, log_context, setup_logging

if TYPE_CHECKING:
    from gadget.drone.client import Drone

__all__ = ["add_drone_parser", "read_key_file", "register_drone", "run_drone", "serve"]

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
    register.add_argument(
        "--key-file",
        dest="write_key_file",
        type=Path,
        help="write the drone key to this new file (mode 0600) instead of printing it",
    )
    register.set_defaults(func=_register_command)


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hub", help="hub URL (GADGET_HUB_URL, default http://127.0.0.1:8420)")
    parser.add_argument("--id", dest="drone_id", help="drone registration id (GADGET_DRONE_ID)")
    parser.add_argument(
        "--key",
        dest="drone_key",
        help="drone key; `ps` shows it to every user: prefer GADGET_DRONE_KEY or --key-file",
    )
    parser.add_argument(
        "--key-file",
        dest="drone_key_file",
        type=Path,
        help="a file holding the drone key, mode 0600 (GADGET_DRONE_KEY_FILE)",
    )
    parser.add_argument(
        "--workspace", type=Path, help="workspace folder (GADGET_WORKSPACE, default .)"
    )


def _settings(args: argparse.Namespace) -> DroneSettings:
    """Environment settings, overridden by the flags that were given."""
    given = {
        "hub_url": getattr(args, "hub", None),
        "drone_id": getattr(args, "drone_id", None),
        "drone_key": getattr(args, "drone_key", None),
        "drone_key_file": getattr(args, "drone_key_file", None),
        "workspace": getattr(args, "workspace", None),
    }
    try:
        return DroneSettings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        from gadget.cli import settings_error

        raise DroneError(settings_error(exc)) from None


def _with_key(settings: DroneSettings, args: argparse.Namespace) -> DroneSettings:
    """The settings with the drone key decided: --key, --key-file, then the environment's."""
    flag_key, flag_file = args.drone_key, args.drone_key_file
    if flag_key and flag_file:
        raise KeyFileError("expected --key or --key-file, not both; prefer --key-file")
    if flag_key:
        logger.warning(
            "--key puts the drone key on the command line, where `ps` shows it to every user "
            "of this machine; use GADGET_DRONE_KEY or --key-file instead"
        )
        return settings
    if flag_file or (settings.drone_key is None and settings.drone_key_file is not None):
        assert settings.drone_key_file is not None
        key = read_key_file(settings.drone_key_file)
        return settings.model_copy(update={"drone_key": key})
    return settings


def read_key_file(path: Path) -> str:
    """The drone key kept in `path`; refused when the file is open to other users."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"the key file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise KeyFileError(
                f"the key file {path} is open to other users (mode "
                f"{stat.S_IMODE(info.st_mode):04o}); run `chmod 600 {path}`"
            )
        key = path.read_text().strip()
    except FileNotFoundError:
        raise KeyFileError(
            f"the key file {path} does not exist; write it with "
            f"`gadget drone register --name NAME --key-file {path}`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read the key file {path}: {exc}") from None
    if not key:
        raise KeyFileError(f"the key file {path} is empty")
    return key


def _write_key_file(path: Path, key: str) -> None:
    """Create `path` (never replacing a file) holding `key`, readable by this user only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")


def _run_command(args: argparse.Namespace) -> int:
    _configure_logging()
    try:
        settings = _with_key(_settings(args), args)
    except DroneError as exc:
        print(f"gadget drone: {exc}", file=sys.stderr)
        return 2
    return run_drone(settings)


def _register_command(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
    except DroneError as exc:
        print(f"gadget drone register: {exc}", file=sys.stderr)
        return 2
    key_file: Path | None = args.write_key_file
    if key_file is not None:
        key_file = key_file.expanduser().absolute()
        if key_file.exists() or key_file.is_symlink():
            print(
                f"gadget drone register: {key_file} already exists; "
                "remove it or pass another --key-file",
                file=sys.stderr,
            )
            return 1
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
    print(f"registered drone {args.name!r}\n  id:  {reg_id}")
    run = f"gadget drone --hub {settings.hub_url} --id {reg_id}"
    if key_file is None:
        print(f"  key: {key}  (shown once)")
        print(
            "\nrun it with the key in its environment (not as --key: `ps` shows command lines"
            f" to every user):\n  GADGET_DRONE_KEY={key} {run} --workspace DIR\n"
            "or register with --key-file PATH to keep the key in a file only you can read."
        )
        return 0
    try:
        _write_key_file(key_file, key)
    except OSError as exc:
        print(
            f"gadget drone register: cannot write {key_file}: {exc}; the key, shown once: {key}",
            file=sys.stderr,
        )
        return 1
    print(f"  key: written to {key_file} (mode 0600)")
    print(f"\nrun it with:\n  {run} --key-file {key_file} --workspace DIR")
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
    if not settings.drone_id or not settings.drone_key:
        raise DroneError(
            "expected a drone id (--id or GADGET_DRONE_ID) and key (GADGET_DRONE_KEY or "
            "--key-file); get them with `gadget drone register`"
        )
    from gadget.drone.client import Drone  # the agent stack loads only when a drone runs
    from gadget.drone.sandbox import Sandbox

    loop = asyncio.get_running_loop()
    # Every record of this process names the drone (signal handlers copy the context too).
    with log_context(drone=settings.drone_id):
        (await Sandbox.detect(settings)).announce()  # a required sandbox that fails stops here
        drone = Drone(settings)
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
