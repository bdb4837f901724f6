"""Numbered model replies and the counter that checks a text holds each token once, in order."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.fakes.llm_server import ScriptedLLM, count_tokens, numbered_reply, numbered_text

CASES = {
    "exact": ("t0001 t0002 t0003 t0004", (0, 0)),
    "one lost": ("t0001 t0002 t0004", (1, 0)),
    "the tail lost": ("t0001 t0002", (2, 0)),
    "one repeated": ("t0001 t0002 t0002 t0003 t0004", (0, 1)),
    "a chunk resent": ("t0001 t0002 t0003 t0002 t0003 t0004", (0, 2)),
    "two swapped": ("t0001 t0003 t0002 t0004", (1, 1)),
    "beyond N": ("t0001 t0002 t0003 t0004 t0005", (0, 1)),
    "a torn token": ("t0001 t00t0002 t0003 t0004", (0, 1)),
    "no spaces": ("t0001t0002t0003t0004", (0, 0)),
    "nothing": ("", (4, 0)),
}


@pytest.mark.parametrize(("text", "expected"), CASES.values(), ids=CASES.keys())
def test_count_tokens(text: str, expected: tuple[int, int]) -> None:
    assert count_tokens(text, 4) == expected


def test_numbered_text_widens_past_four_digits() -> None:
    assert numbered_text(3) == "t0001 t0002 t0003 "
    assert numbered_text(10_000).endswith(" t09999 t10000 ")
    assert count_tokens(numbered_text(10_000), 10_000) == (0, 0)


async def test_the_scripted_server_streams_them_in_paced_chunks() -> None:
    reply = numbered_reply(50, per_chunk=4, chunk_delay_s=0.001)
    assert len(reply.chunks) == 13 + 1 and reply.chunk_delay_s == 0.001  # 13 deltas, finish
    async with ScriptedLLM([reply]) as llm, httpx.AsyncClient(base_url=llm.base_url) as http:
        body = {"model": "scripted", "stream": True, "messages": [{"role": "user", "content": "n"}]}
        deltas = []
        async with http.stream("POST", "/chat/completions", json=body) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: {"):
                    delta = json.loads(line[6:])["choices"][0]["delta"]
                    deltas.append(delta.get("content", ""))
    assert "".join(deltas) == numbered_text(50)
    assert count_tokens("".join(deltas), 50) == (0, 0)


async def test_a_stream_can_be_held_after_a_count_of_chunks_and_let_go() -> None:
    async with (
        ScriptedLLM([numbered_reply(10)]) as llm,
        httpx.AsyncClient(base_url=llm.base_url) as http,
    ):
        llm.pause(after=4)
        body = {"model": "scripted", "stream": True, "messages": [{"role": "user", "content": "n"}]}
        text: list[str] = []

        async def read() -> None:
            async with http.stream("POST", "/chat/completions", json=body) as r:
                async for line in r.aiter_lines():
                    if line.startswith("data: {"):
                        text.append(json.loads(line[6:])["choices"][0]["delta"].get("content", ""))

        reader = asyncio.create_task(read())
        await llm.wait_sent(4)
        await asyncio.sleep(0.1)
        assert llm.sent == 4 and not reader.done()  # held before chunk 5
        llm.resume()
        await reader
    assert llm.sent == 11 and "".join(text) == numbered_text(10)  # 10 deltas and the finish
