"""Durable memory of a chat session, and trimming it to the model's context budget.

Each completed turn is one JSON line in `.gadget/history/<chatSessionId>.jsonl`:
`{"turnId": ..., "messages": [...]}` with messages in Chat Completions form. A turn
that is retried (crash recovery) is recorded again and the newest record wins.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from gadget.drone.fsio import gadget_dir

__all__ = ["ChatHistory", "Message", "estimate_tokens", "fit_context", "session_file_name"]

logger = logging.getLogger(__name__)

Message = dict[str, Any]

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
#: What an elided tool result is replaced with when the current turn alone is too large.
ELIDED = "[output elided to fit the model's context]"


class ChatHistory:
    """The completed turns of one chat session, kept under the workspace's `.gadget/`."""

    def __init__(self, workspace: Path, chat_session_id: str) -> None:
        """Locate the session's file (a hashed name when the id is not filename-safe)."""
        self.workspace = workspace
        self.path = (
            workspace / ".gadget" / "history" / f"{session_file_name(chat_session_id)}.jsonl"
        )

    def load(self) -> list[list[Message]]:
        """The messages of each completed turn, oldest first; damaged lines are skipped."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        turns: dict[str, list[Message]] = {}
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
                turn_id, messages = str(record["turnId"]), list(record["messages"])
            except (ValueError, KeyError, TypeError):
                logger.warning("skipping damaged line %d of %s", number, self.path)
                continue
            turns.pop(turn_id, None)  # a retried turn moves to its newest position
            turns[turn_id] = messages
        return list(turns.values())

    def append(self, turn_id: str, messages: list[Message]) -> None:
        """Record a finished turn durably (one appended, fsynced line)."""
        gadget_dir(self.workspace)
        self.path.parent.mkdir(exist_ok=True)
        line = json.dumps({"turnId": turn_id, "messages": messages}, ensure_ascii=False) + "\n"
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())


def session_file_name(chat_session_id: str) -> str:
    """A file name for an id: the id itself when filename-safe, else a digest of it."""
    if _SAFE_ID.match(chat_session_id):
        return chat_session_id
    return hashlib.sha256(chat_session_id.encode()).hexdigest()[:32]


def estimate_tokens(message: Message) -> int:
    """A rough token count of one message (about four characters a token)."""
    return len(json.dumps(message, ensure_ascii=False)) // 4 + 4


def fit_context(
    system: Message, past: list[list[Message]], current: list[Message], budget: int
) -> list[Message]:
    """The messages to send: the system prompt, as many newest past turns as fit, this turn.

    When this turn alone is over budget, its oldest tool results are elided first.
    """
    used = estimate_tokens(system) + sum(estimate_tokens(m) for m in current)
    kept: list[list[Message]] = []
    for turn in reversed(past):
        cost = sum(estimate_tokens(m) for m in turn)
        if used + cost > budget:
            break
        kept.insert(0, turn)
        used += cost
    current = _elide_tool_results(current, used - budget) if used > budget else current
    return [system, *(m for turn in kept for m in turn), *current]


def _elide_tool_results(messages: list[Message], excess: int) -> list[Message]:
    """Replace the oldest tool results (never the last one) until `excess` tokens are saved."""
    out = list(messages)
    tool_positions = [i for i, m in enumerate(out) if m.get("role") == "tool"][:-1]
    for i in tool_positions:
        if excess <= 0:
            break
        before = estimate_tokens(out[i])
        out[i] = {**out[i], "content": ELIDED}
        excess -= before - estimate_tokens(out[i])
    return out
