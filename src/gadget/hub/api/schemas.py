"""What the REST API answers, declared so that /openapi.json is exact (tests/hub/test_openapi.py).

Bodies mirror `gadget.hub.views` (the shapes the sockets send too): a field added
there must be added here, or the route answers 500 and the OpenAPI test fails.
Only a drone's live state (`routing.DroneLink.view`) may carry more than is listed.
Every refusal is `{"detail": message}` (`errors.py`) but two: 422 is FastAPI's own
validation body, `{"detail": [{"loc", "msg", "type"}, ...]}`, and 413 (a body over
MAX_BODY) is Starlette's plain-text "Content Too Large", sent before any handler runs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from gadget.protocol import MAX_ID, McpServerInfo, ModelInfo, PermissionMode, WorkspaceMode

#: Largest request body (bytes) any route accepts: the biggest, a project, is ~10 KiB.
MAX_BODY = 64 * 1024

#: A stored timestamp, ISO 8601 with its UTC offset.
Stamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
#: An object id in a path or query: longer ones can name nothing (422, not a lookup).
PathId = Annotated[str, Path(min_length=1, max_length=MAX_ID)]
QueryId = Annotated[str | None, Query(min_length=1, max_length=MAX_ID)]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Detail(_Out):
    """A refusal: what was wrong and, where it helps, how to fix it."""

    detail: str


class UserOut(_Out):
    """A user (never the password hash)."""

    id: str = Field(alias="_id")
    username: str


class LoginOut(_Out):
    """A token for the `Authorization: Bearer` header, and whose it is."""

    token: str
    user: UserOut


class ProjectOut(_Out):
    """A project."""

    id: str = Field(alias="_id")
    name: str
    description: str
    user: str
    createdAt: Stamp


class RegistrationOut(_Out):
    """A drone registration (never the key hash)."""

    id: str = Field(alias="_id")
    name: str
    hostname: str
    user: str
    createdAt: Stamp
    lastSeen: Stamp | None


class NewDroneOut(_Out):
    """A new registration and its key, shown this once."""

    registration: RegistrationOut
    key: str


class LockHolder(_Out):
    """Who holds a drone's session lock."""

    id: str = Field(alias="_id")
    username: str


class DroneOut(RegistrationOut):
    """A registration with the drone's live state (`droneState` on the sockets)."""

    model_config = ConfigDict(extra="allow")

    online: bool
    workspaceMode: WorkspaceMode
    lockedBy: LockHolder | None
    chatSession: str | None
    currentTurn: str | None
    model: ModelInfo | None
    #: How the drone runs the agent's commands, as it reported it.
    sandbox: Literal["bwrap", "none"] | None = None
    #: Another process with this drone's id replaced it: {"hostname", "pid", "at"}.
    conflict: dict[str, Any] | None = None
    #: The model names the drone's endpoint lists (null: unknown).
    models: list[str] | None = None
    #: The drone's MCP servers: each one's name, whether it runs, its error, its tool count.
    mcp: list[McpServerInfo] | None = None


class SessionUsage(_Out):
    """A chat session's model usage, summed over its turns (cost only when priced)."""

    promptTokens: int
    completionTokens: int
    modelCalls: int
    cost: float | None = None


class ChatSessionOut(_Out):
    """A chat session."""

    id: str = Field(alias="_id")
    user: str
    project: str
    drone: str | None
    title: str
    createdAt: Stamp
    #: Which tool calls run unasked.
    permissionMode: PermissionMode
    #: The model its turns ask for (null: the drone's default).
    model: str | None
    usage: SessionUsage


class SettingsOut(_Out):
    """A user's settings."""

    #: The permission mode the user's new chat sessions start in.
    defaultPermissionMode: PermissionMode


class TerminateOut(_Out):
    """Whether the drone was asked to stop."""

    success: bool


_WHY = {
    400: "A body that is not UTF-8 JSON, or a query parameter the route does not take",
    401: "No, a malformed or an expired `Authorization: Bearer` token, or wrong credentials",
    403: "Not allowed for this user",
    404: "No such object among the user's own (another user's ids are not found either)",
    409: "Clashes with what exists (a taken username, the drone cap reached)",
    413: f"The body is larger than {MAX_BODY} bytes",
    429: "Too many failed logins: retry after `Retry-After` seconds",
}


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds until the window of failed logins ends",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def refusals(*codes: int, body: bool = False) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route that may refuse with these status codes (and a bad body)."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in (400, *codes, 413) if body else (400, *codes):
        out[code] = {"model": Detail, "description": _WHY[code]}
        if code == 413:  # Starlette's body limit answers before any handler: plain text
            out[code] = {"description": _WHY[code], "content": {"text/plain": {}}}
        elif code == 429:
            out[code]["headers"] = _RETRY_AFTER
    return out
