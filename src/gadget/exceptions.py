"""Errors of the `gadget` command itself (hub/, drone/ and ide/terminal/ have their own).

CommandError    a command cannot do what was asked; the message says why and what to do
"""

from __future__ import annotations


class CommandError(Exception):
    """A command cannot go on; its message is shown as one line, without a traceback."""
