"""The model: one small protocol (stream a chat with tools) and its openai-SDK implementation."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import openai
from openai import AsyncOpenAI

from gadget.config import DroneSettings
from gadget.drone.agent.thinktags import ThinkSplitter
from gadget.drone.exceptions import ModelError
from gadget.drone.history import Message

__all__ = ["DeltaSink", "Model", "ModelReply", "OpenAIModel", "ToolCallRequest"]

logger = logging.getLogger(__name__)


class DeltaSink(Protocol):
    """Where streamed text goes as it arrives."""

    def thinking(self, text: str) -> None:
        """A reasoning delta."""

    def response(self, text: str) -> None:
        """An answer delta."""


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


class Model(Protocol):
    """A chat model with native tool calling that streams its reply."""

    async def complete(
        self, messages: list[Message], tools: list[dict[str, Any]], sink: DeltaSink
    ) -> ModelReply:
        """Send `messages`, stream text to `sink`, return the whole reply."""
        ...


class _Tracker:
    """Forwards deltas and remembers whether any went out (then a retry would repeat them)."""

    def __init__(self, sink: DeltaSink) -> None:
        self.sink = sink
        self.emitted = False
        self.answered = False

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

    async def complete(
        self, messages: list[Message], tools: list[dict[str, Any]], sink: DeltaSink
    ) -> ModelReply:
        """Stream one reply, retrying transient failures (before any text went out)."""
        delay = self.settings.llm_retry_delay_s
        attempts = self.settings.llm_retries + 1
        for attempt in range(1, attempts + 1):
            tracker = _Tracker(sink)
            try:
                return await self._stream(messages, tools, tracker)
            except openai.APIError as exc:
                if not _transient(exc) or tracker.emitted or attempt == attempts:
                    raise ModelError(self._explain(exc, attempt)) from exc
                logger.warning(
                    "model request failed (%s); attempt %d of %d in %.1fs",
                    _reason(exc),
                    attempt + 1,
                    attempts,
                    delay,
                )
                await asyncio.sleep(delay * random.uniform(0.75, 1.25))
                delay *= 2
        raise AssertionError("unreachable")

    async def _stream(
        self, messages: list[Message], tools: list[dict[str, Any]], sink: _Tracker
    ) -> ModelReply:
        extra: dict[str, Any] = {"tools": tools} if tools else {}
        stream = await self.client.chat.completions.create(
            model=self.settings.llm_model,
            messages=cast(Any, messages),
            stream=True,
            **extra,
        )
        reply, splitter = ModelReply(), ThinkSplitter()
        calls: dict[int, ToolCallRequest] = {}
        async with stream:
            async for chunk in stream:
                for choice in chunk.choices[:1]:
                    _apply_delta(choice.delta, reply, splitter, calls, sink)
                    reply.finish_reason = choice.finish_reason or reply.finish_reason
        for is_thinking, text in splitter.flush():
            _emit(is_thinking, text, reply, sink)
        reply.tool_calls = [calls[i] for i in sorted(calls)]
        for call in reply.tool_calls:
            call.id = call.id or f"call_{uuid.uuid4().hex[:12]}"
        reply.content = reply.content.lstrip()
        return reply

    def _explain(self, exc: openai.APIError, attempts: int) -> str:
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
                f"model {self.settings.llm_model!r} or its endpoint not found at {url} "
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
