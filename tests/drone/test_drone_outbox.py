"""The outbox: order kept, text coalesced, nothing dropped while offline."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import socketio

from gadget.drone.outbox import Outbox
from gadget.protocol import DroneEvent

pytestmark = pytest.mark.timeout(10)


class Socket:
    """Stands in for socketio.AsyncClient.emit: records while up, refuses while down."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []
        self.up = True

    async def emit(self, event: str, data: Any) -> None:
        if not self.up:
            raise socketio.exceptions.BadNamespaceError("/ is not a connected namespace.")
        self.sent.append((event, data))


async def test_coalesces_text_and_keeps_order_across_kinds() -> None:
    sock = Socket()
    box = Outbox(sock, coalesce_ms=50)  # type: ignore[arg-type]
    runner = asyncio.create_task(box.run())
    box.online()
    for piece in ["Let ", "me ", "think"]:
        box.text(DroneEvent.THINKING, piece)
    box.text(DroneEvent.RESPONSE, "Hel")
    box.text(DroneEvent.RESPONSE, "lo")
    box.text(DroneEvent.AGENT_RESPONSE, "a", "t1")
    box.text(DroneEvent.AGENT_RESPONSE, "b", "t1")
    box.emit(DroneEvent.TOOL_CALL, "c1", "x", "{}", "{}")
    box.text(DroneEvent.RESPONSE, "tail")
    await asyncio.sleep(0.1)  # the window closes by itself
    await box.drain()
    runner.cancel()
    assert sock.sent == [
        ("thinking", ("Let me think",)),
        ("response", ("Hello",)),
        ("agent:response", ({"agentId": "t1", "chunk": "ab"},)),
        ("toolCall", ("c1", "x", "{}", "{}")),
        ("response", ("tail",)),
    ]


async def test_window_zero_sends_every_delta() -> None:
    sock = Socket()
    box = Outbox(sock, coalesce_ms=0)  # type: ignore[arg-type]
    runner = asyncio.create_task(box.run())
    box.online()
    box.text(DroneEvent.RESPONSE, "a")
    box.text(DroneEvent.RESPONSE, "b")
    await box.drain()
    runner.cancel()
    assert sock.sent == [("response", ("a",)), ("response", ("b",))]


async def test_events_wait_while_offline_and_flush_in_order() -> None:
    sock = Socket()
    box = Outbox(sock, coalesce_ms=0)  # type: ignore[arg-type]
    runner = asyncio.create_task(box.run())
    box.online()
    box.emit(DroneEvent.STATUS, "one")
    await box.drain()
    sock.up = False
    box.emit(DroneEvent.STATUS, "two")
    box.emit(DroneEvent.WORK_ORDER_COMPLETE, "t", True)
    await asyncio.sleep(0.05)
    box.offline()
    assert len(box) == 2
    sock.up = True
    box.online()
    await box.drain()
    runner.cancel()
    assert sock.sent == [
        ("status", ("one",)),
        ("status", ("two",)),
        ("workOrderComplete", ("t", True)),
    ]
