"""The `gadget` command's administrative subcommands, run as subprocesses."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx

from tests.harness import HubHarness


def gadget(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GADGET_HOME": str(home),
        "GADGET_SECRET_KEY": "test-secret-key-0123456789abcdef0123456789",
    }
    return subprocess.run(
        [sys.executable, "-m", "gadget.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_user_add_creates_a_user_who_can_log_in(
    tmp_path: Path, hub_factory: Callable[..., AbstractAsyncContextManager[HubHarness]]
) -> None:
    done = gadget("user", "add", "alice", "--password", "s3cret", home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    assert "created user alice" in done.stdout
    again = gadget("user", "add", "alice", "--password", "other", home=tmp_path / "home")
    assert again.returncode == 1 and "taken" in again.stderr
    async with hub_factory(allow_signup=False) as hub:
        ok = await hub.http.post(
            "/api/auth/login", json={"username": "alice", "password": "s3cret"}
        )
        assert ok.status_code == 200
        bad = await hub.http.post(
            "/api/auth/login", json={"username": "alice", "password": "other"}
        )
        assert bad.status_code == 401
        closed = await hub.http.post(
            "/api/auth/register", json={"username": "bob", "password": "x"}
        )
        assert closed.status_code == 403


def test_secret_key_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    from gadget.config import Settings

    settings = Settings(home=tmp_path / "home")
    first = settings.resolved_secret_key()
    assert settings.resolved_secret_key() == first
    assert (tmp_path / "home" / "secret_key").stat().st_mode & 0o777 == 0o600


async def test_hub_command_serves_with_settings_from_flags(tmp_path: Path) -> None:
    from tests.test_local import free_port, read_until

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GADGET_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gadget.cli", "hub", "--port", str(port), "--home", str(tmp_path / "h"),
        "--allow-signup", "--drone-grace-s", "5", "--secret-key", "k" * 40,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        await read_until(proc.stdout, "hub listening")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert (await http.get("/healthz")).status_code == 200
            for name in ("first", "second"):  # the second needs --allow-signup
                r = await http.post("/api/auth/register", json={"username": name, "password": "pw"})
                assert r.status_code == 201, r.text
        assert (tmp_path / "h" / "gadget.db").exists()
        assert not (tmp_path / "h" / "secret_key").exists()  # --secret-key was used
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
