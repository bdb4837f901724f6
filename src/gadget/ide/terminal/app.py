"""The terminal IDE's run: log in, choose drone / project / session, then the read-eval loop."""

from __future__ import annotations

import argparse
import contextlib
import os

from rich.console import Console

from gadget.ide.terminal.api import HubApi
from gadget.ide.terminal.choose import Ask, Chooser
from gadget.ide.terminal.cli import DEFAULT_HUB_URL
from gadget.ide.terminal.exceptions import LoginFailed, NoChoice
from gadget.ide.terminal.repl import Repl
from gadget.ide.terminal.screen import Screen, open_screen
from gadget.ide.terminal.session import ChatClient


async def login(api: HubApi, username: str | None, screen: Screen) -> None:
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
        username = (await screen.readline("username: ") or "").strip()
        if not username:
            raise NoChoice("no username given")
    await api.login(username, await screen.password("password: "))


async def chat(args: argparse.Namespace, console: Console) -> int:
    """Log in, choose drone / project / session, then run the read-eval loop."""
    url = args.hub or os.environ.get("GADGET_HUB_URL") or DEFAULT_HUB_URL
    async with HubApi(url) as api, open_screen(console) as screen:
        ask: Ask = screen.readline
        await login(api, args.username, screen)
        chooser = Chooser(api, screen.console, ask)
        drone = await chooser.drone(args.drone)
        project = await chooser.project(args.project)
        chat_id = await chooser.session(str(project["_id"]), args.session)
        client = ChatClient(api, screen, drone, project)
        return await Repl(client, screen).run(chat_id)
