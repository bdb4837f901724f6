"""The model: one small protocol (stream a chat with tools) and its openai-SDK implementation."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import openai
from openai import AsyncOpenAI

from gadget.config import DroneSettings
from gadget.drone.agent.thinktags import ThinkSplitter
from gadget.drone.agent.usage import Prices, UsageReport
from gadget.drone.exceptions import ModelError
from gadget.drone.history import Message

__all__ = ["DeltaSink", "Model", "ModelListing", "ModelReply", "OpenAIModel", "ToolCallRequest"]

#: Seconds the model list may take (it is asked at connect, not in a turn).
LIST_TIMEOUT_S = 15.0

logger = logging.getLogger(__name__)


class DeltaSink(Protocol):
    """Where streamed text goes as it arrives."""

    def thinking(self, text: str) -> None:
        """A reasoning delta."""

    def response(self, text: str) -> None:
        """An answer delta."""

    async def room(self) -> None:
        """Wait until the deltas can go somewhere (backpressure from the hub's acks)."""


@dataclass
class ToolCallRequest:
    """One tool call the model asked for (arguments as the JSON text it produced)."""

    id: str
    name: str = ""
    arguments: str = ""


@dataclass
class ModelReply:
    """The model's whole reply to one request."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCallRequest] = field(default_factory=list)
    finish_reason: str | None = None
    #: The call's tokens and time (tokens None when the server sent no usage).
    usage: UsageReport | None = None

    def as_message(self) -> Message:
        """The reply as an assistant message for the next request."""
        message: Message = {"role": "assistant", "content": self.content or None}
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in self.tool_calls
            ]
        return message


@dataclass(frozen=True)
class ModelListing:
    """The models an endpoint lists (`GET /v1/models`), or why it could not be asked."""

    models: list[str]
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Wire form: `{"models": [...](, "error")}`."""
        return {"models": self.models, **({"error": self.error} if self.error else {})}


class Model(Protocol):
    """A chat model with native tool calling that streams its reply."""

    async def complete(
        self,
        messages: list[Message],
        tools: list[dict[str, Any]],
        sink: DeltaSink,
        *,
        model: str | None = None,
    ) -> ModelReply:
        """Send `messages` to `model` (None: the default), stream text to `sink`, return the reply."""
        ...


class _Tracker:
    """Forwards deltas and remembers whether any went out (then a retry would repeat them)."""

    def __init__(self, sink: DeltaSink) -> None:
        self.sink = sink
        self.emitted = False
        self.answered = False

    async def room(self) -> None:
        await self.sink.room()

    def thinking(self, text: str) -> None:
        self.emitted = True
        self.sink.thinking(text)

    def response(self, text: str) -> None:
        if not self.answered:  # the gap after a think block is not part of the answer
            text = text.lstrip()
            if not text:
                return
            self.answered = True
        self.emitted = True
        self.sink.response(text)


class OpenAIModel:
    """Any OpenAI-compatible Chat Completions endpoint (Ollama, vLLM, OpenAI, ...)."""

    def __init__(self, settings: DroneSettings) -> None:
        """Build the client; the SDK's own retries are off, :meth:`complete` retries."""
        self.settings = settings
        self.client = AsyncOpenAI(
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key,
            timeout=settings.llm_timeout_s,
            max_retries=0,
        )

    async def close(self) -> None:
        """Release the HTTP connections."""
        await self.client.close()

    async def list_models(self) -> ModelListing:
        """The model ids the endpoint lists; a failure is reported in the listing, not raised."""
        try:
            client = self.client.with_options(
                timeout=min(self.settings.llm_timeout_s, LIST_TIMEOUT_S)
            )
            ids = [entry.id async for entry in client.models.list()]
        except openai.APIError as exc:
            return ModelListing(
                [], f"cannot list the models at {self.settings.llm_base_url}: {_reason(exc)}"
            )
        return ModelListing(ids)

    async def complete(
        self,
        messages: list[Message],
        tools: list[dict[str, Any]],
        sink: DeltaSink,
        *,
        model: str | None = None,
    ) -> ModelReply:
        """Stream one reply, retrying transient failures (before any text went out)."""
        name = model or self.settings.llm_model
        delay = self.settings.llm_retry_delay_s
        attempts = self.settings.llm_retries + 1
        started = time.monotonic()
        for attempt in range(1, attempts + 1):
            tracker = _Tracker(sink)
            try:
                reply = await self._stream(name, messages, tools, tracker)
            except openai.APIError as exc:
                if not _transient(exc) or tracker.emitted or attempt == attempts:
                    raise ModelError(self._explain(exc, attempt, name)) from exc
                logger.warning(
                    "model request failed (%s); attempt %d of %d in %.1fs",
                    _reason(exc),
                    attempt + 1,
                    attempts,
                    delay,
                )
                await asyncio.sleep(delay * random.uniform(0.75, 1.25))
                delay *= 2
                continue
            reply.usage = self._report(name, reply.usage, started)
            return reply
        raise AssertionError("unreachable")

    def _report(self, name: str, tokens: UsageReport | None, started: float) -> UsageReport:
        """The call's usage report: the server's token counts (if any), the time, the cost."""
        prompt = tokens.prompt_tokens if tokens else None
        completion = tokens.completion_tokens if tokens else None
        return UsageReport(
            model=name,
            prompt_tokens=prompt,
            completion_tokens=completion,
            duration_ms=round((time.monotonic() - started) * 1000),
            cost=Prices.of(self.settings).cost(prompt, completion),
        )

    async def _stream(
        self, name: str, messages: list[Message], tools: list[dict[str, Any]], sink: _Tracker
    ) -> ModelReply:
        extra: dict[str, Any] = {"tools": tools} if tools else {}
        if self.settings.llm_stream_usage:
            extra["stream_options"] = {"include_usage": True}
        stream = await self.client.chat.completions.create(
            model=name,
            messages=cast(Any, messages),
            stream=True,
            **extra,
        )
        reply, splitter = ModelReply(), ThinkSplitter()
        calls: dict[int, ToolCallRequest] = {}
        async with stream:
            async for chunk in stream:
                await sink.room()  # the drone holds too much not yet stored: wait, read later
                for choice in chunk.choices[:1]:
                    _apply_delta(choice.delta, reply, splitter, calls, sink)
                    reply.finish_reason = choice.finish_reason or reply.finish_reason
                if chunk.usage is not None:  # the last chunk; some servers send it on every one
                    reply.usage = UsageReport(
                        name, chunk.usage.prompt_tokens, chunk.usage.completion_tokens, 0
                    )
        for is_thinking, text in splitter.flush():
            _emit(is_thinking, text, reply, sink)
        reply.tool_calls = [calls[i] for i in sorted(calls)]
        for call in reply.tool_calls:
            call.id = call.id or f"call_{uuid.uuid4().hex[:12]}"
        reply.content = reply.content.lstrip()
        return reply

    def _explain(self, exc: openai.APIError, attempts: int, model: str) -> str:
        """A message a person can act on."""
        url, tries = self.settings.llm_base_url, f"after {attempts} attempt(s)"
        if isinstance(exc, openai.APITimeoutError):
            return (
                f"the model at {url} did not answer within {self.settings.llm_timeout_s:g}s "
                f"{tries} — check the server's load or raise GADGET_LLM_TIMEOUT_S"
            )
        if isinstance(exc, openai.APIConnectionError):
            return (
                f"cannot reach the model at {url}: {_reason(exc)} {tries} — is the server "
                "running? set GADGET_LLM_BASE_URL"
            )
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return f"the model server at {url} refused the API key ({_reason(exc)}) — set GADGET_LLM_API_KEY"
        if isinstance(exc, openai.NotFoundError):
            return (
                f"model {model!r} or its endpoint not found at {url} "
                f"({_reason(exc)}) — set GADGET_LLM_MODEL, and GADGET_LLM_BASE_URL (usually ends in /v1)"
            )
        if isinstance(exc, openai.RateLimitError):
            return f"the model at {url} is rate-limiting requests (HTTP 429) {tries} — wait, or check your quota"
        return f"the model at {url} failed: {_reason(exc)} {tries}"


def _apply_delta(
    delta: Any,
    reply: ModelReply,
    splitter: ThinkSplitter,
    calls: dict[int, ToolCallRequest],
    sink: _Tracker,
) -> None:
    """Fold one streamed delta into the reply, emitting its text."""
    extra = delta.model_extra or {}
    reasoning = extra.get("reasoning_content") or extra.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        _emit(True, reasoning, reply, sink)
    if delta.content:
        for is_thinking, text in splitter.feed(delta.content):
            _emit(is_thinking, text, reply, sink)
    for part in delta.tool_calls or []:
        call = calls.setdefault(part.index, ToolCallRequest(id=""))
        call.id = call.id or (part.id or "")
        if part.function is not None:
            call.name += part.function.name or ""
            call.arguments += part.function.arguments or ""


def _emit(is_thinking: bool, text: str, reply: ModelReply, sink: _Tracker) -> None:
    if is_thinking:
        reply.reasoning += text
        sink.thinking(text)
    else:
        reply.content += text
        sink.response(text)


def _transient(exc: openai.APIError) -> bool:
    """Refused connections, timeouts, 408/409/429 and 5xx are worth another try."""
    if isinstance(exc, openai.APIConnectionError):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


def _reason(exc: openai.APIError) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {exc.message}"
    cause = exc.__cause__
    while cause is not None and cause.__cause__ is not None:
        cause = cause.__cause__
    return str(cause) if cause is not None and str(cause) else exc.message
