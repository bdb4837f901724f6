"""Asking the person through the hub: `toolApproval` out, `approvalDecision` back.

The request is a stream event of the turn (numbered, kept until the hub stores it, so
it survives a reconnect); the wait has no limit of its own (the permission gate's
`GADGET_APPROVAL_TIMEOUT_S` may set one) and ends when the turn is cancelled. The hub
sends a decision again when the drone reconnects; one for a call nobody waits on is
ignored.
"""

from __future__ import annotations

import asyncio
import logging

from gadget.drone.agent.approvals import ApprovalRequest
from gadget.drone.outbox import Outbox
from gadget.protocol import DroneEvent

__all__ = ["HubAsker"]

logger = logging.getLogger(__name__)


class HubAsker:
    """The permission gate's asker for one turn (see the module docstring)."""

    def __init__(self, outbox: Outbox) -> None:
        """Ask through `outbox`."""
        self.outbox = outbox
        self._waiting: dict[str, asyncio.Future[str]] = {}

    async def __call__(self, request: ApprovalRequest) -> str:
        """Send the request and wait for the person's decision."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting[request.call_id] = future
        try:
            self.outbox.emit(DroneEvent.TOOL_APPROVAL, request.to_json())
            logger.info("waiting for the person's approval of %s", request.name)
            return await future
        finally:
            self._waiting.pop(request.call_id, None)

    def decide(self, call_id: str, decision: str) -> bool:
        """The person's decision for `call_id`; whether a call was waiting for it."""
        future = self._waiting.get(call_id)
        if future is None or future.done():
            return False
        future.set_result(decision)
        return True
