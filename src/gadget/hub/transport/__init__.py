"""What each connection costs below the hub's own state: uvicorn's and engine.io's per socket.

At 1,000 drone + IDE pairs the hub's own state is under 3 KiB a pair; most of the rest is
what the transport keeps for every socket (docs/performance.md, "Memory per pair"). This
package trims it without changing a byte on the wire:

- `queue.py`: :class:`LeanQueue`, the per-socket queues (uvicorn's received messages,
  engine.io's packets to send);
- `websocket.py`: :class:`WebSocketProtocol`, uvicorn's websocket protocol that forgets
  the handshake once open and can write a message without a coroutine;
- `engine.py`: :class:`EngineServer` and its :class:`LeanSocket`, one task per websocket
  instead of engine.io's five, packets written as they are sent.
"""

from gadget.hub.transport.engine import EngineServer, LeanSocket
from gadget.hub.transport.queue import LeanQueue
from gadget.hub.transport.websocket import WebSocketProtocol

__all__ = ["EngineServer", "LeanQueue", "LeanSocket", "WebSocketProtocol"]
