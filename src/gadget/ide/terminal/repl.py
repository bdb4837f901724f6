"""The read-eval loop: typed lines become prompts or `/commands`, even while a turn streams."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from rich.text import Text

from gadget.ide.terminal.api import Json
from gadget.ide.terminal.choose import session_label
from gadget.ide.terminal.exceptions import HubRefused, TerminalError
from gadget.ide.terminal.screen import Screen
from gadget.ide.terminal.session import ChatClient
from gadget.protocol import IdeEvent, WorkspaceMode

#: A command: its argument text → whether to keep going.
Command = Callable[[str], Awaitable[bool]]

HELP = """[bold]commands[/]
  /mode idle|user|agent           ask the drone for a workspace mode (a refusal says why)
  /permissions [auto|ask|read-only]  which tool calls wait for your answer
  /diff [N]                       the last turn's changes, a diff per file (N: file N whole)
  /undo                           undo the last turn's changes (again: re-apply them)
  /model [N|NAME|default]         the drone's models, or choose this session's
  /usage                          this session's tokens, model calls and cost
  /cancel                         cancel the running turn (Ctrl-C too)
  /sessions [N]                   list this project's sessions, or resume number N
  /new                            start a new session
  /quit                           release the drone and exit (Ctrl-D too)
while a call waits for your answer: a = allow, d = deny, s = allow that tool for the session
anything else is a prompt for the agent"""


class Repl:
    """Reads lines, runs commands from a table, and submits everything else as a prompt."""

    def __init__(self, client: ChatClient, screen: Screen) -> None:
        self.client = client
        self.screen = screen
        self._tasks: set[asyncio.Task[None]] = set()
        #: Set by Ctrl-C while the connection is lost: nothing to cancel, so stop.
        self._interrupted = asyncio.Event()
        self.commands: dict[str, Command] = {
            "/mode": self.cmd_mode,
            "/cancel": self.cmd_cancel,
            "/sessions": self.cmd_sessions,
            "/new": self.cmd_new,
            "/quit": self.cmd_quit,
            "/help": self.cmd_help,
            **client.controls.commands(),
        }

    async def run(self, chat_id: str | None) -> int:
        """Lock the session and read lines until /quit, end of input or a fatal error.

        A lost connection is retried in the background (see `reconnect`); Ctrl-C
        while it is lost exits 130, an expired token raises `LoginFailed`.
        """
        await self.client.connect()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self._on_interrupt)
        self.screen.on_interrupt = self._on_interrupt  # Ctrl-C typed while a line is read
        try:
            await self.client.lock(chat_id)
            self._say("type a prompt, or /help")
            return await self._loop()
        finally:
            self.screen.on_interrupt = None
            loop.remove_signal_handler(signal.SIGINT)
            for task in self._tasks:
                task.cancel()
            await self.client.close()

    async def _loop(self) -> int:
        gone: asyncio.Future[Any] = asyncio.ensure_future(self.client.gone.wait())
        stop: asyncio.Future[Any] = asyncio.ensure_future(self._interrupted.wait())
        try:
            while True:
                read = asyncio.ensure_future(self.screen.readline())
                await asyncio.wait({read, gone, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not read.done():
                    read.cancel()
                    return self._stopped()
                line = read.result()
                if line is None:
                    return await self._end_of_input({gone, stop})
                if not await self._handle(line.strip()):
                    return 0
        finally:
            gone.cancel()
            stop.cancel()

    def _stopped(self) -> int:
        """The exit status when the chat stops without /quit; a fatal error is raised."""
        if self.client.error is not None:
            raise self.client.error
        return 130 if self._interrupted.is_set() else 1

    async def _end_of_input(self, stops: set[asyncio.Future[Any]]) -> int:
        """Ctrl-D or the end of piped input: let a running turn finish first (when connected)."""
        if self.client.turn_id is None or self.client.reconnector.running:
            return 0
        self._say("end of input: waiting for the turn to finish (Ctrl-C cancels it)")
        idle: asyncio.Future[Any] = asyncio.ensure_future(self.client.idle.wait())
        await asyncio.wait({idle, *stops}, return_when=asyncio.FIRST_COMPLETED)
        idle.cancel()
        return 0 if idle.done() and not idle.cancelled() else self._stopped()

    async def _handle(self, line: str) -> bool:
        """Run one typed line; expected failures are shown and the loop goes on."""
        if not line:
            return True
        try:
            if line.startswith("/"):
                name, _, arg = line.partition(" ")
                command = self.commands.get(name)
                if command is None:
                    self._say(f"unknown command {name}: try /help", "yellow")
                    return True
                return await command(arg.strip())
            if self.client.stream.approvals.pending is not None:
                await self.client.controls.answer(line)
                return True
            await self.client.submit(line)
        except TerminalError as exc:
            self._say(str(exc), "red")
        return True

    def _say(self, message: str, style: str = "dim") -> None:
        self.client.view.note(message, style)

    def _on_interrupt(self) -> None:
        if self.client.reconnector.running:
            self._say("interrupted while reconnecting")
            self._interrupted.set()
            return
        if self.client.turn_id is None:
            self._say("(/quit or Ctrl-D to exit)")
            return
        task = asyncio.create_task(self._cancel_quietly())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _cancel_quietly(self) -> None:
        try:
            await self.cmd_cancel("")
        except TerminalError as exc:
            self._say(str(exc), "red")

    async def cmd_mode(self, arg: str) -> bool:
        """/mode idle|user|agent."""
        modes = [m.value for m in WorkspaceMode]
        if arg not in modes:
            self._say(f"expected /mode {'|'.join(modes)}, got {arg or 'nothing'!r}", "yellow")
            return True
        try:
            await self.client.call(IdeEvent.REQUEST_WORKSPACE_MODE, arg)
        except HubRefused as exc:  # the drone's reason, e.g. "agent mode starts with a work order"
            self._say(f"✗ workspace mode {arg} refused: {exc.reason}", "yellow")
        return True

    async def cmd_cancel(self, arg: str) -> bool:
        """/cancel: ask the drone to stop the running turn."""
        turn_id = await self.client.cancel()
        if turn_id is None:
            self._say("no turn is running", "yellow")
            return True
        self._say(f"cancelling turn {turn_id}…")
        return True

    async def cmd_sessions(self, arg: str) -> bool:
        """/sessions lists this project's sessions; /sessions N resumes one."""
        chats = await self.client.api.chat_sessions(str(self.client.project["_id"]))
        if not arg:
            self._list_sessions(chats)
            return True
        if not arg.isdigit() or not 1 <= int(arg) <= len(chats):
            self._say(f"expected /sessions N with N from 1 to {len(chats)}, got {arg!r}", "yellow")
            return True
        await self.client.lock(str(chats[int(arg) - 1]["_id"]))
        return True

    def _list_sessions(self, chats: list[Json]) -> None:
        if not chats:
            self._say("no sessions yet")
        for n, chat in enumerate(chats, 1):
            mark = "[bold green]*[/]" if chat["_id"] == self.client.chat_id else " "
            self.screen.note(Text.from_markup(f"{mark} [bold]{n}[/]) {session_label(chat)}"))

    async def cmd_new(self, arg: str) -> bool:
        """/new: lock the drone for a fresh session."""
        await self.client.lock(None)
        return True

    async def cmd_quit(self, arg: str) -> bool:
        """/quit: stop reading."""
        return False

    async def cmd_help(self, arg: str) -> bool:
        """/help: the commands."""
        self.screen.note(Text.from_markup(HELP))
        return True
