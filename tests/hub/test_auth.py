"""Who may connect and call: refusals at the Socket.IO handshake and on REST."""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
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
    assert len(hub.hub.ides) == 0 and len(hub.hub.drones) == 0
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


# -- abuse limits --------------------------------------------------------------
async def _login(hub: HubHarness, user: str, password: str, address: str = "") -> httpx.Response:
    """POST /api/auth/login, as if from `address` (uvicorn trusts X-Forwarded-For from loopback)."""
    headers = {"X-Forwarded-For": address} if address else {}
    return await hub.http.post(
        "/api/auth/login", json={"username": user, "password": password}, headers=headers
    )


async def test_two_typos_then_the_right_password_log_in_with_the_default_limits(
    hub: HubHarness,
) -> None:
    await hub.signup("ann", "right")
    for _ in range(3):
        for typo in ("rihgt", "Right"):
            assert (await _login(hub, "ann", typo)).status_code == 401
        assert (await _login(hub, "ann", "right")).status_code == 200


async def test_logins_are_throttled_per_username_with_retry_after(
    hub_factory: HubFactory,
) -> None:
    async with hub_factory(login_max_failures=3, login_window_s=120) as hub:
        await hub.signup("ann", "right")
        await hub.signup("bob", "right")
        for _ in range(3):
            assert (await _login(hub, "ann", "wrong")).status_code == 401
        r = await _login(hub, "ann", "right")  # even the right password, until the window ends
        assert r.status_code == 429, r.text
        assert 1 <= int(r.headers["Retry-After"]) <= 120
        assert r.json()["detail"].startswith("too many failed logins for 'ann': try again in ")
        assert (await _login(hub, "bob", "right")).status_code == 200


async def test_logins_are_throttled_per_client_address(hub_factory: HubFactory) -> None:
    async with hub_factory(login_max_failures_per_address=3) as hub:
        await hub.signup("ann", "right")
        for name in ("a1", "a2", "a3"):  # guessing across usernames from one address
            assert (await _login(hub, name, "guess", "203.0.113.7")).status_code == 401
        r = await _login(hub, "ann", "right", "203.0.113.7")
        assert r.status_code == 429 and "from this address" in r.json()["detail"]
        assert int(r.headers["Retry-After"]) >= 1
        assert (await _login(hub, "ann", "right", "198.51.100.2")).status_code == 200


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread niceness is Linux's")
async def test_password_work_runs_in_low_priority_threads_off_the_loop(hub: HubHarness) -> None:
    auth = hub.hub.auth
    digest = await auth.hash_password("pw")
    assert await auth.check_password(digest, "pw") is True
    assert await auth.check_password(digest, "nope") is False
    assert await auth.check_password(None, "pw") is False  # unknown user: a decoy is checked
    workers = [t for t in threading.enumerate() if t.name.startswith("argon2")]
    assert 1 <= len(workers) <= hub.settings.password_workers
    for worker in workers:
        assert worker.native_id is not None
        assert os.getpriority(os.PRIO_PROCESS, worker.native_id) == 19
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < 19  # the loop's: as it was


async def test_drones_per_user_are_capped(hub_factory: HubFactory) -> None:
    async with hub_factory(max_drones_per_user=2) as hub:
        ann, bob = await hub.signup("ann"), await hub.signup("bob")
        first, _ = await hub.create_drone(ann)
        await hub.create_drone(ann)
        r = await hub.http.post("/api/drones", json={"name": "d3"}, headers=hub.bearer(ann))
        assert r.status_code == 409
        assert "you have 2 drones, the most this hub allows" in r.json()["detail"]
        await hub.create_drone(bob)  # the cap is per user
        r = await hub.http.delete(f"/api/drones/{first}", headers=hub.bearer(ann))
        assert r.status_code == 204
        await hub.create_drone(ann)
