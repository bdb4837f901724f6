"""The terminal IDE's run: log in, choose drone / project / session, then the read-eval loop."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import sys

from rich.console import Console
from rich.text import Text

from gadget.ide.terminal.api import HubApi
from gadget.ide.terminal.choose import Ask, Chooser
from gadget.ide.terminal.cli import DEFAULT_HUB_URL
from gadget.ide.terminal.exceptions import LoginFailed, NoChoice
from gadget.ide.terminal.lines import LineReader
from gadget.ide.terminal.repl import Repl
from gadget.ide.terminal.session import ChatClient


def make_ask(console: Console, reader: LineReader) -> Ask:
    """Ask a question on `console` and read the answer from `reader`."""

    async def ask(question: str) -> str | None:
        console.print(Text(question, style="bold"), end="")
        return await reader.readline()

    return ask


async def login(api: HubApi, username: str | None, reader: LineReader, ask: Ask) -> None:
    """Use GADGET_TOKEN when set (and no --username), else ask for username and password."""
    token = os.environ.get("GADGET_TOKEN")
    if token and not username:
        api.token = token
        try:
            await api.me()
        except LoginFailed as exc:
            raise LoginFailed(
                f"{exc} (GADGET_TOKEN is wrong or expired: unset it to log in)"
            ) from None
        return
    with contextlib.suppress(LoginFailed):  # fail on an unreachable hub before asking
        await api.me()
    if not username:
        username = (await ask("username: ") or "").strip()
        if not username:
            raise NoChoice("no username given")
    with reader.paused():
        password = await asyncio.to_thread(getpass.getpass, "password: ")
    await api.login(username, password)


async def chat(args: argparse.Namespace, console: Console) -> int:
    """Log in, choose drone / project / session, then run the read-eval loop."""
    url = args.hub or os.environ.get("GADGET_HUB_URL") or DEFAULT_HUB_URL
    async with HubApi(url) as api, LineReader(sys.stdin.fileno()) as reader:
        ask = make_ask(console, reader)
        await login(api, args.username, reader, ask)
        chooser = Chooser(api, console, ask)
        drone = await chooser.drone(args.drone)
        project = await chooser.project(args.project)
        chat_id = await chooser.session(str(project["_id"]), args.session)
        client = ChatClient(api, console, drone, project)
        return await Repl(client, reader, console).run(chat_id)
