"""The `gadget` command: hub, user, drone, chat and up; settings errors become one line."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from pydantic import ValidationError

from gadget.config import Settings
from gadget.logs import LogSettings, setup_logging
from gadget.runtime import run

T = TypeVar("T")

#: Hub settings that are also flags of `gadget hub` (every other command takes the storage ones).
HUB_FLAGS = (
    "home", "database_url", "secret_key", "allow_signup", "retry_delay_ms", "max_retries",
    "drone_grace_s", "host", "port", "redis_url",
)  # fmt: skip
STORAGE_FLAGS = ("home", "database_url", "secret_key")
_FLAG_TYPES: dict[str, Callable[[str], Any]] = {str(int): int, str(float): float}


def _hub_settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment, overridden by the flags that were given."""
    given = {name: getattr(args, name, None) for name in HUB_FLAGS}
    return Settings(**{k: v for k, v in given.items() if v is not None})


def _add_hub_flags(p: argparse.ArgumentParser, names: Sequence[str] = STORAGE_FLAGS) -> None:
    """One flag per setting, named and typed after the Settings field (`--drone-grace-s 30`)."""
    for name in names:
        field = Settings.model_fields[name]
        flag, env = "--" + name.replace("_", "-"), f"GADGET_{name.upper()}"
        shown = field.default if field.default_factory is None else None
        help_text = f"({env}, default {shown})" if shown is not None else f"({env})"
        if field.annotation is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
            continue
        kind: Callable[[str], Any] = _FLAG_TYPES.get(str(field.annotation), str)
        p.add_argument(flag, type=kind, help=help_text)


def cmd_hub(args: argparse.Namespace) -> int:
    """Serve the hub until interrupted."""
    from gadget.hub.exceptions import HubError
    from gadget.hub.server import serve

    settings = _hub_settings(args)
    try:
        run(serve(settings))
    except HubError as exc:  # a taken port or an unusable host: nothing was started
        print(f"gadget hub: {exc}", file=sys.stderr)
        return 1
    return 0


def _new_password(args: argparse.Namespace) -> str | None:
    """--password, else GADGET_PASSWORD, else asked twice on the terminal (None: not given)."""
    password: str | None = args.password
    if password is None:
        password = os.environ.get("GADGET_PASSWORD")
    if password is not None:
        return password
    if not sys.stdin.isatty():
        print("no terminal to ask for the password: pass --password", file=sys.stderr)
        return None
    password = getpass.getpass(f"password for {args.name}: ")
    if password != getpass.getpass("again: "):
        print("passwords differ", file=sys.stderr)
        return None
    return password


def _admin(name: str, action: Coroutine[Any, Any, T]) -> tuple[T | None, int]:
    """Run an admin coroutine: (its result, 0), or (None, 1) with its error printed."""
    from gadget.hub.exceptions import HubError

    try:
        return asyncio.run(action), 0
    except HubError as exc:
        print(f"gadget user {name}: {exc}", file=sys.stderr)
        return None, 1


def cmd_user_add(args: argparse.Namespace) -> int:
    """Create a user (the password is prompted unless --password is given)."""
    from gadget.hub.admin import add_user

    password = _new_password(args)
    if password is None:
        return 2
    user_id, code = _admin("add", add_user(_hub_settings(args), args.name, password))
    if not code:
        print(f"created user {args.name} ({user_id})")
    return code


def cmd_user_list(args: argparse.Namespace) -> int:
    """Print every user: name, id and when it was created."""
    from gadget.hub.admin import list_users

    users, code = _admin("list", list_users(_hub_settings(args)))
    if code or users is None:
        return code
    if not users:
        print("no users yet: create one with `gadget user add NAME` (or run `gadget up`)")
    width = max((len(u.username) for u in users), default=0)
    for u in users:
        print(f"{u.username:<{width}}  {u.id}  created {u.created_at:%Y-%m-%d %H:%M} UTC")
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    """Give a user a new password (prompted unless --password is given)."""
    from gadget.hub.admin import set_password
    from gadget.localstate import forget_password

    password = _new_password(args)
    if password is None:
        return 2
    settings = _hub_settings(args)
    _, code = _admin("passwd", set_password(settings, args.name, password))
    if not code:
        forgotten = forget_password(settings.home, args.name)
        note = " (`gadget up` no longer shows the old one)" if forgotten else ""
        print(f"changed the password of {args.name}{note}")
    return code


def cmd_user_remove(args: argparse.Namespace) -> int:
    """Delete a user with everything they own, after a confirmation (or --yes)."""
    from gadget.hub.admin import remove_user

    what = f"user {args.name} and all their projects, drones and chat sessions"
    if not args.yes:
        if not sys.stdin.isatty():
            print(f"gadget user remove: this deletes {what}; pass --yes", file=sys.stderr)
            return 2
        if input(f"remove {what}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing removed")
            return 1
    _, code = _admin("remove", remove_user(_hub_settings(args), args.name))
    if not code:
        print(f"removed {what}")
    return code


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="gadget", description="Gadget Code: drive AI coding agents."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    hub = sub.add_parser("hub", help="serve the hub (REST, Socket.IO, web IDE)")
    _add_hub_flags(hub, HUB_FLAGS)
    hub.set_defaults(func=cmd_hub)
    _add_user_commands(sub)
    _add_optional_commands(sub)
    return parser


def _add_user_commands(sub: Any) -> None:
    """`gadget user add|list|passwd|remove`: they work on the database directly."""
    user = sub.add_parser("user", help="manage users (add, list, passwd, remove)")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = user_sub.add_parser("add", help="create a user")
    add.add_argument("name")
    add.add_argument("--password", help="the password (prompted when omitted)")
    add.set_defaults(func=cmd_user_add)
    listing = user_sub.add_parser("list", help="list the users")
    listing.set_defaults(func=cmd_user_list)
    passwd = user_sub.add_parser("passwd", help="set a user's password")
    passwd.add_argument("name")
    passwd.add_argument("--password", help="the new password (prompted when omitted)")
    passwd.set_defaults(func=cmd_user_passwd)
    remove = user_sub.add_parser("remove", help="delete a user and everything they own")
    remove.add_argument("name")
    remove.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    remove.set_defaults(func=cmd_user_remove)
    for command in (add, listing, passwd, remove):
        _add_hub_flags(command)


def _add_optional_commands(sub: Any) -> None:
    """Subcommands of the drone, the terminal client and `gadget up`, when present."""
    try:
        from gadget.drone.cli import add_drone_parser
    except ImportError:
        pass
    else:
        add_drone_parser(sub)
    try:
        from gadget.ide.terminal import add_chat_parser
    except ImportError:
        pass
    else:
        add_chat_parser(sub)
    try:
        from gadget.local import add_up_parser
    except ImportError:
        pass
    else:
        add_up_parser(sub)


def settings_error(exc: ValidationError) -> str:
    """A settings error as one line naming the environment variable: what came, what was expected."""
    problems = []
    for error in exc.errors():
        name = "GADGET_" + "_".join(str(part) for part in error["loc"]).upper()
        problems.append(f"{name}={error.get('input')!r}: {error['msg']}")
    return "; ".join(problems)


_SETTINGS_MODELS = ("Settings", "DroneSettings", "LogSettings")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gadget` console command."""
    args = build_parser().parse_args(argv)
    try:
        setup_logging(LogSettings(), verbose=args.verbose)
        return int(args.func(args) or 0)
    except ValidationError as exc:
        if exc.title not in _SETTINGS_MODELS:
            raise
        print(f"gadget: {settings_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
