"""Errors of the drone and its agent.

Hierarchy::

    DroneError                  root of everything the drone raises on purpose
    ├── ToolError               a tool could not do what the model asked; the message goes
    │   │                       back to the model as the tool's result
    │   └── WorkspaceEscape     a path resolves outside the workspace (or into .gadget/)
    ├── ModelError              the model could not be reached or answered badly; ends the turn
    ├── LimitsExceeded          the agent used up its steps without answering
    ├── WorkOrderError          a work order or its cache is malformed
    ├── RegistrationError       `gadget drone register` failed (login, hub refused)
    ├── CheckpointError         a turn's checkpoint could not be taken, shown or reverted
    ├── McpConfigError          the MCP configuration file is unreadable or malformed
    ├── KeyFileError            the drone key file is missing, empty or readable by others
    └── SandboxError            the sandbox was asked for (GADGET_SANDBOX=bwrap, network off)
                                but bubblewrap does not work on this machine
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "DroneError",
    "KeyFileError",
    "LimitsExceeded",
    "McpConfigError",
    "ModelError",
    "RegistrationError",
    "SandboxError",
    "ToolError",
    "WorkOrderError",
    "WorkspaceEscape",
]


class DroneError(Exception):
    """Root of the drone's errors."""


class ToolError(DroneError):
    """A tool failed; its message is shown to the model, which may try again."""


class WorkspaceEscape(ToolError):
    """A path leads outside the workspace or into its reserved `.gadget/` folder."""


class ModelError(DroneError):
    """The model is unreachable or refused the request; the message tells a person what to fix."""


class LimitsExceeded(DroneError):
    """The agent reached its step limit without a final answer."""


class WorkOrderError(DroneError):
    """A work order (or its cached copy) is not what the drone expects."""


class RegistrationError(DroneError):
    """Registering a drone with the hub failed."""


class CheckpointError(DroneError):
    """A checkpoint operation failed (git missing, unknown or unfinished turn, bad path)."""


class McpConfigError(DroneError):
    """`GADGET_MCP_CONFIG` names a file that is missing, not JSON, or not the expected shape."""


class KeyFileError(DroneError):
    """The drone key file cannot be used (missing, empty, or open to other users)."""


class SandboxError(DroneError):
    """The required sandbox cannot run here; commands are never run unconfined instead."""
