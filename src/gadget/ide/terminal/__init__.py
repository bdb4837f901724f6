"""The terminal IDE: `gadget chat` streams a drone's turns into a terminal with rich.

Modules, in the order data flows through them:

- `cli`: the `chat` subcommand and its flags (cheap to import), errors → exit codes.
- `app`: log in, choose, run (`python -m gadget.ide.terminal` runs `chat` alone).
- `api`: the hub's REST API (login, drones, projects, chat sessions, turns).
- `choose`: pick drone, project and session from flags or numbered menus.
- `lines`: the asynchronous stdin reader, so commands work while a turn streams.
- `repl`: typed lines → prompts or `/commands` (a dispatch table).
- `session`: the Socket.IO client: lock, submit, dispatch hub events (a table).
- `reconnect`: a lost connection is retried with backoff, then the session re-locked.
- `stream`: a turn's numbered stream events through its seq cursor (`cursor`), shown in order.
- `progress`: what the screen shows of a turn, so a snapshot ahead of the cursor adds the rest.
- `render`: how a turn looks (thinking dimmed, Markdown, tool panels).
- `exceptions`: the expected failures, shown as one line.
"""

from __future__ import annotations

from gadget.ide.terminal.cli import add_chat_parser, cmd_chat

__all__ = ["add_chat_parser", "cmd_chat"]
