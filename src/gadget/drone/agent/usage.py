"""Token usage of model calls: one report per call, totals per turn, optional prices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from gadget.config import DroneSettings

__all__ = ["Prices", "UsageReport", "UsageTotals"]


@dataclass(frozen=True)
class Prices:
    """Prices per million prompt and completion tokens (`GADGET_LLM_PRICE_INPUT`/`_OUTPUT`)."""

    input: float | None = None
    output: float | None = None

    @classmethod
    def of(cls, settings: DroneSettings) -> Prices:
        """The prices configured for the drone."""
        return cls(settings.llm_price_input, settings.llm_price_output)

    def cost(self, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
        """What the tokens cost, or None when no price is set or the server sent no usage."""
        if self.input is None and self.output is None:
            return None
        if prompt_tokens is None and completion_tokens is None:
            return None
        spent = (prompt_tokens or 0) * (self.input or 0) + (completion_tokens or 0) * (
            self.output or 0
        )
        return spent / 1_000_000


@dataclass(frozen=True)
class UsageReport:
    """One model call: the model asked, its tokens (None: the server sent no usage), its time."""

    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    duration_ms: int
    cost: float | None = None

    def to_json(self) -> dict[str, Any]:
        """Wire form: model, promptTokens, completionTokens, durationMs(, cost)."""
        out: dict[str, Any] = {
            "model": self.model,
            "promptTokens": self.prompt_tokens,
            "completionTokens": self.completion_tokens,
            "durationMs": self.duration_ms,
        }
        if self.cost is not None:
            out["cost"] = self.cost
        return out


@dataclass
class UsageTotals:
    """The sums over a turn's model calls (its subagents' included)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model_calls: int = 0
    duration_ms: int = 0
    cost: float | None = None

    def add(self, report: UsageReport) -> None:
        """Count one model call."""
        self.model_calls += 1
        self.duration_ms += report.duration_ms
        self.prompt_tokens = _plus(self.prompt_tokens, report.prompt_tokens)
        self.completion_tokens = _plus(self.completion_tokens, report.completion_tokens)
        self.cost = _plus(self.cost, report.cost)

    def merge(self, other: UsageTotals) -> None:
        """Count another agent's calls (a subagent's) as this one's."""
        self.model_calls += other.model_calls
        self.duration_ms += other.duration_ms
        self.prompt_tokens = _plus(self.prompt_tokens, other.prompt_tokens)
        self.completion_tokens = _plus(self.completion_tokens, other.completion_tokens)
        self.cost = _plus(self.cost, other.cost)

    def to_json(self) -> dict[str, Any]:
        """The `turn.stats` fields; tokens and cost only when some call reported them."""
        out: dict[str, Any] = {"modelCalls": self.model_calls, "durationMs": self.duration_ms}
        if self.prompt_tokens is not None:
            out["promptTokens"] = self.prompt_tokens
        if self.completion_tokens is not None:
            out["completionTokens"] = self.completion_tokens
        if self.cost is not None:
            out["cost"] = round(self.cost, 6)
        return out


N = TypeVar("N", int, float)


def _plus(total: N | None, value: N | None) -> N | None:
    if value is None:
        return total
    return value if total is None else total + value
