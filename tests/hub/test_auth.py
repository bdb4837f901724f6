"""Who may connect and call: refusals at the Socket.IO handshake and on REST."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import socketio

from gadget.hub.auth import Auth
from tests.harness import HubHarness

HubFactory = Callable[..., AbstractAsyncContextManager[HubHarness]]
OPEN_ROUTES = {"/api/auth/register", "/api/auth/login", "/healthz"}


async def refused(hub: HubHarness, auth: Any) -> str:
    """Connect with `auth`; returns the refusal message (fails if the hub accepts)."""
    sio = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    sio.on("connect_error", handler=lambda data: errors.append(data))
    try:
        with pytest.raises(socketio.exceptions.ConnectionError):
            await sio.connect(hub.url, auth=auth, transports=["websocket"], wait_timeout=5)
    finally:
        await sio.disconnect()
    assert len(errors) == 1 and isinstance(errors[0], dict), errors
    return str(errors[0]["message"])


async def test_connect_refusals_say_why(hub: HubHarness) -> None:
    token = await hub.signup("ann")
    drone_id, key = await hub.create_drone(token)
    forged = Auth("another-secret-key-0123456789abcdef0123", 3600).issue_token("someone")
    cases = {
        "no auth": (None, "expected auth"),
        "empty auth": ({}, "expected auth"),
        "auth not an object": ("token", "expected auth"),
        "token not a string": ({"token": 42}, "expected a JWT"),
        "garbage token": ({"token": "not-a-jwt"}, "invalid token"),
        "token of another hub": ({"token": forged}, "invalid token"),
        "bad drone key": ({"registrationId": drone_id, "key": "gdk_wrong"}, "wrong key"),
        "no drone key": ({"registrationId": drone_id}, "wrong key"),
        "unknown registration": ({"registrationId": "nope", "key": key}, "unknown drone"),
        "registration not a string": ({"registrationId": ["x"], "key": key}, "unknown drone"),
    }
    for name, (auth, expected) in cases.items():
        message = await refused(hub, auth)
        assert expected in message, (name, message)
    assert hub.hub.router.ides == {} and hub.hub.router.drone_sids == {}
    # The right credentials still work.
    await hub.ide(token)
    await hub.drone(drone_id, key)


async def test_token_of_a_deleted_user_is_refused(hub: HubHarness) -> None:
    token = hub.hub.auth.issue_token("ghost-user-id")
    assert "unknown user" in await refused(hub, {"token": token})
    r = await hub.http.get("/api/auth/me", headers=hub.bearer(token))
    assert r.status_code == 401


async def _protected_routes(hub: HubHarness) -> list[tuple[str, str]]:
    """(method, path) of every API route but the open ones, from the OpenAPI schema."""
    schema = (await hub.http.get("/openapi.json")).json()
    routes = []
    for path, ops in schema["paths"].items():
        if path not in OPEN_ROUTES:
            routes += [(m.upper(), re.sub(r"\{[^}]+\}", "some-id", path)) for m in ops]
    return routes


async def test_every_api_route_but_register_and_login_needs_a_valid_bearer(
    hub: HubHarness,
) -> None:
    await hub.signup("ann")
    routes = await _protected_routes(hub)
    assert len(routes) >= 10, routes  # the enumeration found the API
    for headers in ({}, hub.bearer("not-a-jwt"), {"Authorization": "Basic YTpi"}):
        for method, path in routes:
            r = await hub.http.request(method, path, headers=headers, json={"name": "x"})
            assert r.status_code == 401, (method, path, headers, r.status_code, r.text)
            assert r.json()["detail"], (method, path)
    assert (await hub.http.get("/healthz")).status_code == 200


async def test_login_with_a_wrong_password_is_401(hub: HubHarness) -> None:
    await hub.signup("ann", "right")
    r = await hub.http.post("/api/auth/login", json={"username": "ann", "password": "wrong"})
    assert r.status_code == 401
    r = await hub.http.post("/api/auth/login", json={"username": "bob", "password": "right"})
    assert r.status_code == 401
    r = await hub.http.post("/api/auth/login", json={"username": "ann", "password": "right"})
    assert r.status_code == 200 and r.json()["user"]["username"] == "ann"


async def test_register_is_closed_once_a_user_exists_unless_signup_is_open(
    hub_factory: HubFactory,
) -> None:
    async with hub_factory(allow_signup=False) as hub:
        first = await hub.http.post("/api/auth/register", json={"username": "a", "password": "p"})
        assert first.status_code == 201  # the first user bootstraps the hub
        second = await hub.http.post("/api/auth/register", json={"username": "b", "password": "p"})
        assert second.status_code == 403
        assert "signup is closed" in second.json()["detail"]
        assert await hub.hub.store.count_users() == 1
    async with hub_factory(allow_signup=True) as hub:
        third = await hub.http.post("/api/auth/register", json={"username": "b", "password": "p"})
        assert third.status_code == 201
        taken = await hub.http.post("/api/auth/register", json={"username": "b", "password": "q"})
        assert taken.status_code == 409


async def test_drone_hostname_is_kept_within_its_column(hub: HubHarness) -> None:
    token = await hub.signup("ann")
    drone_id, key = await hub.create_drone(token)
    await hub.connect({"registrationId": drone_id, "key": key, "hostname": "h" * 10_000})
    r = await hub.http.get("/api/drones", headers=hub.bearer(token))
    (drone,) = r.json()
    assert drone["online"] is True and drone["hostname"] == "h" * 255
