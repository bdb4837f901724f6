"""Token usage per model call and per turn, prices, the model list and the per-session model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gadget.drone.agent.loop import Agent, AgentRun
from gadget.drone.agent.model import ModelListing, OpenAIModel
from gadget.drone.agent.tools import default_toolbox
from gadget.drone.agent.usage import UsageReport
from gadget.drone.agent.workspace import Workspace
from tests.drone.helpers import RecordedEvents, drone_settings
from tests.fakes.llm_server import ScriptedLLM, text_reply, tool_reply, usage

pytestmark = pytest.mark.timeout(20)


async def run_agent(
    ws: Path, llm: ScriptedLLM, prompt: str, model_name: str | None = None, **over: Any
) -> tuple[AgentRun, RecordedEvents]:
    settings = drone_settings(ws, llm.base_url, **over)
    model = OpenAIModel(settings)
    events = RecordedEvents()
    agent = Agent(model, default_toolbox(), Workspace(ws), settings, events, model_name=model_name)
    try:
        return await agent.run(prompt), events
    finally:
        await model.close()


def reports(events: RecordedEvents) -> list[UsageReport]:
    return [e[-1] for e in events.log if e[0] == "usage" or e[1:2] == ("usage",)]


async def test_each_call_reports_usage_and_the_turn_totals_them(ws: Path) -> None:
    script = [
        tool_reply(("c1", "read_file", {"path": "calc.py"}), usage=usage(1200, 40)),
        text_reply("add subtracts.", usage=usage(1300, 25)),
    ]
    async with ScriptedLLM(script) as llm:
        run, events = await run_agent(ws, llm, "look", llm_price_input=2.5, llm_price_output=10.0)
    assert all(r["stream_options"] == {"include_usage": True} for r in llm.requests)
    first, second = reports(events)
    assert (first.model, first.prompt_tokens, first.completion_tokens) == ("scripted", 1200, 40)
    assert first.cost == pytest.approx((1200 * 2.5 + 40 * 10.0) / 1e6)
    assert (second.prompt_tokens, second.completion_tokens) == (1300, 25)
    assert first.to_json().keys() == {
        "model", "promptTokens", "completionTokens", "durationMs", "cost",
    }  # fmt: skip
    totals = run.usage.to_json()
    assert {k: totals[k] for k in ("promptTokens", "completionTokens", "modelCalls")} == {
        "promptTokens": 2500,
        "completionTokens": 65,
        "modelCalls": 2,
    }
    assert totals["cost"] == pytest.approx((2500 * 2.5 + 65 * 10.0) / 1e6)
    assert totals["durationMs"] == first.duration_ms + second.duration_ms


async def test_a_server_without_usage_still_counts_calls(ws: Path) -> None:
    script = [tool_reply(("c1", "list_dir", {})), text_reply("done")]
    async with ScriptedLLM(script) as llm:
        run, events = await run_agent(ws, llm, "look", llm_price_input=1.0)
    assert [(r.prompt_tokens, r.completion_tokens, r.cost) for r in reports(events)] == [
        (None, None, None)
    ] * 2
    assert run.usage.to_json().keys() == {"modelCalls", "durationMs"}
    assert run.usage.model_calls == 2


async def test_usage_can_be_left_unasked_for_servers_that_refuse_the_option(ws: Path) -> None:
    async with ScriptedLLM([text_reply("hi", usage=usage(5, 1))]) as llm:
        run, _ = await run_agent(ws, llm, "hi", llm_stream_usage=False)
    assert "stream_options" not in llm.requests[0]
    assert run.usage.prompt_tokens is None and run.usage.model_calls == 1


async def test_a_subagents_calls_count_in_the_turn(ws: Path) -> None:
    script = [
        tool_reply(("t1", "task", {"description": "d", "prompt": "p"}), usage=usage(100, 10)),
        text_reply("child answer", usage=usage(50, 5)),
        text_reply("parent answer", usage=usage(200, 20)),
    ]
    async with ScriptedLLM(script) as llm:
        run, events = await run_agent(ws, llm, "go")
    assert [r.prompt_tokens for r in reports(events)] == [100, 50, 200]
    assert [e[0] for e in events.log if "usage" in e[:2]] == ["usage", "t1", "usage"]
    assert (run.usage.prompt_tokens, run.usage.completion_tokens) == (350, 35)
    assert run.usage.model_calls == 3


async def test_the_sessions_model_reaches_every_request(ws: Path) -> None:
    script = [
        tool_reply(("t1", "task", {"description": "d", "prompt": "p"})),
        text_reply("child"),
        text_reply("parent"),
    ]
    async with ScriptedLLM(script) as llm:
        _, events = await run_agent(ws, llm, "go", model_name="qwen3-coder:30b")
        assert [r["model"] for r in llm.requests] == ["qwen3-coder:30b"] * 3
        assert {r.model for r in reports(events)} == {"qwen3-coder:30b"}
        llm.add(text_reply("default"))
        await run_agent(ws, llm, "again")
    assert llm.requests[-1]["model"] == "scripted"  # DroneSettings.llm_model


async def test_list_models_asks_the_endpoint(tmp_path: Path) -> None:
    async with ScriptedLLM(models=["qwen3:8b", "llama3.1:8b"]) as llm:
        model = OpenAIModel(drone_settings(tmp_path, llm.base_url))
        listing = await model.list_models()
        await model.close()
    assert listing == ModelListing(["qwen3:8b", "llama3.1:8b"])
    assert listing.to_json() == {"models": ["qwen3:8b", "llama3.1:8b"]}


async def test_list_models_reports_a_failure(tmp_path: Path) -> None:
    async with ScriptedLLM(models_status=401) as llm:
        model = OpenAIModel(drone_settings(tmp_path, llm.base_url))
        refused = await model.list_models()
        await model.close()
        url = llm.base_url
    assert refused.models == [] and refused.error is not None
    assert refused.error.startswith(f"cannot list the models at {url}: HTTP 401")
    model = OpenAIModel(drone_settings(tmp_path, url))  # the server is gone now
    gone = await model.list_models()
    await model.close()
    assert gone.models == [] and gone.error is not None and url in gone.error
    assert gone.to_json()["error"] == gone.error
