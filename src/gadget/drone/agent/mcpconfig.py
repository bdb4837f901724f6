"""The MCP configuration file (`GADGET_MCP_CONFIG`), in the common `mcpServers` shape.

::

    {"mcpServers": {
        "files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "."],
                  "env": {"DEBUG": "0"}},
        "docs":  {"url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer ..."}}
    }}

An entry with `command` is started as a stdio server, one with `url` is reached over
streamable HTTP. `"disabled": true` skips an entry. A bad entry is reported on its own;
the others still start.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gadget.drone.exceptions import McpConfigError

__all__ = ["HttpServer", "ServerSpec", "StdioServer", "load_config"]

#: Server names become tool-name prefixes (`name__tool`), so they must be identifier-like.
NAME = re.compile(r"^[A-Za-z0-9_-]{1,30}$")


class _Entry(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    disabled: bool = False


class StdioServer(_Entry):
    """A server the drone starts as a subprocess and talks to over stdin/stdout."""

    type: Literal["stdio"] | None = None
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)


class HttpServer(_Entry):
    """A running server the drone connects to over streamable HTTP."""

    type: Literal["http", "streamable-http", "streamableHttp"] | None = None
    url: str
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {url[:100]!r}")
        return url


ServerSpec = StdioServer | HttpServer


def load_config(path: Path) -> dict[str, ServerSpec | str]:
    """Each configured server by name: its spec, or why the entry is unusable.

    Disabled entries are left out.

    Raises:
        McpConfigError: the file is missing, not JSON, or has no `mcpServers` object.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise McpConfigError(f"cannot read GADGET_MCP_CONFIG {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise McpConfigError(f"GADGET_MCP_CONFIG {path} is not JSON: {exc}") from None
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise McpConfigError(
            f'expected GADGET_MCP_CONFIG {path} to hold {{"mcpServers": {{name: server}}}}'
        )
    out: dict[str, ServerSpec | str] = {}
    for name, entry in servers.items():
        spec = _entry(str(name), entry)
        if not (isinstance(spec, _Entry) and spec.disabled):
            out[str(name)] = spec
    return out


def _entry(name: str, entry: Any) -> ServerSpec | str:
    if not NAME.match(name):
        return "a server name may only hold letters, digits, _ and - (at most 30)"
    if not isinstance(entry, dict):
        return "expected an object with command (stdio) or url (streamable HTTP)"
    if entry.get("type") == "sse":
        return "the SSE transport is not supported; use the server's streamable HTTP URL"
    model: type[ServerSpec]
    if "command" in entry:
        model = StdioServer
    elif "url" in entry:
        model = HttpServer
    else:
        return "expected command (a stdio server) or url (a streamable HTTP server)"
    try:
        return model.model_validate(entry)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "entry"
        return f"{where}: {first['msg']}"
