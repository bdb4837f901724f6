"""The work-order cache, `.gadget/work-order.json`: what was running when the drone died."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gadget.drone.exceptions import WorkOrderError
from gadget.drone.fsio import fsync_dir, gadget_dir, write_atomic
from gadget.protocol import PermissionMode

__all__ = ["WorkOrder", "WorkOrderCache"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkOrder:
    """One accepted work order: which turn of which chat session, in which workspace.

    `permission_mode` and `model` come from the work order's chat session (a hub that
    sends no mode cannot answer approvals: its turns run in "auto"); the cache file keeps
    only what crash recovery needs (a retried order comes from the hub again).
    """

    workspace_id: str
    turn_id: str
    chat_session_id: str
    turn: dict[str, Any]
    permission_mode: PermissionMode = PermissionMode.AUTO
    model: str | None = None

    @property
    def prompt(self) -> str:
        """The person's prompt of the turn."""
        return str(self.turn.get("prompt", ""))

    def to_json(self) -> dict[str, Any]:
        """The cache file's JSON object (wire field names)."""
        return {
            "workspaceId": self.workspace_id,
            "turnId": self.turn_id,
            "chatSessionId": self.chat_session_id,
            "turn": self.turn,
        }

    @classmethod
    def from_json(cls, data: Any) -> WorkOrder:
        """Read a cache file's JSON object back."""
        try:
            return cls(
                workspace_id=str(data["workspaceId"]),
                turn_id=str(data["turnId"]),
                chat_session_id=str(data["chatSessionId"]),
                turn=dict(data.get("turn") or {}),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise WorkOrderError(
                f"expected a work order with workspaceId, turnId and chatSessionId, got {data!r:.200}"
            ) from exc


class WorkOrderCache:
    """Atomic save / load / clear of the workspace's single work-order file."""

    def __init__(self, workspace: Path) -> None:
        """Bind the cache to `workspace` (nothing is touched yet)."""
        self.workspace = workspace
        self.path = workspace / ".gadget" / "work-order.json"

    def save(self, order: WorkOrder) -> None:
        """Write the order durably (temp file, fsync, rename)."""
        gadget_dir(self.workspace)
        write_atomic(self.path, json.dumps(order.to_json()).encode())

    def load(self) -> WorkOrder | None:
        """The cached order, or None; an unreadable file is set aside and reported."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return WorkOrder.from_json(json.loads(raw))
        except (ValueError, WorkOrderError) as exc:
            aside = self.path.with_name("work-order.corrupt.json")
            self.path.replace(aside)
            logger.error("unreadable work-order cache moved to %s: %s", aside, exc)
            return None

    def clear(self) -> None:
        """Delete the cache (no error when it is already gone)."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return
        fsync_dir(self.path.parent)
