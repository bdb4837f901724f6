"""MCP tool servers: started (stdio) or reached (streamable HTTP) once, offered to every agent.

Each server of `GADGET_MCP_CONFIG` (:mod:`gadget.drone.agent.mcpconfig`) is connected
with the official `mcp` SDK; its tools join the built-in ones as `server__tool`, their
JSON schemas and descriptions as the server gives them. A tool annotated
`readOnlyHint` runs unasked in "ask" mode. A server that fails to start is reported
in :meth:`McpServers.status` and logged; the drone works on without it.

A stdio server's argv is built in one place, :func:`stdio_parameters`, where a
sandbox (`Sandbox.wrap(argv, cwd, env) -> (argv, env)`) wraps it; its stderr goes to
`.gadget/mcp/<name>.log`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Protocol

import httpx2
import mcp_types
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import get_default_environment, stdio_client
from mcp.client.streamable_http import streamable_http_client
from pydantic import BaseModel, ConfigDict

from gadget.config import DroneSettings
from gadget.drone.agent.mcpconfig import HttpServer, ServerSpec, StdioServer, load_config
from gadget.drone.agent.tools import Tool, ToolContext, ToolResult
from gadget.drone.exceptions import McpConfigError, ToolError
from gadget.drone.fsio import gadget_dir

__all__ = ["CommandWrapper", "McpServers", "stdio_parameters"]

logger = logging.getLogger(__name__)

#: OpenAI's limit on a function name.
MAX_TOOL_NAME = 64
#: Seconds a stopping server gets before its task is cancelled.
CLOSE_GRACE_S = 5.0
#: Characters of a server's stderr quoted when it fails to start.
STDERR_TAIL = 600


class CommandWrapper(Protocol):
    """What runs a model-chosen program confined (the drone's sandbox)."""

    def wrap(
        self, argv: list[str], cwd: Path, env: dict[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        """The argv and environment that run `argv` in `cwd` inside the sandbox."""
        ...


class McpArguments(BaseModel):
    """An MCP tool's arguments: any JSON object (the server validates it)."""

    model_config = ConfigDict(extra="allow")


def stdio_parameters(
    spec: StdioServer, cwd: Path, sandbox: CommandWrapper | None = None
) -> StdioServerParameters:
    """How a stdio server is started: its argv and environment, wrapped by the sandbox if any.

    The environment is the SDK's safe default (PATH, HOME, ...; never the drone's
    secrets) plus the entry's `env`.
    """
    argv = [spec.command, *spec.args]
    env = get_default_environment() | spec.env
    if sandbox is not None:
        argv, env = sandbox.wrap(argv, cwd, env)
    return StdioServerParameters(command=argv[0], args=argv[1:], env=env, cwd=cwd)


class _Server:
    """One configured server: a task holding the SDK client open until :meth:`close`."""

    def __init__(
        self, name: str, spec: ServerSpec, settings: DroneSettings, sandbox: CommandWrapper | None
    ) -> None:
        self.name, self.spec, self.settings, self.sandbox = name, spec, settings, sandbox
        self.error: str | None = None
        self.listed: list[mcp_types.Tool] = []
        self.client: Client | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.root = settings.workspace.resolve()
        self.log_path = self.root / ".gadget" / "mcp" / f"{name}.log"

    async def start(self) -> None:
        """Connect and list the tools; a failure is kept in :attr:`error`."""
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._serve(ready), name=f"mcp:{self.name}")
        timeout = self.settings.mcp_start_timeout_s
        try:
            await asyncio.wait_for(asyncio.shield(ready), timeout)
        except TimeoutError:
            self.error = f"did not start and list its tools within {timeout:g}s"
        except Exception as exc:
            self.error = await asyncio.to_thread(self._explain, exc)
        if self.error is not None:
            logger.error("MCP server %s is not available: %s", self.name, self.error)
            self._stop.set()
            self._task.cancel()  # still connecting: no graceful stop to wait for
            await asyncio.wait({self._task})

    async def _serve(self, ready: asyncio.Future[None]) -> None:
        try:
            async with AsyncExitStack() as stack:
                client = await stack.enter_async_context(await self._client(stack))
                self.listed = await _list_tools(client)
                self.client = client
                ready.set_result(None)
                await self._stop.wait()
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            elif self.error is None and not self._stop.is_set():
                self.error = f"stopped: {_message(exc)}"
                logger.error("MCP server %s stopped: %s", self.name, self.error, exc_info=exc)
        finally:
            self.client = None
            if not ready.done():
                ready.cancel()

    async def _client(self, stack: AsyncExitStack) -> Client:
        if isinstance(self.spec, HttpServer):
            timeout = httpx2.Timeout(30.0, read=self.settings.mcp_call_timeout_s)
            http = await stack.enter_async_context(
                httpx2.AsyncClient(headers=self.spec.headers, timeout=timeout)
            )
            return Client(streamable_http_client(self.spec.url, http_client=http))
        await asyncio.to_thread(gadget_dir, self.root)
        self.log_path.parent.mkdir(exist_ok=True)
        errlog = stack.enter_context(self.log_path.open("a", encoding="utf-8"))
        params = stdio_parameters(self.spec, self.root, self.sandbox)
        return Client(stdio_client(params, errlog=errlog))

    def _explain(self, exc: BaseException) -> str:
        """Why the server did not start, with the tail of its stderr for a stdio server."""
        text = _message(exc)
        if isinstance(self.spec, HttpServer):
            return f"{text} (at {self.spec.url})"
        if isinstance(self.spec, StdioServer):
            with contextlib.suppress(OSError):
                tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-STDERR_TAIL:]
                if tail.strip():
                    text += f"; its stderr ended with: {tail.strip()}"
        return text

    async def call(self, tool: str, arguments: dict[str, Any]) -> mcp_types.CallToolResult:
        """Call one of the server's tools.

        Raises:
            ToolError: the server is not running, or the call failed.
        """
        client = self.client
        if client is None:
            raise ToolError(f"MCP server {self.name} is not running ({self.error or 'stopped'})")
        try:
            return await client.call_tool(
                tool, arguments, read_timeout_seconds=self.settings.mcp_call_timeout_s
            )
        except Exception as exc:  # whatever the server or its transport did, the model reads it
            logger.warning("MCP call %s__%s failed", self.name, tool, exc_info=exc)
            if isinstance(exc, MCPError) and exc.code == mcp_types.CONNECTION_CLOSED:
                self.error = "the server closed the connection (did it exit? see its log)"
                self._stop.set()  # the client is of no more use: release it
            raise ToolError(f"MCP server {self.name}: {tool} failed: {_message(exc)}") from None

    def status(self) -> dict[str, Any]:
        """`{"name", "ok", "error"?, "tools"}`."""
        ok = self.error is None and self.client is not None
        entry: dict[str, Any] = {"name": self.name, "ok": ok, "tools": len(self.listed)}
        if not ok:
            entry["error"] = self.error or "stopped"
        return entry

    async def close(self) -> None:
        """Stop the client (and a stdio server's process)."""
        self._stop.set()
        task = self._task
        if task is None or task.done():
            return
        _, pending = await asyncio.wait({task}, timeout=CLOSE_GRACE_S)
        if pending:
            task.cancel()
            await asyncio.wait({task})


class McpServers:
    """The drone's MCP servers: `async with McpServers(settings) as mcp`, then :meth:`tools`."""

    def __init__(self, settings: DroneSettings, sandbox: CommandWrapper | None = None) -> None:
        """Prepare the servers of `settings.mcp_config` (none when unset)."""
        self.settings, self.sandbox = settings, sandbox
        self._servers: list[_Server] = []
        self._problems: list[dict[str, Any]] = []

    async def start(self) -> list[dict[str, Any]]:
        """Start or connect to every configured server at once; their status."""
        path = self.settings.mcp_config
        if path is None:
            return []
        try:
            specs = await asyncio.to_thread(load_config, path)
        except McpConfigError as exc:
            logger.error("%s", exc)
            self._problems = [{"name": str(path), "ok": False, "error": str(exc), "tools": 0}]
            return self.status()
        for name, spec in specs.items():
            if isinstance(spec, str):
                logger.error("MCP server %s is not configured right: %s", name, spec)
                self._problems.append({"name": name, "ok": False, "error": spec, "tools": 0})
            else:
                self._servers.append(_Server(name, spec, self.settings, self.sandbox))
        await asyncio.gather(*(server.start() for server in self._servers))
        for server in self._servers:
            if server.error is None:
                logger.info("MCP server %s: %d tools", server.name, len(server.listed))
        return self.status()

    def status(self) -> list[dict[str, Any]]:
        """`[{"name", "ok", "error"?, "tools": n}]` for the drone's state, in config order."""
        return [*self._problems, *(server.status() for server in self._servers)]

    def tools(self) -> list[Tool]:
        """The running servers' tools as agent tools named `server__tool`."""
        out: dict[str, Tool] = {}
        for server in self._servers:
            for listed in server.listed if server.client is not None else []:
                tool = _as_tool(server, listed)
                if tool.name in out:
                    logger.warning(
                        "MCP tool name %s is taken; %s's is left out", tool.name, server.name
                    )
                    continue
                out[tool.name] = tool
        return list(out.values())

    async def close(self) -> None:
        """Stop every server."""
        await asyncio.gather(*(server.close() for server in self._servers))

    async def __aenter__(self) -> McpServers:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _as_tool(server: _Server, listed: mcp_types.Tool) -> Tool:
    name = f"{server.name}__{re.sub(r'[^A-Za-z0-9_-]', '_', listed.name)}"[:MAX_TOOL_NAME]
    schema = listed.input_schema if isinstance(listed.input_schema, dict) else {}
    if schema.get("type") != "object":
        schema = {"type": "object", "properties": {}}
    described = (listed.description or listed.title or listed.name).strip()
    read_only = bool(listed.annotations and listed.annotations.read_only_hint)

    async def run(params: BaseModel, ctx: ToolContext) -> ToolResult:
        ctx.events.status(f"MCP {server.name}: {listed.name}")
        result = await server.call(listed.name, params.model_dump())
        text = _capped(_result_text(result), ctx.settings.command_output_limit)
        return ToolResult(text, ok=not result.is_error, server=server.name)

    return Tool(
        name,
        f"{described} (tool {listed.name!r} of MCP server {server.name})",
        McpArguments,
        run,
        read_only=read_only,
        schema=schema,
        server=server.name,
    )


async def _list_tools(client: Client) -> list[mcp_types.Tool]:
    tools: list[mcp_types.Tool] = []
    cursor: str | None = None
    for _ in range(100):  # a server whose pages never end cannot hang the start
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools


def _result_text(result: mcp_types.CallToolResult) -> str:
    """The result as text for the model (images and binary resources are described)."""
    parts: list[str] = []
    for item in result.content:
        if isinstance(item, mcp_types.TextContent):
            parts.append(item.text)
        elif isinstance(item, mcp_types.ImageContent | mcp_types.AudioContent):
            parts.append(f"[{item.type}: {item.mime_type}, {len(item.data) * 3 // 4} bytes]")
        elif isinstance(item, mcp_types.ResourceLink):
            parts.append(f"[resource: {item.uri}]")
        elif isinstance(item.resource, mcp_types.TextResourceContents):
            parts.append(item.resource.text)
        else:
            parts.append(f"[resource {item.resource.uri}: binary]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts) or "(no output)"


def _capped(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters elided ...]\n{text[-half:]}"


def _message(exc: BaseException) -> str:
    """A one-line reason, looking inside exception groups (anyio task groups raise them)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return str(exc) or type(exc).__name__
