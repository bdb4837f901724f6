"""gadget.logs: text or JSON lines with turn, drone and user ids, in-process and from a real hub."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import socketio

from gadget.logs import (
    JsonFormatter,
    LogSettings,
    TextFormatter,
    bind,
    current_context,
    log_context,
    setup_logging,
    unbind,
)
from tests.test_local import free_port, read_until


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Put the root logger's handlers and level back after a test that sets logging up."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def record(message: str, name: str = "gadget.test", **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord(name, logging.INFO, __file__, 1, message, None, None)
    rec.__dict__.update(extra)
    return rec


def test_json_lines_carry_the_ids_of_the_context_they_were_logged_in() -> None:
    fmt = JsonFormatter()
    plain = json.loads(fmt.format(record("no ids")))
    assert set(plain) == {"time", "level", "logger", "message"}
    assert plain["level"] == "INFO" and plain["logger"] == "gadget.test"
    assert plain["time"].endswith("Z") and "T" in plain["time"]
    with log_context(user="u1", drone="d1"):
        with log_context(turn="t1"):
            inner = json.loads(fmt.format(record("inner")))
            assert current_context() == {"turn": "t1", "drone": "d1", "user": "u1"}
        outer = json.loads(fmt.format(record("outer")))
    assert (inner["turn"], inner["drone"], inner["user"]) == ("t1", "d1", "u1")
    assert "turn" not in outer and outer["drone"] == "d1"
    assert current_context() == {}
    # extra={"turn": …} names a record's turn without a context
    assert json.loads(fmt.format(record("x", turn="t9")))["turn"] == "t9"


def test_bind_and_unbind_restore_what_was_there() -> None:
    outer = bind(drone="d1")
    inner = bind(drone="d2", turn="t2")
    assert current_context() == {"turn": "t2", "drone": "d2"}
    unbind(inner)
    assert current_context() == {"drone": "d1"}
    unbind(outer)
    assert current_context() == {}


async def test_tasks_created_in_a_context_keep_its_ids() -> None:
    async def ids() -> dict[str, str]:
        await asyncio.sleep(0)
        return current_context()

    with log_context(turn="t1"):
        task = asyncio.create_task(ids())
    assert current_context() == {}
    assert await task == {"turn": "t1"}


def test_a_traceback_stays_on_its_json_line() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        rec = logging.LogRecord(
            "gadget.x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and "ValueError: bad" in entry["exc"]


def test_text_lines_show_short_ids_after_the_message() -> None:
    with log_context(drone="0123456789abcdef", user="fedcba9876543210"):
        line = TextFormatter().format(record("hello"))
    assert line.endswith("INFO    gadget.test [drone=01234567 user=fedcba98]: hello")
    assert TextFormatter().format(record("plain")).endswith("gadget.test: plain")


@pytest.mark.usefixtures("root_logging")
def test_libraries_are_quiet_below_warning_unless_debugging() -> None:
    out = io.StringIO()
    setup_logging(LogSettings(log_format="text", log_level="info"), stream=out)
    logging.getLogger("httpx").info("HTTP Request: GET http://x")
    logging.getLogger("uvicorn.error").info("Started server process")
    logging.getLogger("httpx").warning("a library warning")
    logging.getLogger("gadget.hub.x").info("our own info")
    logging.getLogger("gadget.hub.x").debug("our own debug")
    text = out.getvalue()
    assert "HTTP Request" not in text and "Started server" not in text
    assert "a library warning" in text and "our own info" in text and "debug" not in text

    setup_logging(LogSettings(log_level="DEBUG"), stream=out)  # replaces the handler
    logging.getLogger("httpx").info("now shown")
    assert out.getvalue().count("now shown") == 1
    ours = [h for h in logging.getLogger().handlers if type(h).__name__ == "_GadgetHandler"]
    assert len(ours) == 1


def test_bad_log_settings_are_refused_with_the_expected_values() -> None:
    with pytest.raises(ValueError, match="text"):
        LogSettings(log_format="xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected one of DEBUG"):
        LogSettings(log_level="loud")


def hub_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GADGET_")}
    env.update({"GADGET_HOME": str(home), "GADGET_SECRET_KEY": "k" * 40, **extra})
    return env


async def run_hub(tmp_path: Path, env: dict[str, str]) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gadget.cli", "hub", "--port", str(port),
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    async with asyncio.timeout(30), httpx.AsyncClient(base_url=url) as http:
        while True:
            try:
                if (await http.get("/healthz")).status_code == 200:
                    return proc, url
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)


async def test_a_real_hub_logs_one_json_object_per_line(tmp_path: Path) -> None:
    proc, url = await run_hub(tmp_path, hub_env(tmp_path / "home", GADGET_LOG_FORMAT="json"))
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            bad = await http.post("/api/auth/login", json={"username": "nobody", "password": "x"})
            assert bad.status_code == 401
        sio = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await sio.connect(url, auth={"token": "forged"}, transports=["websocket"])
        await sio.disconnect()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None
        async with asyncio.timeout(30):
            err = (await proc.stderr.read()).decode()
            await proc.wait()
    lines = err.splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries), err
    messages = [e["message"] for e in entries]
    assert any(m.startswith("hub listening on") for m in messages), err
    assert any("/api/auth/login -> 401" in m for m in messages), err
    assert any(m.startswith("refused connection") and "invalid token" in m for m in messages)
    assert not any(e["logger"].startswith(("httpx", "uvicorn")) for e in entries), err


async def test_log_level_warning_hides_the_hubs_info_lines(tmp_path: Path) -> None:
    env = hub_env(tmp_path / "home", GADGET_LOG_LEVEL="warning")
    proc, _ = await run_hub(tmp_path, env)
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    async with asyncio.timeout(30):
        err = (await proc.stderr.read()).decode()
        assert await proc.wait() == 0
    assert "hub listening" not in err and "INFO" not in err, err


async def test_a_bad_log_format_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gadget.cli", "hub",
        env=hub_env(tmp_path / "home", GADGET_LOG_FORMAT="xml"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    out = await read_until(proc.stdout, "GADGET_LOG_FORMAT")
    assert await proc.wait() == 2
    assert out.strip() == "gadget: GADGET_LOG_FORMAT='xml': Input should be 'text' or 'json'"
