"""The services of issue 10, handed to the socket handlers as one: approvals, modes and
models, changes and undo."""

from __future__ import annotations

from dataclasses import dataclass

from gadget.hub.approvals import Approvals
from gadget.hub.changes import Changes
from gadget.hub.controls import Controls


@dataclass(frozen=True)
class AgentControl:
    """What the person controls of the agent: approvals, permission modes and models, undo."""

    approvals: Approvals
    controls: Controls
    changes: Changes
