"""The openai-SDK model against the scripted server: streaming, tool calls, retries, failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from gadget.drone.agent.model import OpenAIModel
from gadget.drone.agent.thinktags import ThinkSplitter
from gadget.drone.exceptions import ModelError
from tests.drone.helpers import RecordedEvents, drone_settings
from tests.fakes.llm_server import (
    Reply,
    ScriptedLLM,
    content,
    error_reply,
    finish,
    reasoning,
    text_reply,
    tool_reply,
)

pytestmark = pytest.mark.timeout(20)

MESSAGES = [{"role": "user", "content": "hi"}]


def test_think_tags_split_across_any_chunking() -> None:
    text = "<think>plan it</think>\n\nThe answer <b>is</b> 42 <thin"
    for size in range(1, len(text) + 1):
        splitter, out = ThinkSplitter(), []
        for i in range(0, len(text), size):
            out += splitter.feed(text[i : i + size])
        out += splitter.flush()
        thinking = "".join(t for is_t, t in out if is_t)
        said = "".join(t for is_t, t in out if not is_t)
        assert (thinking, said) == ("plan it", "\n\nThe answer <b>is</b> 42 <thin"), size


async def test_streams_reasoning_content_and_split_tool_calls(tmp_path: Path) -> None:
    calls = tool_reply(("c1", "read_file", {"path": "a.py"}), ("c2", "list_dir", {}), pieces=4)
    text = [
        reasoning("Let me "),
        reasoning("look.", key="reasoning"),
        content("Reading"),
        content(" it."),
    ]
    script = [Reply([*text, *calls.chunks])]
    async with ScriptedLLM(script) as llm:
        model = OpenAIModel(drone_settings(tmp_path, llm.base_url))
        events = RecordedEvents()
        reply = await model.complete(MESSAGES, [], events)
        await model.close()
    assert events.text("thinking") == "Let me look."
    assert events.text("response") == "Reading it."
    assert [(c.id, c.name, c.arguments) for c in reply.tool_calls] == [
        ("c1", "read_file", '{"path": "a.py"}'),
        ("c2", "list_dir", "{}"),
    ]
    assert reply.finish_reason == "tool_calls"
    assert llm.requests[0]["messages"] == MESSAGES and llm.requests[0]["stream"] is True


async def test_inline_think_tags_become_thinking(tmp_path: Path) -> None:
    chunks = [
        content("<thi"),
        content("nk>hmm, "),
        content("ok</th"),
        content("ink>\n\nDone"),
        finish(),
    ]
    async with ScriptedLLM([Reply(chunks)]) as llm:
        model = OpenAIModel(drone_settings(tmp_path, llm.base_url))
        events = RecordedEvents()
        reply = await model.complete(MESSAGES, [], events)
        await model.close()
    assert events.text("thinking") == "hmm, ok"
    assert events.text("response") == "Done" == reply.content


async def test_transient_failures_are_retried(tmp_path: Path) -> None:
    script = [error_reply(500), error_reply(429), text_reply("fine")]
    async with ScriptedLLM(script) as llm:
        model = OpenAIModel(drone_settings(tmp_path, llm.base_url, llm_retries=2))
        reply = await model.complete(MESSAGES, [], RecordedEvents())
        await model.close()
    assert reply.content == "fine" and len(llm.requests) == 3


async def test_persistent_failures_end_with_an_actionable_message(tmp_path: Path) -> None:
    async with ScriptedLLM(
        [error_reply(503)] * 3 + [error_reply(404, "model 'x' not found")]
    ) as llm:
        model = OpenAIModel(drone_settings(tmp_path, llm.base_url, llm_retries=2))
        with pytest.raises(ModelError, match=r"failed: HTTP 503.*after 3 attempt"):
            await model.complete(MESSAGES, [], RecordedEvents())
        with pytest.raises(ModelError, match="set GADGET_LLM_MODEL"):
            await model.complete(MESSAGES, [], RecordedEvents())
        await model.close()
    assert len(llm.requests) == 4  # 404 is not retried


async def test_unreachable_model_names_the_url_and_the_setting(tmp_path: Path) -> None:
    async with ScriptedLLM() as llm:
        url = llm.base_url
    model = OpenAIModel(drone_settings(tmp_path, url, llm_retries=1))
    with pytest.raises(ModelError) as caught:
        await model.complete(MESSAGES, [], RecordedEvents())
    await model.close()
    assert str(caught.value).startswith(f"cannot reach the model at {url}: ")
    assert "set GADGET_LLM_BASE_URL" in str(caught.value)
