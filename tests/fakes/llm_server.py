"""A scripted OpenAI-compatible Chat Completions server on loopback, for tests.

Each request to ``POST /v1/chat/completions`` takes the next :class:`Reply` of the
script and streams it as SSE, exactly like a real server: reasoning deltas,
content deltas and tool-call deltas (split across chunks), a finish reason and
``data: [DONE]``. Every request body is kept in :attr:`ScriptedLLM.requests`, so
tests can assert on the context the client sent.

In a test::

    async with ScriptedLLM([text_reply("Hello!", reasoning="greet")]) as llm:
        settings = DroneSettings(llm_base_url=llm.base_url, ...)
        ...
        assert llm.requests[0]["messages"][-1]["content"] == "hi"

From a shell (script as JSON: a list of Reply objects as dicts)::

    python tests/fakes/llm_server.py --script script.json [--port 0]

prints ``base_url: http://127.0.0.1:PORT/v1`` and serves until killed.

A reply can also fail (``error_reply(500)``, ``error_reply(429)``), wait before
answering (``delay_s``), pace its chunks (``chunk_delay_s``), or ``hang`` after
its chunks until the client closes the stream (see :attr:`ScriptedLLM.disconnects`).
When the script runs out, the server answers HTTP 400 "script exhausted".

A reply may carry token usage (``text_reply("hi", usage=usage(12, 3))``): as OpenAI
does, it is sent only when the request asked for it (``stream_options.include_usage``),
as a last chunk with no choices (and ``"usage": null`` on the others).

``GET /v1/models`` lists :attr:`ScriptedLLM.models` (or fails with ``models_status``).

A test can hold a stream mid-way: ``llm.pause(after=290)`` makes the stream wait before
its chunk 291 (``pause()``: before the next one) until ``llm.resume()`` (or
``llm.hold_at(n)``: go on, and hold again after chunk n), and
``await llm.wait_sent(290)`` waits until the current stream has sent that many chunks.

For fault tests, ``numbered_reply(2400, chunk_delay_s=0.005)`` streams ``t0001 t0002 …
t2400`` one token a chunk, and ``count_tokens(shown_text, 2400)`` says how many of them are
missing from a stored or shown text and how many are there more than once or out of order.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import re
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

__all__ = [
    "Reply",
    "ScriptedLLM",
    "TokenCount",
    "content",
    "count_tokens",
    "error_reply",
    "finish",
    "numbered_reply",
    "numbered_text",
    "reasoning",
    "split",
    "text_reply",
    "tool_call",
    "tool_reply",
    "usage",
]

Chunk = dict[str, Any]


@dataclass
class Reply:
    """One scripted answer: its stream chunks (choice deltas), or an HTTP error."""

    chunks: list[Chunk] = field(default_factory=list)
    status: int = 200
    error: str = ""
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    hang: bool = False
    #: Token usage sent after the chunks when the request asks for it (see :func:`usage`).
    usage: dict[str, int] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reply:
        """A reply from its dict form (as in a script file)."""
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        """The reply's dict form (for a script file)."""
        return asdict(self)


def reasoning(text: str, key: str = "reasoning_content") -> Chunk:
    """A reasoning delta (`reasoning_content`, or `reasoning` as some servers name it)."""
    return {"delta": {key: text}}


def content(text: str) -> Chunk:
    """A content delta."""
    return {"delta": {"content": text}}


def tool_call(
    index: int, *, id: str | None = None, name: str | None = None, arguments: str | None = None
) -> Chunk:
    """A piece of tool call `index`: the first piece carries id and name, later ones arguments."""
    function: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    call: dict[str, Any] = {"index": index, "function": function}
    if id is not None:
        call.update(id=id, type="function")
    return {"delta": {"tool_calls": [call]}}


def finish(reason: str = "stop") -> Chunk:
    """The last chunk: an empty delta with a finish reason."""
    return {"delta": {}, "finish_reason": reason}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """A reply's token usage, as in a Chat Completions `usage` object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def split(text: str, pieces: int) -> list[str]:
    """`text` cut into `pieces` nearly equal parts (empty parts dropped)."""
    size = max(1, -(-len(text) // max(pieces, 1)))
    return [text[i : i + size] for i in range(0, len(text), size)]


def text_reply(text: str, *, reasoning_text: str = "", pieces: int = 3, **options: Any) -> Reply:
    """A final answer: optional reasoning, then `text` in `pieces` content deltas."""
    chunks = [reasoning(part) for part in split(reasoning_text, pieces)]
    chunks += [content(part) for part in split(text, pieces)]
    return Reply([*chunks, finish("stop")], **options)


def tool_reply(
    *calls: tuple[str, str, dict[str, Any]],
    text: str = "",
    reasoning_text: str = "",
    pieces: int = 3,
    **options: Any,
) -> Reply:
    """Tool calls `(id, name, arguments)`, each with its JSON arguments split in `pieces`."""
    chunks = [reasoning(part) for part in split(reasoning_text, pieces)]
    chunks += [content(part) for part in split(text, pieces)]
    for index, (call_id, name, arguments) in enumerate(calls):
        chunks.append(tool_call(index, id=call_id, name=name, arguments=""))
        chunks += [tool_call(index, arguments=p) for p in split(json.dumps(arguments), pieces)]
    return Reply([*chunks, finish("tool_calls")], **options)


def error_reply(status: int, message: str = "scripted failure", **options: Any) -> Reply:
    """An HTTP error answer (500, 429, 404, ...)."""
    return Reply(status=status, error=message, **options)


def _token(number: int, count: int) -> str:
    return f"t{number:0{max(4, len(str(count)))}d} "


def numbered_text(count: int) -> str:
    """``t0001 t0002 … tN `` (each token followed by a space): what :func:`numbered_reply` says."""
    return "".join(_token(i, count) for i in range(1, count + 1))


def numbered_reply(count: int, *, per_chunk: int = 1, **options: Any) -> Reply:
    """A final answer of `count` numbered tokens, `per_chunk` tokens a content delta.

    Pace it with ``chunk_delay_s`` so a fault can land mid-stream; any other Reply option
    (``delay_s``, ``usage``, ``hang``) passes through.
    """
    tokens = [_token(i, count) for i in range(1, count + 1)]
    chunks = [content("".join(tokens[i : i + per_chunk])) for i in range(0, count, per_chunk)]
    return Reply([*chunks, finish("stop")], **options)


class TokenCount(NamedTuple):
    """How a text differs from ``t1 … tN`` once each, in order: ``(0, 0)`` when it does not."""

    #: Tokens of t1..tN not found in their place (lost, or only out of order).
    missing: int
    #: Tokens found beyond those in place: repeated, out of order, or not in 1..N.
    duplicated: int


_NUMBERED = re.compile(r"t(\d+)")


def count_tokens(text: str, count: int) -> TokenCount:
    """Compare the numbered tokens in `text` with t1..t`count`, each once, in order.

    The tokens "in place" are the longest strictly increasing run of numbers in 1..count
    found in `text` (not necessarily adjacent): a lost token makes one missing, a repeated
    one one duplicated, a token moved out of order one of each.
    """
    numbers = [int(n) for n in _NUMBERED.findall(text)]
    tails: list[int] = []  # tails[k]: smallest last number of an increasing run of k + 1
    for n in numbers:
        if 1 <= n <= count:
            k = bisect.bisect_left(tails, n)
            tails[k : k + 1] = [n]
    return TokenCount(missing=count - len(tails), duplicated=len(numbers) - len(tails))


class ScriptedLLM:
    """The server: `async with ScriptedLLM(script) as llm`, then point a client at `llm.base_url`."""

    def __init__(
        self,
        script: Iterable[Reply] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        models: Iterable[str] = ("scripted",),
        models_status: int = 200,
    ) -> None:
        """Serve `script` (one reply per request, in order) on `host:port` (0: any free port)."""
        self.script: deque[Reply] = deque(script)
        self.models = list(models)
        self.models_status = models_status
        self.requests: list[dict[str, Any]] = []
        self.disconnects = 0
        self.host, self.port = host, port
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._requested = asyncio.Condition()
        self._gone = asyncio.Event()
        #: Chunks sent by the current (latest) stream.
        self.sent = 0
        self._sent_changed = asyncio.Condition()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._pause_after: int | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (ends in /v1)."""
        return f"http://{self.host}:{self.port}/v1"

    def add(self, *replies: Reply) -> None:
        """Append replies to the script."""
        self.script.extend(replies)

    async def start(self) -> None:
        """Listen (the port is known afterwards)."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and end every open stream."""
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> ScriptedLLM:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for_requests(self, count: int, timeout: float = 10) -> None:
        """Wait until `count` requests have arrived in all."""
        async with asyncio.timeout(timeout), self._requested:
            await self._requested.wait_for(lambda: len(self.requests) >= count)

    async def wait_for_disconnect(self, timeout: float = 10) -> None:
        """Wait until a client closed a stream before its end."""
        async with asyncio.timeout(timeout):
            await self._gone.wait()

    def pause(self, after: int | None = None) -> None:
        """Hold the current and later streams once they have sent `after` chunks (None: now)."""
        if after is None:
            self._flowing.clear()
        self._pause_after = after

    def hold_at(self, count: int) -> None:
        """Let the current stream go on until it has sent `count` chunks, then hold it."""
        self._pause_after = count
        self._flowing.set()

    def resume(self) -> None:
        """Let held streams go on (and stop holding at a count)."""
        self._pause_after = None
        self._flowing.set()

    async def wait_sent(self, count: int, timeout: float = 10) -> None:
        """Wait until the current stream has sent `count` chunks."""
        async with asyncio.timeout(timeout), self._sent_changed:
            await self._sent_changed.wait_for(lambda: self.sent >= count)

    async def _gate(self) -> None:
        """Wait here while the stream is held (before each chunk)."""
        if self._pause_after is not None and self.sent >= self._pause_after:
            self._flowing.clear()
        await self._flowing.wait()

    async def _count_sent(self) -> None:
        async with self._sent_changed:
            self.sent += 1
            self._sent_changed.notify_all()

    # -- HTTP ------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Serve one request; whether the connection stays open for another."""
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if method == "GET" and path.rstrip("/").endswith("/models"):
            if self.models_status != 200:
                error = {"error": {"message": "scripted models failure", "type": "scripted"}}
                await _send_json(writer, self.models_status, error)
                return True
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "scripted"}
                for m in self.models
            ]
            await _send_json(writer, 200, {"object": "list", "data": data})
            return True
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            await _send_json(writer, 404, {"error": {"message": f"no route {method} {path}"}})
            return True
        request = json.loads(body or b"{}")
        reply = self.script.popleft() if self.script else error_reply(400, "script exhausted")
        async with self._requested:
            self.requests.append(request)
            self._requested.notify_all()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.status != 200:
            await _send_json(
                writer, reply.status, {"error": {"message": reply.error, "type": "scripted"}}
            )
            return True
        options = request.get("stream_options") or {}
        await self._stream(reply, request, bool(options.get("include_usage")), reader, writer)
        return False

    async def _stream(
        self,
        reply: Reply,
        request: dict[str, Any],
        with_usage: bool,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        created, model = int(time.time()), request.get("model", "scripted")
        base = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": created,
                "model": model, **({"usage": None} if with_usage else {})}  # fmt: skip
        self.sent = 0
        try:
            for chunk in reply.chunks:
                await self._gate()
                if reply.chunk_delay_s:
                    await asyncio.sleep(reply.chunk_delay_s)
                choice = {
                    "index": 0,
                    "delta": chunk["delta"],
                    "finish_reason": chunk.get("finish_reason"),
                }
                data = {**base, "choices": [choice]}
                await _send_chunk(writer, f"data: {json.dumps(data)}\n\n".encode())
                await self._count_sent()
            if with_usage and reply.usage is not None:
                data = {**base, "choices": [], "usage": reply.usage}
                await _send_chunk(writer, f"data: {json.dumps(data)}\n\n".encode())
            if reply.hang:
                await reader.read()  # returns at EOF: the client closed the stream
                raise ConnectionResetError
            await _send_chunk(writer, b"data: [DONE]\n\n")
            await _send_chunk(writer, b"")
        except ConnectionError:
            self.disconnects += 1
            self._gone.set()


async def _send_chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(b"%x\r\n%s\r\n" % (len(data), data))
    await writer.drain()


async def _send_json(writer: asyncio.StreamWriter, status: int, body: Any) -> None:
    data = json.dumps(body).encode()
    writer.write(
        b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (status, len(data), data)
    )
    await writer.drain()


async def _serve_forever(script: list[Reply], port: int) -> None:
    async with ScriptedLLM(script, port=port) as llm:
        print(f"base_url: {llm.base_url}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    """Serve a script file until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", type=Path, required=True, help="JSON list of replies")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    script = [Reply.from_json(item) for item in json.loads(args.script.read_text())]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(script, args.port))


if __name__ == "__main__":
    main()
