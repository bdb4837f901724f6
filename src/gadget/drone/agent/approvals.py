"""The permission gate: which tool calls run, which wait for the person, which are refused.

Modes (:class:`~gadget.protocol.PermissionMode`):

- ``auto``: every call runs;
- ``ask``: read-only tools (read_file, list_dir, search, task, MCP tools annotated
  ``readOnlyHint``) run; any other call waits for the person's decision through the
  injected :data:`Asker`, unless its tool was allowed for the session;
- ``read-only``: read-only tools run; the others get a tool error the model reads.

The wait has no time limit unless `GADGET_APPROVAL_TIMEOUT_S` is set. A cancelled turn
ends it (the asker's task is cancelled). A mode change during the wait decides it:
``auto`` lets the call run, ``read-only`` refuses it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from gadget.drone.agent.model import ToolCallRequest
from gadget.drone.agent.tools import Tool, ToolResult
from gadget.drone.fsio import gadget_dir, write_atomic
from gadget.drone.history import session_file_name
from gadget.protocol import ApprovalDecision, PermissionMode

__all__ = ["ApprovalRequest", "Asker", "PermissionGate", "SessionGrants"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApprovalRequest:
    """One call waiting for the person: `toolApproval({"turnId","callId","name","parameters"})`.

    `agent_id` is the `task` call's id when a subagent made the call.
    """

    turn_id: str
    call_id: str
    name: str
    parameters: str
    agent_id: str | None = None
    #: The MCP server of an MCP tool.
    server: str | None = None

    def to_json(self) -> dict[str, str]:
        """The wire payload (`server` only for an MCP tool, `agentId` for a subagent's call)."""
        out = {
            "turnId": self.turn_id,
            "callId": self.call_id,
            "name": self.name,
            "parameters": self.parameters,
        }
        if self.server is not None:
            out["server"] = self.server
        if self.agent_id is not None:
            out["agentId"] = self.agent_id
        return out


#: Asks the person and returns their decision (the drone sends `toolApproval` and waits for
#: `approvalDecision`); cancelled when the wait ends otherwise.
Asker = Callable[[ApprovalRequest], Awaitable[ApprovalDecision | str]]


class SessionGrants:
    """Tool names allowed for the rest of a chat session, in `.gadget/approvals/<chat>.json`."""

    def __init__(self, workspace: Path, chat_session_id: str) -> None:
        """Locate the session's file (nothing is read yet)."""
        self.workspace = workspace
        self.path = (
            workspace / ".gadget" / "approvals" / f"{session_file_name(chat_session_id)}.json"
        )
        self._names: set[str] | None = None

    async def allows(self, name: str) -> bool:
        """Whether `name` was allowed for the session (read once from disk)."""
        if self._names is None:
            self._names = await asyncio.to_thread(self._load)
        return name in self._names

    async def add(self, name: str) -> None:
        """Allow `name` for the rest of the session, durably."""
        if self._names is None:
            self._names = await asyncio.to_thread(self._load)
        self._names.add(name)
        await asyncio.to_thread(self._save, sorted(self._names))

    def _load(self) -> set[str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return {str(n) for n in data["allowed"]}
        except FileNotFoundError:
            return set()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring unreadable approvals file %s: %s", self.path, exc)
            return set()

    def _save(self, names: list[str]) -> None:
        gadget_dir(self.workspace)
        self.path.parent.mkdir(exist_ok=True)
        write_atomic(self.path, json.dumps({"allowed": names}).encode())


class _NoAnswer(Exception):
    """The approval wait's time limit passed."""


class PermissionGate:
    """Decides, before each tool call of a turn (its subagents' too), whether it may run."""

    def __init__(
        self,
        mode: PermissionMode,
        *,
        turn_id: str,
        asker: Asker | None = None,
        grants: SessionGrants | None = None,
        timeout_s: float | None = None,
    ) -> None:
        """Gate a turn's calls in `mode`; "ask" needs an `asker`, "allow-session" `grants`."""
        self._mode = PermissionMode(mode)
        self.turn_id, self.asker, self.grants, self.timeout_s = turn_id, asker, grants, timeout_s
        self._changed = asyncio.Event()

    @property
    def mode(self) -> PermissionMode:
        """The current mode."""
        return self._mode

    def set_mode(self, mode: PermissionMode) -> None:
        """Switch mode mid-turn; calls waiting for an answer are decided by the new mode."""
        self._mode = PermissionMode(mode)
        self._changed.set()
        self._changed = asyncio.Event()

    async def check(
        self, call: ToolCallRequest, tool: Tool | None, params: str, agent_id: str | None = None
    ) -> ToolResult | None:
        """None when the call may run; otherwise the tool result to give the model instead."""
        if tool is None or tool.read_only:
            return None  # an unknown tool is reported by the toolbox
        while True:
            if self._mode == PermissionMode.AUTO:
                return None
            if self._mode == PermissionMode.READ_ONLY:
                return _read_only_refusal(call.name)
            if self.grants is not None and await self.grants.allows(call.name):
                return None
            if self.asker is None:
                return _refusal(
                    call.name, "it needs the person's approval, but no IDE can be asked"
                )
            request = ApprovalRequest(
                self.turn_id, call.id, call.name, params, agent_id, tool.server
            )
            try:
                answer = await self._answer(request, self.asker)
            except _NoAnswer:
                why = f"no one answered the approval request within {self.timeout_s:g}s"
                return _refusal(call.name, why)
            except Exception as exc:  # the asker's transport failed: refuse, never run unasked
                logger.warning("asking for approval of %s failed", call.name, exc_info=exc)
                return _refusal(call.name, f"asking the person failed ({exc})")
            if answer is not None:
                return await self._decided(call.name, answer)
            # the mode changed while waiting: decide by the new one

    async def _answer(
        self, request: ApprovalRequest, asker: Asker
    ) -> ApprovalDecision | str | None:
        """The person's answer; None when the mode changed first.

        Raises:
            _NoAnswer: no answer within the configured time.
        """
        asked = asyncio.ensure_future(asker(request))
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            done, _ = await asyncio.wait(
                {asked, changed}, timeout=self.timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (asked, changed):
                task.cancel()
            await asyncio.wait({asked, changed})  # the asker forgets the request
        if asked in done and not asked.cancelled():
            return asked.result()
        if changed in done:
            return None
        raise _NoAnswer

    async def _decided(self, name: str, answer: ApprovalDecision | str) -> ToolResult | None:
        if answer == ApprovalDecision.ALLOW:
            return None
        if answer == ApprovalDecision.ALLOW_SESSION:
            if self.grants is not None:
                await self.grants.add(name)
            return None
        if answer == ApprovalDecision.DENY:
            return _refusal(name, "the person denied it")
        expected = ", ".join(d.value for d in ApprovalDecision)
        return _refusal(name, f"the approval answer {str(answer)[:40]!r} is none of {expected}")


def _refusal(name: str, why: str) -> ToolResult:
    return ToolResult(
        f"{name} was not run: {why}. Do not repeat the same call; ask the person what they "
        "want, or reach the goal another way.",
        ok=False,
        refused=True,
    )


def _read_only_refusal(name: str) -> ToolResult:
    return ToolResult(
        f"the chat session is in read-only mode: {name} may not change files or run programs "
        "and was not run. Use read_file, list_dir and search, or tell the person what you "
        "would change and ask them to switch the permission mode.",
        ok=False,
        refused=True,
    )
