"""uvicorn's sans-I/O websocket protocol, keeping less once a socket is open.

It forgets the handshake's request and response (their headers) once the socket is
accepted, receives through a :class:`LeanQueue`, and offers :meth:`send_now`: a message
written at once, without a coroutine, when nothing stands in the way (engine.io's socket
uses it instead of a writer task per socket, `transport/engine.py`).
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

from gadget.hub.transport.queue import LeanQueue

__all__ = ["WebSocketProtocol"]


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O websocket protocol, keeping less once the socket is open."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = LeanQueue()  # type: ignore[assignment]

    def start_keepalive(self) -> None:
        # uvicorn calls this once, right after writing the accept response: from here on
        # the handshake's request and response (headers) are never read again. (Done here
        # rather than in `send`, which runs for every event sent.)
        del self.request, self.response
        super().start_keepalive()

    def send_now(self, data: str | bytes) -> bool:
        """Write one message frame now; False when it must wait or cannot go.

        What uvicorn's ASGI `send` does for `websocket.send` once its `writable.wait()`
        returns at once: False when the transport is paused (the peer reads slower than
        we write), the socket is not open, or its close was sent. The caller then sends
        through the ASGI `send`, which waits for the transport or raises.
        """
        if (
            not self.writable.is_set()
            or self.disconnected
            or self.close_sent
            or not self.handshake_complete
            or self.initial_response is not None
        ):
            return False
        try:
            if isinstance(data, bytes):
                self.conn.send_binary(data)
            else:
                self.conn.send_text(data.encode())
        except InvalidState:
            return False
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True
