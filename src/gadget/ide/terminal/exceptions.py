"""Errors of the terminal IDE: expected failures, shown as one line and never a traceback.

TerminalError
├── HubUnreachable     the hub's URL does not answer
├── LoginFailed        bad credentials or an expired token
├── HubRefused         the hub answered a request with an error (REST status or socket ack)
└── NoChoice           a drone / project / session could not be chosen (unknown, EOF)
"""

from __future__ import annotations


class TerminalError(Exception):
    """Root of the terminal IDE's errors; the message is meant for the user."""


class HubUnreachable(TerminalError):
    """The hub could not be reached."""


class LoginFailed(TerminalError):
    """The hub refused the credentials or token."""


class HubRefused(TerminalError):
    """The hub answered with an error; `reason` is the refusal alone, when the hub gave one."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


class NoChoice(TerminalError):
    """Nothing could be chosen."""
