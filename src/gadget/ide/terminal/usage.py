"""Model usage: tokens, model calls, time and cost, per turn and per chat session.

The drone reports each model call (`usage({"turnId", "model", "promptTokens",
"completionTokens", "durationMs", "cost"?})`, a numbered stream event); the hub
adds them up in the turn's `stats` and the chat session's `usage`. A turn's line
is printed at its end; `/usage` prints the session's totals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text

from gadget.ide.terminal.markdown import inert
from gadget.protocol import Usage


@dataclass
class Tally:
    """Model calls added up."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_calls: int = 0
    duration_ms: int = 0
    cost: float | None = None
    #: The model of the last call (live events only).
    model: str | None = None

    @classmethod
    def of(cls, totals: dict[str, Any] | None) -> Tally:
        """From a turn's `stats` or a chat session's `usage` (missing fields count 0)."""
        totals = totals or {}

        def count(key: str) -> int:
            value = totals.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        cost = totals.get("cost")
        return cls(
            count("promptTokens"),
            count("completionTokens"),
            count("modelCalls"),
            count("durationMs"),
            float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None,
        )

    def add(self, usage: Usage) -> None:
        """One model call."""
        self.model_calls += 1
        self.prompt_tokens += usage.promptTokens or 0
        self.completion_tokens += usage.completionTokens or 0
        self.duration_ms += usage.durationMs
        if usage.cost is not None:
            self.cost = (self.cost or 0.0) + usage.cost
        self.model = usage.model or self.model

    def merge(self, other: Tally) -> None:
        """Add another tally (a turn's, to the session's)."""
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.model_calls += other.model_calls
        self.duration_ms += other.duration_ms
        if other.cost is not None:
            self.cost = (self.cost or 0.0) + other.cost

    def parts(self) -> list[str]:
        """`1,234 tokens in`, `56 out`, `2 model calls`, `3.1 s`, `$0.0123` (those known).

        The tokens are left out when none were counted: the endpoint did not report them.
        """
        if not self.model_calls:
            return []
        calls = "model call" if self.model_calls == 1 else "model calls"
        out = []
        if self.prompt_tokens or self.completion_tokens:  # else the endpoint reports none
            out += [f"{self.prompt_tokens:,} tokens in", f"{self.completion_tokens:,} out"]
        out.append(f"{self.model_calls} {calls}")
        if self.duration_ms:
            out.append(f"{self.duration_ms / 1000:.1f} s")
        if self.cost is not None:
            out.append(f"${self.cost:.4f}")
        return out


def turn_line(tally: Tally) -> Text | None:
    """The dim line after a turn (None when no model call was reported)."""
    parts = tally.parts()
    if not parts:
        return None
    model = f" ({inert(tally.model)})" if tally.model else ""
    return Text(f"· {' · '.join(parts)}{model}", style="dim")


def session_line(tally: Tally, turns: int, running: Tally | None = None) -> Text:
    """`/usage`: the session's totals, and the running turn's so far."""
    parts = tally.parts()
    text = Text.assemble(
        ("usage of this session: ", "bold"),
        " · ".join(parts) if parts else "no model call reported yet",
        (f" (over {turns} turn{'s' if turns != 1 else ''})" if parts else "", "dim"),
    )
    if running is not None and running.model_calls:
        text.append(f"\nthe running turn so far: {' · '.join(running.parts())}", style="dim")
    return text
