"""`gadget chat`: its flags, the login, and the one place errors become exit codes."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from typing import Any

from rich.console import Console
from rich.text import Text

from gadget.ide.terminal.api import HubApi
from gadget.ide.terminal.choose import NEW_SESSION, Ask, Chooser
from gadget.ide.terminal.exceptions import LoginFailed, NoChoice, TerminalError
from gadget.ide.terminal.lines import LineReader
from gadget.ide.terminal.repl import Repl
from gadget.ide.terminal.session import ChatClient

DEFAULT_HUB_URL = "http://127.0.0.1:8420"


def add_chat_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `chat` subcommand (the terminal IDE) to `gadget`'s subparsers."""
    chat: argparse.ArgumentParser = subparsers.add_parser(
        "chat",
        help="chat with a drone's agent in this terminal",
        description="Choose a drone, project and session, then stream turns live. "
        "Commands: /mode idle|user|agent, /cancel, /sessions [N], /new, /quit.",
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
    console = Console(highlight=False)
    try:
        return asyncio.run(chat(args, console))
    except TerminalError as exc:
        Console(stderr=True).print(Text(f"gadget chat: {exc}", style="bold red"))
        return 1


def make_ask(console: Console, reader: LineReader) -> Ask:
    """Ask a question on `console` and read the answer from `reader`."""

    async def ask(question: str) -> str | None:
        console.print(Text(question, style="bold"), end="")
        return await reader.readline()

    return ask


async def login(api: HubApi, username: str | None, ask: Ask) -> None:
    """Use GADGET_TOKEN when set (and no --username), else ask for username and password."""
    token = os.environ.get("GADGET_TOKEN")
    if token and not username:
        api.token = token
        try:
            await api.drones()
        except LoginFailed as exc:
            raise LoginFailed(
                f"{exc} (GADGET_TOKEN is wrong or expired: unset it to log in)"
            ) from None
        return
    if not username:
        username = (await ask("username: ") or "").strip()
        if not username:
            raise NoChoice("no username given")
    password = await asyncio.to_thread(getpass.getpass, "password: ")
    await api.login(username, password)


async def chat(args: argparse.Namespace, console: Console) -> int:
    """Log in, choose drone / project / session, then run the read-eval loop."""
    url = args.hub or os.environ.get("GADGET_HUB_URL") or DEFAULT_HUB_URL
    async with HubApi(url) as api, LineReader(sys.stdin.fileno()) as reader:
        ask = make_ask(console, reader)
        await login(api, args.username, ask)
        chooser = Chooser(api, console, ask)
        drone = await chooser.drone(args.drone)
        project = await chooser.project(args.project)
        chat_id = await chooser.session(str(project["_id"]), args.session)
        client = ChatClient(api, console, drone, project)
        return await Repl(client, reader, console).run(chat_id)
