"""DroneSupervisor with small real processes standing in for the drone: what each exit means.

The real drone under `gadget up` is exercised in tests/test_local.py; here a script plays a
drone that exits with a chosen code, so every branch runs without waiting for real backoff.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys
from pathlib import Path

import pytest

from gadget.supervisor import DroneSupervisor, Outcome, describe_exit
from tests.test_local import alive, eventually

# Exits with the next code listed in argv[1], or kills itself with -code (a file counts runs).
SCRIPT = """
import os, pathlib, signal, sys
counter = pathlib.Path(sys.argv[2])
run = int(counter.read_text()) if counter.exists() else 0
counter.write_text(str(run + 1))
codes = [int(c) for c in sys.argv[1].split(",")]
print(f"run {run}: exiting with {codes[run]}", file=sys.stderr)
print("last words", file=sys.stderr, flush=True)
if codes[run] < 0:
    os.kill(os.getpid(), -codes[run])
sys.exit(codes[run])
"""


def supervisor(tmp_path: Path, codes: str, echo: io.BytesIO) -> DroneSupervisor:
    return DroneSupervisor(
        [sys.executable, "-c", SCRIPT, codes, str(tmp_path / "runs")],
        os.environ,
        drone_id="d1",
        first_delay=0.01,
        max_delay=0.05,
        echo=echo,
    )


async def test_a_dying_drone_is_restarted_with_its_reason_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    echo = io.BytesIO()
    keeper = supervisor(tmp_path, "1,-9,1,3", echo)
    caplog.set_level(logging.WARNING, "gadget.supervisor")
    outcome = await asyncio.wait_for(keeper.run(), 60)
    assert outcome is Outcome.REPLACED and keeper.starts == 4
    restarts = [r.getMessage() for r in caplog.records if "restarting it in" in r.getMessage()]
    assert len(restarts) == 3
    assert restarts[0].startswith("the drone exited with code 1; restarting it in")
    assert "    run 0: exiting with 1\n    last words" in restarts[0]
    assert restarts[1].startswith("the drone was killed by SIGKILL; restarting")
    # Every line the drone wrote to stderr was passed on.
    assert echo.getvalue().decode().count("last words") == 4


async def test_exit_3_means_replaced_and_is_not_restarted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keeper = supervisor(tmp_path, "3", io.BytesIO())
    assert await asyncio.wait_for(keeper.run(), 30) is Outcome.REPLACED
    assert keeper.starts == 1
    (message,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "replaced by another drone process using its id d1" in message
    assert "The hub keeps running" in message and "last words" in message


async def test_exit_2_means_it_cannot_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keeper = supervisor(tmp_path, "2", io.BytesIO())
    assert await asyncio.wait_for(keeper.run(), 30) is Outcome.CANNOT_START
    (message,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert message.startswith("the drone cannot start. Its last lines:") and "run 0" in message


async def test_exit_0_means_it_was_told_to_stop(tmp_path: Path) -> None:
    keeper = supervisor(tmp_path, "0", io.BytesIO())
    assert await asyncio.wait_for(keeper.run(), 30) is Outcome.TERMINATED
    assert keeper.starts == 1


async def test_stop_ends_a_running_drone_with_sigterm(tmp_path: Path) -> None:
    keeper = DroneSupervisor(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
        os.environ,
        drone_id="d1",
        echo=io.BytesIO(),
    )
    runner = asyncio.create_task(keeper.run())
    assert await eventually(lambda: keeper.pid is not None, 30)
    pid = keeper.pid
    assert pid is not None
    await asyncio.wait_for(keeper.stop(runner), 30)
    assert runner.result() is Outcome.STOPPED and keeper.pid is None
    assert not alive(pid)


async def test_a_command_that_cannot_run_is_cannot_start(tmp_path: Path) -> None:
    keeper = DroneSupervisor([str(tmp_path / "missing")], os.environ, drone_id="d1")
    assert await asyncio.wait_for(keeper.run(), 30) is Outcome.CANNOT_START


def test_exit_descriptions() -> None:
    assert describe_exit(1) == "exited with code 1"
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert describe_exit(-200) == "was killed by signal 200"
