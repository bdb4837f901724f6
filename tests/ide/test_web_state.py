"""The web IDE's pure modules (state.js, stream.js) run in Chromium as the hub serves them:
orderings the hub makes rare but legal, checked one by one."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page

from tests.harness import HubHarness
from tests.ide.browser import BROWSER

pytestmark = BROWSER


async def run(page: Page, hub: HubHarness, body: str) -> Any:
    """Evaluate `body` with `state` and `stream` (the served modules) in scope."""
    await page.goto(hub.url)
    script = f"""async () => {{
        const state = await import(new URL("static/state.js", document.baseURI));
        const stream = await import(new URL("static/stream.js", document.baseURI));
        {body}
    }}"""
    return await page.evaluate(script)


async def test_an_answer_seen_first_keeps_a_late_approval_off(page: Page, hub: HubHarness) -> None:
    result = await run(
        page,
        hub,
        """
        const { emptyTurn, fromServer, reduce } = state;
        let turn = emptyTurn("t1", "c1");
        // approvalDecision (unmarked) overtakes its toolApproval held by a gap.
        turn = reduce(turn, { type: "approvalDecision", callId: "a1", decision: "allow", by: "ann" });
        turn = reduce(turn, { type: "toolApproval", approval: { callId: "a1", name: "run_command" } });
        const late = turn.pendingApproval;
        // This page's own ack (by unknown) does not erase who answered.
        turn = reduce(turn, { type: "approvalDecision", callId: "a1", decision: "allow", by: null });
        turn = reduce(turn, { type: "toolCall", callId: "a1", name: "run_command", params: "{}", response: "{}" });
        // A snapshot still showing it waiting (built before the answer) keeps the answer.
        const snap = fromServer({ _id: "t1", status: "processing", pendingApproval: { callId: "a1", name: "x" },
                                  toolCalls: [], blocks: [] }, turn.decisions);
        const ended = reduce(reduce(emptyTurn("t2"), { type: "toolApproval", approval: { callId: "b", name: "y" } }),
                             { type: "workOrderComplete", success: false, message: "cancelled" });
        return { late, tool: turn.tools.a1.approval, snap: snap.pendingApproval, ended: ended.pendingApproval };
        """,
    )
    assert result == {
        "late": None,
        "tool": {"decision": "allow", "by": "ann", "at": None},
        "snap": None,
        "ended": None,
    }


async def test_usage_adds_up_and_cost_only_when_priced(page: Page, hub: HubHarness) -> None:
    result = await run(
        page,
        hub,
        """
        const { emptyTurn, fromServer, reduce } = state;
        const call = (p, c, cost) => ({ type: "usage", usage: { promptTokens: p, completionTokens: c, durationMs: 10, cost } });
        const free = reduce(reduce(emptyTurn("t"), call(10, 2)), call(5, 1));
        const priced = reduce(reduce(emptyTurn("t"), call(10, 2, 0.5)), call(5, 1));
        const stored = fromServer({ _id: "t", status: "finished",
            stats: { promptTokens: 7, completionTokens: 3, modelCalls: 1, durationMs: 40 } });
        return [free.usage, priced.usage, stored.usage];
        """,
    )
    common = {"promptTokens": 15, "completionTokens": 3, "modelCalls": 2, "durationMs": 20}
    assert result == [
        {**common, "cost": None},
        {**common, "cost": 0.5},
        {"promptTokens": 7, "completionTokens": 3, "modelCalls": 1, "durationMs": 40, "cost": None},
    ]


async def test_cursors_hold_drain_reset_and_overflow(page: Page, hub: HubHarness) -> None:
    result = await run(
        page,
        hub,
        """
        const c = new stream.Cursors();
        const log = [];
        const offer = (seq) => { const r = c.offer("t", seq, seq); log.push(r.apply); return r.overflow; };
        offer(1);                  // no view yet: held
        log.push(c.reset("t", 0)); // the snapshot at 0: 1 applies
        offer(3); offer(4);        // held behind 2
        offer(2);                  // 2, then 3 and 4
        offer(4);                  // a resend
        offer(7);                  // held
        log.push(c.reset("t", 8)); // a snapshot past it: dropped
        log.push(c.waiting("t"));
        let overflow = false;
        for (let n = 10; n < 10 + stream.MAX_HELD + 1; n++) overflow = offer(n) || overflow;
        return { log, overflow, after: c.waiting("t"), at: c.seq("t") };
        """,
    )
    assert result == {
        "log": [[], [1], [], [], [2, 3, 4], [], [], [], 0] + [[]] * 5001,
        "overflow": True,
        "after": 0,
        "at": 8,
    }
