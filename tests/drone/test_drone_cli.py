"""`gadget drone register` and `gadget drone` with the key kept off the command line."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import sys
from pathlib import Path

import pytest

from tests.harness import HubHarness

pytestmark = pytest.mark.timeout(60)


def _env(hub_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GADGET_")}
    return {**env, "GADGET_HUB_URL": hub_url, "GADGET_LLM_BASE_URL": "http://127.0.0.1:9/v1"}


async def gadget_drone(
    hub_url: str, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """`python -m gadget.drone ARGS` to its end: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gadget.drone", *args, env={**_env(hub_url), **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 50)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def serve_until_online(hub: HubHarness, drone_id: str, *args: str) -> tuple[str, bytes]:
    """Run `gadget drone ARGS` until the hub sees it online, then SIGTERM; (stderr, cmdline)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gadget.drone", *args, env=_env(hub.url),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(30):
            while hub.hub.drones.here(drone_id) is None:
                assert proc.returncode is None, await proc.stderr.read() if proc.stderr else ""
                await asyncio.sleep(0.05)
        cmdline = await asyncio.to_thread(Path(f"/proc/{proc.pid}/cmdline").read_bytes)
        proc.send_signal(signal.SIGTERM)
        assert proc.stderr is not None
        err = (await proc.stderr.read()).decode()
        assert await proc.wait() == 0, err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return err, cmdline


async def test_register_writes_a_private_key_file_the_drone_runs_from(
    hub: HubHarness, tmp_path: Path, ws: Path
) -> None:
    await hub.signup("bob", "pw-secret")
    key_file = tmp_path / "keys" / "drone.key"
    code, out, err = await gadget_drone(
        hub.url, "register", "--name", "box", "--username", "bob", "--password", "pw-secret",
        "--key-file", str(key_file),
    )  # fmt: skip
    assert code == 0, err
    key = key_file.read_text().strip()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert key not in out and f"key: written to {key_file} (mode 0600)" in out
    drone_id = out.split("id:", 1)[1].split()[0]
    assert f"gadget drone --hub {hub.url} --id {drone_id} --key-file {key_file}" in out
    err, cmdline = await serve_until_online(
        hub, drone_id, "--id", drone_id, "--key-file", str(key_file), "--workspace", str(ws)
    )
    assert key.encode() not in cmdline and "--key puts" not in err


async def test_register_without_a_key_file_says_to_use_the_environment(hub: HubHarness) -> None:
    await hub.signup("bob", "pw-secret")
    code, out, err = await gadget_drone(
        hub.url, "register", "--name", "box", "--username", "bob", "--password", "pw-secret"
    )
    assert code == 0, err
    key = out.split("key:", 1)[1].split()[0]
    assert f"GADGET_DRONE_KEY={key} gadget drone --hub {hub.url} --id " in out
    assert f"--key {key}" not in out and "--key-file PATH" in out


async def test_register_refuses_an_existing_key_file_before_registering(
    hub: HubHarness, tmp_path: Path
) -> None:
    token = await hub.signup("bob", "pw-secret")
    key_file = tmp_path / "drone.key"
    key_file.write_text("an older key\n")
    code, out, err = await gadget_drone(
        hub.url, "register", "--name", "box", "--username", "bob", "--password", "pw-secret",
        "--key-file", str(key_file),
    )  # fmt: skip
    assert code == 1 and f"{key_file} already exists; remove it or pass another" in err
    assert key_file.read_text() == "an older key\n"
    drones = await hub.http.get("/api/drones", headers=hub.bearer(token))
    assert drones.json() == []


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602])
async def test_a_key_file_open_to_others_is_refused(tmp_path: Path, ws: Path, mode: int) -> None:
    key_file = tmp_path / "drone.key"
    key_file.write_text("k" * 40)
    key_file.chmod(mode)
    args = ("--id", "d", "--key-file", str(key_file), "--workspace", str(ws))
    code, _, err = await gadget_drone("http://127.0.0.1:9", *args)
    assert code == 2
    assert err.strip() == (
        f"gadget drone: the key file {key_file} is open to other users "
        f"(mode {mode:04o}); run `chmod 600 {key_file}`"
    )


@pytest.mark.parametrize(
    ("content", "wanted"),
    [(None, "does not exist; write it with `gadget drone register"), ("\n", "is empty")],
)
async def test_a_missing_or_empty_key_file_is_a_clear_error(
    tmp_path: Path, ws: Path, content: str | None, wanted: str
) -> None:
    key_file = tmp_path / "drone.key"
    if content is not None:
        key_file.write_text(content)
        key_file.chmod(0o600)
    args = ("--id", "d", "--key-file", str(key_file), "--workspace", str(ws))
    code, _, err = await gadget_drone("http://127.0.0.1:9", *args)
    assert code == 2 and err.startswith(f"gadget drone: the key file {key_file} {wanted}")
    assert "Traceback" not in err


async def test_key_and_key_file_together_are_refused(tmp_path: Path, ws: Path) -> None:
    args = ("--id", "d", "--key", "k", "--key-file", str(tmp_path / "f"), "--workspace", str(ws))
    code, _, err = await gadget_drone("http://127.0.0.1:9", *args)
    assert code == 2 and "expected --key or --key-file, not both" in err


async def test_key_on_the_command_line_still_works_but_warns(hub: HubHarness, ws: Path) -> None:
    token = await hub.signup("bob", "pw-secret")
    drone_id, key = await hub.create_drone(token, "box")
    err, _ = await serve_until_online(
        hub, drone_id, "--id", drone_id, "--key", key, "--workspace", str(ws)
    )
    assert err.count("--key puts the drone key on the command line, where `ps` shows it") == 1


@pytest.mark.parametrize(
    ("name", "value", "wanted"),
    [
        ("GADGET_SANDBOX", "maybe", "Input should be 'auto', 'bwrap' or 'none'"),
        ("GADGET_SANDBOX_NETWORK", "perhaps", "Input should be a valid boolean"),
    ],
)
async def test_a_bad_sandbox_setting_is_one_clear_line(
    ws: Path, name: str, value: str, wanted: str
) -> None:
    for args in [("--id", "d", "--key", "k", "--workspace", str(ws)), ("register", "--name", "x")]:
        code, _, err = await gadget_drone("http://127.0.0.1:9", *args, env={name: value})
        assert code == 2 and f"{name}={value!r}: {wanted}" in err, err
        assert len(err.strip().splitlines()) == 1
