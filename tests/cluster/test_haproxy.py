"""The shipped HAProxy config, run by Debian's haproxy in front of two real hub subprocesses.

The hubs are today's single-node hubs, each on its own SQLite file, so a user exists on the
node it signed up on: the tests pick the node with the stickiness cookie. With a shared
PostgreSQL database any node serves any client, which the polling test uses.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import httpx
import pytest
import socketio

from tests.cluster.haproxy import DEPLOY_CFG, HaProxy, haproxy_binary, render, start_haproxy
from tests.fakes.processes import HubProcess, Processes
from tests.postgres import fresh_database


@pytest.fixture(autouse=True)
def _haproxy() -> None:
    haproxy_binary()  # skips with the reason when it is not installed


@asynccontextmanager
async def socket_via(
    lb: HaProxy, token: str, node: str | None, transport: str = "websocket"
) -> AsyncIterator[socketio.AsyncClient]:
    """A Socket.IO IDE client through the load balancer (pinned to `node` by its cookie)."""
    # aiohttp keeps cookies of a numeric host only with `unsafe`: polling needs its cookie.
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    sio = socketio.AsyncClient(reconnection=False, http_session=session)
    headers = {"Cookie": f"GADGET_NODE={node}"} if node else {}
    try:
        await sio.connect(lb.url, auth={"token": token}, headers=headers,
                          transports=[transport], wait_timeout=10)  # fmt: skip
        yield sio
    finally:
        if sio.connected and transport == "polling":
            # Not waiting for the pending long-poll (up to the 25 s ping interval): closing
            # the session ends it.
            await sio.eio.disconnect(abort=True)
            await session.close()
            await asyncio.gather(sio.eio.read_loop_task, return_exceptions=True)
        else:
            await sio.disconnect()
            await session.close()


async def healthz(lb: HaProxy, node: str | None) -> httpx.Response:
    """`GET /healthz` through the load balancer, pinned to `node` by its cookie (or not)."""
    cookies = {"GADGET_NODE": node} if node else None
    async with httpx.AsyncClient(base_url=lb.url, cookies=cookies, timeout=10) as http:
        return await http.get("/healthz")


async def two_hubs(procs: Processes, **settings: Any) -> tuple[HubProcess, HubProcess]:
    hubs = (await procs.hub("hub1", start=False, **settings),
            await procs.hub("hub2", start=False, **settings))  # fmt: skip
    await hubs[0].start()  # one after the other: a shared database is migrated once
    await hubs[1].start()
    return hubs


def test_the_shipped_config_and_its_test_rendering_are_valid(tmp_path: Any) -> None:
    for name, text in {
        "deploy/haproxy.cfg": DEPLOY_CFG.read_text(),
        "rendered": render([8001, 8002], 8000, 8404),
    }.items():
        path = tmp_path / "check.cfg"
        path.write_text(text)
        checked = subprocess.run(
            [haproxy_binary(), "-c", "-f", str(path)], capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0 and "WARNING" not in checked.stderr, (name, checked.stderr)
    rendered = render([8001, 8002], 8000, 8404)
    assert "server hub1 127.0.0.1:8001 cookie hub1\n    server hub2 127.0.0.1:8002" in rendered
    assert "    chroot " not in rendered and "    timeout tunnel 1h" in rendered
    with pytest.raises(ValueError, match="expected the deploy config to have"):
        render([8001], 8000, 8404, template="global\n    maxconn 10\n")


async def test_haproxy_forwards_http_and_websockets_and_routes_around_a_dead_node(
    procs: Processes,
) -> None:
    hub1, hub2 = await two_hubs(procs)
    lb = await start_haproxy(procs, [hub1.settings.port, hub2.settings.port])
    await lb.wait_status({"hub1": "UP", "hub2": "UP"})
    tokens = {name: await procs.client(h.url).signup("ann") for name, h in
              (("hub1", hub1), ("hub2", hub2))}  # fmt: skip

    first = await healthz(lb, None)
    assert first.status_code == 200 and "GADGET_NODE=" in first.headers["set-cookie"]
    for node in ("hub1", "hub2"):
        r = await healthz(lb, node)
        assert (r.status_code, r.headers["x-gadget-node"]) == (200, node)
        async with socket_via(lb, tokens[node], node) as sio:
            assert sio.transport() == "websocket"
            ok, reason = await sio.call("requestSessionLock", ({"_id": "x"}, {"_id": "y"}, None))
            assert ok is False and "drone" in reason  # the event and its ack crossed HAProxy

    # A dead node is checked out; a client pinned to it is sent to the live one.
    await hub2.kill()
    await lb.wait_status({"hub1": "UP", "hub2": "DOWN"})
    r = await healthz(lb, "hub2")
    assert (r.status_code, r.headers["x-gadget-node"]) == (200, "hub1")
    await hub2.start()
    await lb.wait_status({"hub2": "UP"})
    r = await healthz(lb, "hub2")
    assert r.headers["x-gadget-node"] == "hub2"
    assert await lb.stop() == 0


@pytest.mark.postgres
async def test_socket_io_polling_sessions_stay_on_their_node_by_the_cookie(
    procs: Processes,
) -> None:
    async with fresh_database() as url:
        hub1, hub2 = await two_hubs(procs, database_url=url)
        lb = await start_haproxy(procs, [hub1.settings.port, hub2.settings.port])
        await lb.wait_status({"hub1": "UP", "hub2": "UP"})
        token = await procs.client(lb.url).signup("ann")
        # Polling is a request per packet: without the cookie every other one would reach
        # the node that does not know the session.
        async with socket_via(lb, token, None, transport="polling") as sio:
            assert sio.transport() == "polling"
            for _ in range(4):
                ok, _ = await sio.call("requestSessionLock", ({"_id": "x"}, {"_id": "y"}, None))
                assert ok is False
        await procs.close()  # the hubs let go of the database before it is dropped
