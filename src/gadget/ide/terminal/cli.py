"""`gadget chat`: its flags, and the one place errors become exit codes.

Importing this module is cheap (every `gadget` command builds its parser);
the client itself is imported when the command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from gadget.ide.terminal.exceptions import TerminalError

DEFAULT_HUB_URL = "http://127.0.0.1:8420"
NEW_SESSION = "new"


def add_chat_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `chat` subcommand (the terminal IDE) to `gadget`'s subparsers."""
    chat: argparse.ArgumentParser = subparsers.add_parser(
        "chat",
        help="chat with a drone's agent in this terminal",
        description="Choose a drone, project and session, then stream turns live. "
        "Commands: /mode idle|user|agent, /permissions [auto|ask|read-only], /diff [N], /undo, "
        "/model [N|NAME|default], /usage, /cancel, /sessions [N], /new, /quit; "
        "a call waiting for approval is answered with a, d or s.",
    )
    chat.add_argument("--hub", help=f"hub URL (GADGET_HUB_URL, default {DEFAULT_HUB_URL})")
    chat.add_argument("--drone", help="drone name or id (asked when omitted)")
    chat.add_argument("--project", help="project name or id; a new name creates the project")
    chat.add_argument("--session", help=f"chat session id to resume, or {NEW_SESSION!r}")
    chat.add_argument("--username", help="log in as this user (else GADGET_TOKEN, else asked)")
    chat.set_defaults(func=cmd_chat)
    return chat


def cmd_chat(args: argparse.Namespace) -> int:
    """Run the terminal IDE; expected failures print one line and exit 1."""
    if not getattr(args, "verbose", False):
        logging.getLogger("httpx").setLevel(logging.WARNING)
    from rich.console import Console
    from rich.text import Text

    from gadget.ide.terminal.app import chat

    try:
        return asyncio.run(chat(args, Console(highlight=False)))
    except TerminalError as exc:
        Console(stderr=True).print(Text(f"gadget chat: {exc}", style="bold red"))
        return 1
