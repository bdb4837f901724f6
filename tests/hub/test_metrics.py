"""GET /metrics after a real turn, who may read it, and the ids on the hub's log lines."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from gadget.hub.metrics import Histogram
from gadget.logs import JsonFormatter
from tests.harness import HubHarness
from tests.hub.helpers import eventually, setup_session, start_turn

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(hub: HubHarness, **headers: str) -> Samples:
    """Every sample of /metrics by (name, sorted labels)."""
    r = await hub.http.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_after_a_real_turn(hub: HubHarness) -> None:
    s = await setup_session(hub)
    turn_id = await start_turn(s.ide, s.drone)
    tokens = ["Hel", "lo, ", "wor", "ld", "!"]
    for token in tokens:
        await s.drone.emit("response", token)
    await s.drone.emit("thinking", "hmm")
    await s.drone.emit("workOrderComplete", turn_id, True)
    await s.ide.log.wait_for("workOrderComplete")
    await hub.settle()
    m = await scrape(hub)

    assert value(m, "gadget_drones_connected") == 1
    assert value(m, "gadget_ides_connected") == 1
    assert value(m, "gadget_events_in_total", source="drone", event="response") == len(tokens)
    assert value(m, "gadget_events_in_total", source="drone", event="thinking") == 1
    assert value(m, "gadget_events_in_total", source="ide", event="submitPrompt") == 1
    assert value(m, "gadget_events_in_total", source="ide", event="requestSessionLock") == 1
    # One IDE in the session: one packet out per token.
    assert value(m, "gadget_events_out_total", event="response") == len(tokens)
    assert value(m, "gadget_events_out_total", event="workOrderComplete") == 1
    relayed = len(tokens) + 1 + 1  # response, thinking, workOrderComplete (all stream events)
    assert value(m, "gadget_relay_seconds_count") == relayed
    assert value(m, "gadget_relay_seconds_bucket", le="+Inf") == relayed
    assert value(m, "gadget_turns_ended_total", status="finished") == 1
    assert value(m, "gadget_turns_live") == 0
    assert value(m, "gadget_write_batch_rows_count") >= 1
    assert value(m, "gadget_write_batch_rows_sum") >= 1
    assert value(m, "gadget_write_batch_seconds_count") == value(m, "gadget_write_batch_rows_count")
    assert value(m, "gadget_database_errors_total") == 0
    assert value(m, "gadget_database_up") == 1
    assert value(m, "gadget_uncommitted_bytes") == 0
    assert ("gadget_unsealed_bytes", ()) in m
    assert ("gadget_loop_lag_seconds", ()) in m
    assert ("gadget_loop_lag_max_seconds", ()) in m
    assert await eventually(lambda: _lag_count(hub))  # the lag task wakes every 10 ms


async def _lag_count(hub: HubHarness) -> float:
    return value(await scrape(hub), "gadget_loop_lag_count")


async def test_unknown_event_names_are_counted_as_other(hub: HubHarness) -> None:
    s = await setup_session(hub)
    for name in ("made-up-1", "made-up-2"):
        await s.ide.emit(name)
    await eventually(lambda: len(s.ide.log.of("error")) >= 2)
    m = await scrape(hub)
    assert value(m, "gadget_events_in_total", source="ide", event="other") == 2
    assert not [k for k in m if "made-up" in str(k)]


async def test_metrics_refused_through_a_proxy(hub: HubHarness) -> None:
    r = await hub.http.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert r.status_code == 403


async def test_metrics_token(
    hub_factory: Callable[..., AbstractAsyncContextManager[HubHarness]],
) -> None:
    async with hub_factory(metrics_token="s3cret-metrics") as hub:
        assert (await hub.http.get("/metrics")).status_code == 403
        wrong = await hub.http.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403
        m = await scrape(hub, Authorization="Bearer s3cret-metrics")
        assert value(m, "gadget_drones_connected") == 0


def test_histogram_buckets_are_cumulative() -> None:
    h = Histogram((0.001, 0.01))
    for v in (0.0005, 0.001, 0.005, 0.5):
        h.observe(v)
    family = h.family("x_seconds", "x")
    got = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert got[("x_seconds_bucket", "0.001")] == 2  # le: a value on the bound counts
    assert got[("x_seconds_bucket", "0.01")] == 3
    assert got[("x_seconds_bucket", "+Inf")] == 4
    assert got[("x_seconds_count", None)] == 4
    assert h.count == 4


# -- the ids on each hub line ------------------------------------------------------
@contextmanager
def json_lines() -> Iterator[list[dict[str, Any]]]:
    """The hub's records inside the block, as the JSON lines GADGET_LOG_FORMAT=json writes."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("gadget.hub")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    lines: list[dict[str, Any]] = []
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        lines.extend(orjson.loads(line) for line in out.getvalue().splitlines())


async def test_hub_lines_carry_turn_drone_and_user(hub: HubHarness) -> None:
    s = await setup_session(hub)
    turn_id = await start_turn(s.ide, s.drone)
    user_id = hub.hub.drones.here(s.drone_id).owner_id  # type: ignore[union-attr]
    with json_lines() as lines:
        await s.drone.emit("response", 42)  # refused: a handler's warning
        await s.drone.log.wait_for("error")
        await s.ide.emit("no-such-event")
        await s.ide.log.wait_for("error")
    drone_line, ide_line = [line for line in lines if line["message"].startswith("refused")]
    assert drone_line == {
        **drone_line,
        "turn": turn_id,
        "drone": s.drone_id,
        "user": user_id,
    }
    assert ide_line == {**ide_line, "user": user_id, "drone": s.drone_id}


async def test_turn_failure_lines_carry_the_turn(hub: HubHarness) -> None:
    s = await setup_session(hub, drone_ack=[False, "busy"])
    with json_lines() as lines:
        ok, turn_id = await s.ide.call("submitPrompt", "hello")
        assert ok is True
        await s.ide.log.wait_for("workOrderComplete")
    failed = [line for line in lines if line["message"].startswith(f"turn {turn_id} failed")]
    assert failed, lines
    assert failed[0]["turn"] == turn_id and failed[0]["drone"] == s.drone_id
