"""The approvals of one live turn: the call waiting for the person, and every answer.

A drone asks with `toolApproval` (a stream event, applied once like the others); the
person answers with `answerApproval` (an IDE event, decided in the database: the first
answer wins, store/approvals.py) and the mirror learns the answer once it is committed.
A tool call whose answer is known shows it (`toolCalls[i].approval`).

A retried attempt (the drone restarted) asks again, with a new callId, for the call it
was waiting for when it died. The card is kept: the pending approval takes the new
callId; or, if the person answered meanwhile, that answer goes to the new callId too,
and the hub gives it to the drone at once. An answer counts for one call only: once a
tool call of its callId exists, a later identical call asks again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from gadget.protocol import ApprovalRecord, PendingApproval, ToolApproval, TurnOut
from gadget.store.tables import utcnow


class Asked(Enum):
    """What a `toolApproval` became."""

    #: A new card: the call waits for the person.
    NEW = "new"
    #: The card the drone asked about before it restarted, under the new callId.
    AGAIN = "again"
    #: Answered already (before the drone restarted): the answer goes to the drone now.
    ANSWERED = "answered"


@dataclass(frozen=True)
class Asking:
    """A `toolApproval` applied: what it became, and the pending card (NEW, AGAIN) or the
    answer it got (ANSWERED, with the callId the answer was given to first)."""

    kind: Asked
    data: dict[str, Any]
    answered_as: str | None = None


@dataclass(eq=False)
class TurnApprovals:
    """The mirror of a turn's approvals (see the module docstring)."""

    pending: PendingApproval | None = None
    #: Every answer by callId: `{"decision", "by", "at", "name", "parameters"}`.
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, turn: TurnOut) -> TurnApprovals:
        """The approvals of a stored (or snapshotted) turn."""
        return cls(turn.pendingApproval, {k: dict(v) for k, v in (turn.decisions or {}).items()})

    def ask(self, request: ToolApproval, called: set[str] | dict[str, Any]) -> Asking:
        """Apply a `toolApproval` (`called`: the callIds that have a tool call)."""
        same = (request.name, request.parameters)
        for call_id, answer in self.answers.items():
            if call_id not in called and (answer.get("name"), answer.get("parameters")) == same:
                record = dict(answer)
                del self.answers[call_id]
                self.answers[request.callId] = record
                return Asking(Asked.ANSWERED, record, call_id)
        kind = Asked.NEW
        asked_at = utcnow().isoformat()
        if self.pending is not None and (self.pending.name, self.pending.parameters) == same:
            kind, asked_at = Asked.AGAIN, self.pending.askedAt
        self.pending = PendingApproval(
            callId=request.callId,
            name=request.name,
            parameters=request.parameters,
            server=request.server,
            agentId=request.agentId,
            askedAt=asked_at,
        )
        return Asking(kind, self.pending.model_dump(exclude_none=True))

    def answered(self, call_id: str, record: dict[str, Any]) -> None:
        """An answer to `call_id` is committed: the card goes, the call shows it."""
        if self.pending is not None and self.pending.callId == call_id:
            self.pending = None
        self.answers[call_id] = record

    def called(self, call_id: str) -> tuple[ApprovalRecord | None, bool]:
        """A tool call `call_id` arrived: its answer (if any), and whether it was the
        pending one (the mode changed, or the wait timed out, while the card was shown)."""
        answer = self.answers.get(call_id)
        was_pending = self.pending is not None and self.pending.callId == call_id
        if was_pending:
            self.pending = None
        return (record_of(answer) if answer else None), was_pending

    def ended(self) -> None:
        """The turn ended: nothing waits any more."""
        self.pending = None

    def waiting(self, called: set[str] | dict[str, Any]) -> list[tuple[str, str]]:
        """Answers the drone may not have got yet: (callId, decision) of calls not made."""
        return [(k, str(v["decision"])) for k, v in self.answers.items() if k not in called]


def record_of(answer: dict[str, Any]) -> ApprovalRecord:
    """The public part of a stored answer: decision, by, at."""
    return ApprovalRecord.model_validate(answer)
