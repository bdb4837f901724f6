"""The wire contract shared by hub, drone, IDE and tests.

Event names, wire enums and pydantic payloads of the Socket.IO protocol
(`docs/protocol.md`). Field names are exactly those on the wire: `_id` and
camelCase. Positional events (``toolCall(callId, name, params, response)``)
are described by an *args model* whose fields are in wire order;
:func:`parse_args` maps the positional arguments onto it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

__all__ = [
    "MAX_CONTENT",
    "MAX_PAYLOAD",
    "STREAM_EVENTS",
    "AgentComplete",
    "AgentResponse",
    "AgentThinking",
    "AgentToolCall",
    "AgentToolResult",
    "ApprovalAnswer",
    "ApprovalDecision",
    "ApprovalRecord",
    "ArgsError",
    "BlockMode",
    "BlockOut",
    "CrashRecoveryRequest",
    "CrashRecoveryResponse",
    "DroneEvent",
    "ErrorCode",
    "FileChange",
    "HubEvent",
    "IdeEvent",
    "LogArgs",
    "McpServerInfo",
    "ModelInfo",
    "PendingApproval",
    "PermissionMode",
    "Ref",
    "RevertConflict",
    "RevertOutcome",
    "ToolApproval",
    "ToolCallArgs",
    "ToolCallOut",
    "TurnChangesArgs",
    "TurnOut",
    "TurnStatus",
    "Usage",
    "WorkOrderCompleteArgs",
    "WorkspaceMode",
    "mark",
    "parse_args",
    "parse_mode",
    "parse_permission_mode",
    "split_mark",
]

#: Largest single streamed text delta accepted (thinking / response), in characters.
MAX_CONTENT = 1_000_000
#: Largest tool parameters / result accepted, in characters.
MAX_PAYLOAD = 8_000_000
#: Largest identifier accepted.
MAX_ID = 200


class WorkspaceMode(StrEnum):
    """Who holds a drone's workspace."""

    IDLE = "idle"
    USER = "user"
    AGENT = "agent"


class TurnStatus(StrEnum):
    """Lifecycle of one chat turn."""

    PROCESSING = "processing"
    FINISHED = "finished"
    ERROR = "error"


class BlockMode(StrEnum):
    """Kind of one block of a turn."""

    THINKING = "thinking"
    RESPONDING = "responding"
    TOOL = "tool"


class PermissionMode(StrEnum):
    """Which of the agent's tool calls run unasked in a chat session."""

    #: Every tool runs.
    AUTO = "auto"
    #: Commands, writes, edits and MCP tools not marked read-only wait for the person.
    ASK = "ask"
    #: Only reading tools run; the others return a tool error the model can read.
    READ_ONLY = "read-only"


class ApprovalDecision(StrEnum):
    """The person's answer to a `toolApproval` request."""

    ALLOW = "allow"
    DENY = "deny"
    #: Allow this tool name for the rest of the chat session.
    ALLOW_SESSION = "allow-session"


class IdeEvent(StrEnum):
    """Events an IDE sends to the hub."""

    REQUEST_SESSION_LOCK = "requestSessionLock"
    RELEASE_SESSION_LOCK = "releaseSessionLock"
    REQUEST_WORKSPACE_MODE = "requestWorkspaceMode"
    SUBMIT_PROMPT = "submitPrompt"
    CANCEL_WORK_ORDER = "cancelWorkOrder"
    REQUEST_TERMINATION = "requestTermination"
    #: `setPermissionMode(mode)`: the locked session's permission mode.
    SET_PERMISSION_MODE = "setPermissionMode"
    #: `answerApproval(turnId, callId, decision)`: the person's answer to a `toolApproval`.
    ANSWER_APPROVAL = "answerApproval"
    #: `revertTurn(turnId)`: undo a finished turn's changes (or re-apply a reverted one).
    REVERT_TURN = "revertTurn"
    #: `setModel(model | null)`: the locked session's model (null: the drone's default).
    SET_MODEL = "setModel"
    #: `watchDrones(bool)`: whether this socket gets `droneState` for every drone of its user.
    WATCH_DRONES = "watchDrones"


class DroneEvent(StrEnum):
    """Events a drone sends to the hub (all but crash recovery are forwarded to IDEs)."""

    STATUS = "status"
    LOG = "log"
    WORKSPACE_MODE_CHANGED = "workspaceModeChanged"
    THINKING = "thinking"
    RESPONSE = "response"
    TOOL_CALL = "toolCall"
    WORK_ORDER_COMPLETE = "workOrderComplete"
    REQUEST_CRASH_RECOVERY = "requestCrashRecovery"
    AGENT_THINKING = "agent:thinking"
    AGENT_RESPONSE = "agent:response"
    AGENT_TOOL_CALL = "agent:tool-call"
    AGENT_TOOL_RESULT = "agent:tool-result"
    AGENT_COMPLETE = "agent:complete"
    #: `toolApproval({turnId, callId, name, parameters, server?, agentId?})`: a call waits.
    TOOL_APPROVAL = "toolApproval"
    #: `turnChanges(turnId, changes)`: the files the turn changed, before `workOrderComplete`.
    TURN_CHANGES = "turnChanges"
    #: `usage({turnId, model, promptTokens, completionTokens, durationMs, cost?})`: one model call.
    USAGE = "usage"


class HubEvent(StrEnum):
    """Events the hub originates (to drones, or to IDEs beyond the forwarded drone events)."""

    PROCESS_WORK_ORDER = "processWorkOrder"
    CRASH_RECOVERY_RESPONSE = "crashRecoveryResponse"
    REQUEST_WORKSPACE_MODE = "requestWorkspaceMode"
    REQUEST_TERMINATION = "requestTermination"
    CANCEL_WORK_ORDER = "cancelWorkOrder"
    #: hub→IDE: the whole turn so far, sent when an IDE joins a session mid-turn.
    TURN_SNAPSHOT = "turnSnapshot"
    #: hub→IDE: a turn was created (its prompt), so every IDE of the session shows it.
    TURN_STARTED = "turnStarted"
    #: hub→IDE: a drone's online state, mode or lock changed (for drone lists).
    DRONE_STATE = "droneState"
    #: hub→IDE / hub→drone: an event was refused (malformed, unauthorized).
    ERROR = "error"
    #: hub→drone: every event of a turn up to a seq is stored (the drone may forget them).
    STREAM_ACK = "streamAck"
    #: hub→drone `setPermissionMode({turnId, mode})`: the running turn's mode changed.
    SET_PERMISSION_MODE = "setPermissionMode"
    #: hub→drone `approvalDecision({turnId, callId, decision})`; hub→IDE the same with `by`.
    APPROVAL_DECISION = "approvalDecision"
    #: hub→drone `revertTurn(turnId)`, acked `(true, {reverted, conflicts, restored})`.
    REVERT_TURN = "revertTurn"
    #: hub→IDE `permissionModeChanged({chatSession, mode})`.
    PERMISSION_MODE_CHANGED = "permissionModeChanged"
    #: hub→IDE `modelChanged({chatSession, model})`.
    MODEL_CHANGED = "modelChanged"
    #: hub→IDE `turnReverted({turnId, reverted, conflicts})`.
    TURN_REVERTED = "turnReverted"


#: Drone events that are numbered per turn (`{"turnId", "seq"}` as a trailing argument),
#: kept by the drone until acknowledged, applied once by the hub, and forwarded with their mark.
STREAM_EVENTS = frozenset(
    {
        DroneEvent.THINKING,
        DroneEvent.RESPONSE,
        DroneEvent.TOOL_CALL,
        DroneEvent.WORK_ORDER_COMPLETE,
        DroneEvent.AGENT_THINKING,
        DroneEvent.AGENT_RESPONSE,
        DroneEvent.AGENT_TOOL_CALL,
        DroneEvent.AGENT_TOOL_RESULT,
        DroneEvent.AGENT_COMPLETE,
        DroneEvent.TOOL_APPROVAL,
        DroneEvent.TURN_CHANGES,
        DroneEvent.USAGE,
    }
)


class ErrorCode(StrEnum):
    """Machine-readable `code` of an `error` event, where the receiver acts on it."""

    #: A stream event's seq is not the next one: resend from `expected`.
    GAP = "gap"
    #: The hub holds too much not yet stored: resend from `expected` a little later.
    FULL = "full"
    #: Another process connected with this drone's id and replaced this one.
    REPLACED = "replaced"
    #: The socket fell too far behind the stream and is being disconnected.
    SLOW = "slow"
    #: Too many events, or too large, from this socket.
    LIMIT = "limit"


class _Wire(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


Id = Annotated[str, Field(min_length=1, max_length=MAX_ID)]
Text = Annotated[str, Field(max_length=MAX_CONTENT)]
Payload = Annotated[str, Field(max_length=MAX_PAYLOAD)]


class Ref(_Wire):
    """A reference to a stored object: only `_id` is read."""

    id: Id = Field(alias="_id")


class CrashRecoveryRequest(_Wire):
    """Drone→hub `requestCrashRecovery` payload."""

    workspaceId: Id
    turnId: Id
    chatSessionId: Id


class CrashRecoveryResponse(_Wire):
    """Hub→drone `crashRecoveryResponse` payload."""

    turnId: str
    action: Literal["discard", "retry"]
    retryDelay: int | None = None


class AgentThinking(_Wire):
    """`agent:thinking` payload: a subagent's reasoning delta."""

    agentId: Id
    thinking: Text


class AgentResponse(_Wire):
    """`agent:response` payload: a subagent's answer delta."""

    agentId: Id
    chunk: Text


class AgentToolCall(_Wire):
    """`agent:tool-call` payload: a subagent started a tool."""

    agentId: Id
    tool: Annotated[str, Field(max_length=MAX_ID)]
    args: Any = None


class AgentToolResult(_Wire):
    """`agent:tool-result` payload: a subagent's tool finished."""

    agentId: Id
    tool: Annotated[str, Field(max_length=MAX_ID)]
    result: Any = None


class AgentComplete(_Wire):
    """`agent:complete` payload: a subagent finished; agentId is the parent's tool callId."""

    agentId: Id
    response: Payload | None = None
    subagent: dict[str, Any] | None = None
    stats: dict[str, Any] | None = None


class ToolCallArgs(_Wire):
    """`toolCall(callId, name, params, response)`: params and response are JSON strings."""

    callId: Id
    name: Annotated[str, Field(min_length=1, max_length=MAX_ID)]
    params: Payload
    response: Payload


class WorkOrderCompleteArgs(_Wire):
    """`workOrderComplete(turnId, success, message?)`."""

    turnId: Id
    success: StrictBool
    message: Annotated[str, Field(max_length=MAX_CONTENT)] | None = None


class LogArgs(_Wire):
    """`log(timestamp, component, level, message, metadata?)`."""

    timestamp: str | float | int
    component: Annotated[str, Field(max_length=MAX_ID)]
    level: Annotated[str, Field(max_length=32)]
    message: Annotated[str, Field(max_length=MAX_CONTENT)]
    metadata: Any = None


class ModelInfo(_Wire):
    """A drone's model as it reports it at connect (`auth.model`); shown by the IDE."""

    name: Annotated[str, Field(max_length=MAX_ID)]
    baseUrl: Annotated[str, Field(max_length=2000)]
    reachable: bool
    error: Annotated[str, Field(max_length=2000)] | None = None


Count = Annotated[int, Field(strict=True, ge=0, le=2**53)]


class ToolApproval(_Wire):
    """Drone→hub `toolApproval` payload: a tool call that waits for the person's answer.

    `server` names the MCP server of an MCP tool; `agentId` is the `task` call's id when
    a subagent made the call.
    """

    turnId: Id
    callId: Id
    name: Annotated[str, Field(min_length=1, max_length=MAX_ID)]
    parameters: Payload
    server: Annotated[str, Field(max_length=MAX_ID)] | None = None
    agentId: Id | None = None


class PendingApproval(_Wire):
    """A turn's `pendingApproval`: the call waiting for an answer, since `askedAt`."""

    callId: str
    name: str
    parameters: str
    server: str | None = None
    agentId: str | None = None
    askedAt: str


class ApprovalRecord(_Wire):
    """An answer as a tool call keeps it (`toolCalls[i].approval`): what, who, when."""

    decision: ApprovalDecision
    by: str
    at: str


class ApprovalAnswer(_Wire):
    """IDE→hub `answerApproval(turnId, callId, decision)`."""

    turnId: Id
    callId: Id
    decision: ApprovalDecision


class FileChange(_Wire):
    """One file a turn changed (`turnChanges`, turn JSON `changes`); `diff` is unified diff text."""

    path: Annotated[str, Field(min_length=1, max_length=4096)]
    status: Literal["added", "modified", "deleted"]
    additions: Count
    deletions: Count
    diff: Payload | None = None


class TurnChangesArgs(_Wire):
    """Drone→hub `turnChanges(turnId, changes)`."""

    turnId: Id
    changes: Annotated[list[FileChange], Field(max_length=100_000)]


class Usage(_Wire):
    """Drone→hub `usage` payload: one model call's tokens (null: not reported), time and cost.

    `agentId` is the `task` call's id for a subagent's model call.
    """

    turnId: Id
    model: Annotated[str, Field(max_length=MAX_ID)]
    promptTokens: Count | None = None
    completionTokens: Count | None = None
    durationMs: Count = 0
    cost: Annotated[float, Field(ge=0)] | None = None
    agentId: Id | None = None


class McpServerInfo(_Wire):
    """One MCP server of a drone as it reports it at connect (`auth.mcp`)."""

    name: Annotated[str, Field(max_length=MAX_ID)]
    ok: StrictBool
    error: Annotated[str, Field(max_length=4000)] | None = None
    tools: Count = 0


class RevertConflict(_Wire):
    """A file a revert left alone, and why."""

    path: str
    reason: str


class RevertOutcome(_Wire):
    """What a drone did for `revertTurn`: the turn's state afterwards, files left and restored."""

    reverted: StrictBool
    conflicts: list[RevertConflict] = Field(default_factory=list)
    restored: list[str] = Field(default_factory=list)


class BlockOut(_Wire):
    """One block of a turn as JSON (content is text, or a tool call object for tool blocks)."""

    mode: BlockMode
    createdAt: datetime
    content: str | dict[str, Any]
    attempt: int = 1


class ToolCallOut(_Wire):
    """One tool call of a turn as JSON."""

    callId: str
    name: str
    parameters: str
    response: str
    subagent: dict[str, Any] | None = None
    #: The person's answer, when the call waited for one.
    approval: ApprovalRecord | None = None

    def tool_block_content(self) -> dict[str, Any]:
        """The content of this call's tool block: callId, name, parameters, response
        (, subagent, approval)."""
        return self.model_dump(mode="json", exclude_none=True)


class TurnOut(_Wire):
    """A chat turn as JSON, on the wire and in REST."""

    id: str = Field(alias="_id")
    chatSession: str
    user: str
    prompt: str
    status: TurnStatus
    errorMessage: str | None = None
    retries: int = 0
    #: Present (true) only for a turn that a cancel ended; its status is then "error".
    cancelled: bool | None = None
    createdAt: datetime
    updatedAt: datetime | None = None
    blocks: list[BlockOut] = Field(default_factory=list)
    toolCalls: list[ToolCallOut] = Field(default_factory=list)
    stats: dict[str, Any] = Field(default_factory=dict)
    #: The last stream event included (its seq; 0 before the first): a client that saw
    #: this turn up to here applies only events with a higher seq.
    seq: int = 0
    #: Live turns only: the stream so far of each subagent still running, by agentId,
    #: as `[event, payload]` pairs (a finished subagent's is in its tool call's `subagent.stream`).
    agentStreams: dict[str, list[Any]] | None = None
    #: The tool call waiting for the person's answer, if one does.
    pendingApproval: PendingApproval | None = None
    #: The files the turn changed, as its drone reported them at its end.
    changes: list[FileChange] | None = None
    #: Present (true) only while the turn's changes are undone (`revertTurn`).
    reverted: bool | None = None
    #: Not on the wire: every answer of the turn by callId, with the call's name and
    #: parameters (the hub's mirror of a resumed turn needs them; see hub/stream/approvals.py).
    decisions: dict[str, dict[str, Any]] | None = Field(default=None, exclude=True)

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict with `_id` and without unset optional fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def mark(turn_id: str, seq: int) -> dict[str, Any]:
    """The trailing argument that numbers a stream event: `{"turnId", "seq"}`."""
    return {"turnId": turn_id, "seq": seq}


def split_mark(args: tuple[Any, ...] | list[Any]) -> tuple[tuple[Any, ...], tuple[str, int] | None]:
    """Separate a trailing `{"turnId", "seq"}` from an event's arguments.

    Returns the arguments without it, and `(turnId, seq)` or None when the event has
    no mark (a reference drone). A mark must be exactly those two keys with a non-empty
    string and a positive integer; anything else is left as an ordinary argument.
    """
    if args:
        last = args[-1]
        if type(last) is dict and len(last) == 2:
            turn_id, seq = last.get("turnId"), last.get("seq")
            if (
                type(turn_id) is str
                and 0 < len(turn_id) <= MAX_ID
                and type(seq) is int
                and 0 < seq < 2**53
            ):
                return tuple(args[:-1]), (turn_id, seq)
    return tuple(args), None


class ArgsError(ValueError):
    """Positional event arguments did not match the event's args model."""


M = TypeVar("M", bound=BaseModel)


def parse_args(model: type[M], args: tuple[Any, ...] | list[Any]) -> M:
    """Validate positional wire arguments against `model`, whose fields are in wire order.

    Raises:
        ArgsError: too many arguments, or a value of the wrong type / size; the
            message names the field and what was expected.
    """
    names = list(model.model_fields)
    if len(args) > len(names):
        raise ArgsError(
            f"expected at most {len(names)} arguments ({', '.join(names)}), got {len(args)}"
        )
    try:
        return model.model_validate(dict(zip(names, args, strict=False)))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or model.__name__
        raise ArgsError(f"{where}: {first['msg']}") from None


def parse_mode(args: tuple[Any, ...] | list[Any], what: str) -> WorkspaceMode:
    """The workspace mode that is the only argument of `what`.

    Raises:
        ArgsError: not exactly one argument, or not one of the modes.
    """
    expected = ", ".join(repr(m.value) for m in WorkspaceMode)
    if len(args) != 1 or not isinstance(args[0], str):
        raise ArgsError(f"{what}: expected one of {expected}")
    try:
        return WorkspaceMode(args[0])
    except ValueError:
        raise ArgsError(f"{what}: expected one of {expected}, got {args[0][:40]!r}") from None


def parse_permission_mode(args: tuple[Any, ...] | list[Any], what: str) -> PermissionMode:
    """The permission mode that is the only argument of `what`.

    Raises:
        ArgsError: not exactly one argument, or not one of the modes.
    """
    expected = ", ".join(repr(m.value) for m in PermissionMode)
    if len(args) != 1 or not isinstance(args[0], str):
        raise ArgsError(f"{what}: expected one of {expected}")
    try:
        return PermissionMode(args[0])
    except ValueError:
        raise ArgsError(f"{what}: expected one of {expected}, got {args[0][:40]!r}") from None
