"""The `gadget` command: hub, user, drone, chat and up."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from gadget.config import Settings
from gadget.runtime import run

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
    from gadget.hub.server import serve

    settings = _hub_settings(args)
    run(serve(settings))
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    """Create a user (the password is prompted unless --password is given)."""
    from gadget.hub.admin import add_user

    password = args.password or os.environ.get("GADGET_PASSWORD")
    if not password:
        password = getpass.getpass(f"password for {args.name}: ")
        if password != getpass.getpass("again: "):
            print("passwords differ", file=sys.stderr)
            return 2
    try:
        user_id = asyncio.run(add_user(_hub_settings(args), args.name, password))
    except Exception as exc:
        print(f"gadget user add: {exc}", file=sys.stderr)
        return 1
    print(f"created user {args.name} ({user_id})")
    return 0


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

    user = sub.add_parser("user", help="manage users")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = user_sub.add_parser("add", help="create a user")
    add.add_argument("name")
    add.add_argument("--password", help="the password (prompted when omitted)")
    _add_hub_flags(add)
    add.set_defaults(func=cmd_user_add)

    _add_optional_commands(sub)
    return parser


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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gadget` console command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
