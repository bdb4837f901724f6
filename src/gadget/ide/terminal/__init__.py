"""The terminal IDE: `gadget chat` streams a drone's turns into a terminal with rich.

Modules, in the order data flows through them:

- `cli`: the `chat` subcommand, its flags, and the one place errors become exit codes.
- `api`: the hub's REST API (login, drones, projects, chat sessions, turns).
- `choose`: pick drone, project and session from flags or numbered menus.
- `lines`: the asynchronous stdin reader, so commands work while a turn streams.
- `session`: the Socket.IO client: lock, submit, dispatch hub events and `/commands`.
- `render`: how a turn looks (thinking dimmed, Markdown, tool panels).
"""

from __future__ import annotations

from gadget.ide.terminal.cli import add_chat_parser, cmd_chat

__all__ = ["add_chat_parser", "cmd_chat"]
