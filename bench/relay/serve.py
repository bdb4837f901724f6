"""The server process: the real hub, or a bare relay with the same uvicorn settings.

Run as `python -m bench.relay.serve {hub,bare} HOME [--cpu N] [--asyncio] [--profile F]`: it
serves on a free loopback port, prints `PORT <n>` on stdout once it accepts
connections, and stops on SIGTERM (uvicorn's own signal handling; the hub's
lifespan then drains its recorder).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import signal
import sys
from pathlib import Path
from typing import Any

import socketio
import uvicorn

from gadget.config import Settings
from gadget.hub import fastjson
from gadget.hub.server import uvicorn_config
from gadget.runtime import run

SECRET_KEY = "bench-secret-key-0123456789abcdef0123456789abcdef"


def bare_app() -> Any:
    """A relay that only forwards: a drone's `response` goes to its room's IDEs.

    Sockets name their room in auth: `{"room": name}` for an IDE (joins it),
    `{"room": name, "drone": true}` for a drone (its events go there). Same
    python-socketio options as the hub where they matter: inline ordered
    handlers and the orjson-backed json module.
    """
    sio = socketio.AsyncServer(
        async_mode="asgi", cors_allowed_origins=[], async_handlers=False, json=fastjson
    )
    rooms: dict[str, str] = {}

    @sio.on("connect")
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> bool:
        if not isinstance(auth, dict) or not isinstance(auth.get("room"), str):
            return False
        if auth.get("drone"):
            rooms[sid] = auth["room"]
        else:
            await sio.enter_room(sid, auth["room"])
        return True

    @sio.on("disconnect")
    async def disconnect(sid: str, reason: Any = None) -> None:
        rooms.pop(sid, None)

    @sio.on("response")
    async def response(sid: str, *args: Any) -> None:
        room = rooms.get(sid)
        if room is not None:
            await sio.emit("response", args, room=room)

    return socketio.ASGIApp(sio)


def server_config(kind: str, home: Path) -> uvicorn.Config:
    """The production uvicorn config (gadget.hub.server); the bare relay swaps in its app."""
    settings = Settings(home=home, allow_signup=True, secret_key=SECRET_KEY)
    config = uvicorn_config(settings, host="127.0.0.1", port=0)
    if kind == "bare":
        config.app = bare_app()
    return config


async def _serve(config: uvicorn.Config) -> None:
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(3000):  # up to 30 s to start
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if not server.started:
        server.should_exit = True
        await task
        raise SystemExit("server did not start")
    port = server.servers[0].sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    parent = os.getppid()
    while not task.done():  # stop with the load generator, even if it was killed
        await asyncio.wait({task}, timeout=1)
        if os.getppid() != parent:
            server.should_exit = True
    await task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.relay.serve")
    parser.add_argument("kind", choices=["hub", "bare"])
    parser.add_argument("home", type=Path)
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    parser.add_argument(
        "--asyncio",
        action="store_true",
        help="asyncio's own loop instead of uvloop (`gadget hub` uses uvloop)",
    )
    parser.add_argument("--profile", type=Path, default=None, help="write cProfile stats here")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    config = server_config(args.kind, args.home)
    # uvicorn handles SIGTERM while serving, then re-raises it: let it end main() normally.
    signal.signal(signal.SIGTERM, lambda *_: None)
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    run(_serve(config), fast=not args.asyncio)  # as `gadget hub` does (gadget.cli.cmd_hub)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
