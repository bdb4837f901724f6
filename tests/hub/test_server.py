"""hub/server.py: the uvicorn settings the hub serves with."""

from __future__ import annotations

import asyncio

import httpx

from gadget.hub.server import KEEP_ALIVE_S
from tests.harness import HubHarness


async def test_an_idle_http_connection_outlives_the_clients_keep_alive(hub: HubHarness) -> None:
    """httpx keeps an idle connection 5 s, as uvicorn's default: at equal times a request
    could go out on a connection the hub was closing (a read error, not an answer)."""
    expiry = httpx.Limits().keepalive_expiry
    assert expiry is not None and expiry < KEEP_ALIVE_S

    limits = httpx.Limits(keepalive_expiry=None)  # reuse the connection whatever its age
    async with httpx.AsyncClient(base_url=hub.url, limits=limits) as http:
        token = await hub.signup("ada")
        me = await http.get("/api/auth/me", headers=hub.bearer(token))
        assert me.status_code == 200
        first = me.extensions["network_stream"]
        await asyncio.sleep(expiry + 1)  # idle past the client's own expiry
        again = await http.get("/api/auth/me", headers=hub.bearer(token))
        assert again.status_code == 200
        assert again.extensions["network_stream"] is first  # the same connection answered
