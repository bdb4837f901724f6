"""An MCP tool server for tests, written with the SDK's MCPServer (mcp 2's name for FastMCP).

Run it over stdio (as the drone starts a configured ``command``)::

    python -m tests.fakes.mcp_server

or over streamable HTTP on a free loopback port (prints ``url: http://127.0.0.1:PORT/mcp``)::

    python -m tests.fakes.mcp_server --http

Tools: ``add`` (annotated read-only), ``write_note`` (appends to ``notes.txt`` in its
working directory), ``env`` (one environment variable), ``header`` (one header of the
HTTP request), ``fail`` (an error result), ``slow`` (sleeps) and ``crash`` (the
process exits at once).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
from pathlib import Path

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

__all__ = ["build", "main"]


def build() -> MCPServer:
    """The server and its tools."""
    server = MCPServer("fake-tools")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def write_note(text: str) -> str:
        """Append a line to notes.txt in the server's working directory."""
        with Path("notes.txt").open("a", encoding="utf-8") as fh:
            fh.write(text + "\n")
        return f"noted in {Path('notes.txt').resolve()}"

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def env(name: str) -> str:
        """The value of an environment variable of the server, or '(unset)'."""
        return os.environ.get(name, "(unset)")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def read(path: str) -> str:
        """The text of a file, or why it cannot be read."""
        try:
            return Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            return f"cannot read: {exc.strerror}"

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def header(name: str, ctx: Context) -> str:
        """A header of the HTTP request that carried this call, or '(none)'."""
        request = ctx.request_context.request
        headers = getattr(request, "headers", None)
        return str(headers.get(name, "(none)")) if headers is not None else "(none)"

    @server.tool()
    def fail(message: str) -> str:
        """Always fails with `message`."""
        raise ToolError(message)

    @server.tool()
    async def slow(seconds: float) -> str:
        """Sleep, then answer."""
        await asyncio.sleep(seconds)
        return f"slept {seconds}"

    @server.tool()
    def crash() -> str:
        """Exit the server process at once."""
        os._exit(3)

    return server


async def _serve_http(server: MCPServer) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    print(f"url: http://127.0.0.1:{sock.getsockname()[1]}/mcp", flush=True)
    app = server.streamable_http_app()
    await uvicorn.Server(uvicorn.Config(app, log_level="warning")).serve(sockets=[sock])


def main() -> None:
    """Serve over stdio, or over HTTP with --http."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", action="store_true", help="streamable HTTP on a free port")
    args = parser.parse_args()
    server = build()
    if args.http:
        anyio.run(_serve_http, server)
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
