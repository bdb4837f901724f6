"""The run_command tool: bash in the workspace, in its own process group, killed as a group."""

from __future__ import annotations

import asyncio
import os
import signal
from asyncio.subprocess import DEVNULL, PIPE, STDOUT, Process

from pydantic import BaseModel, Field

from gadget.drone.agent.tools import Tool, ToolContext, ToolResult
from gadget.drone.agent.tools.groups import CommandGroups

__all__ = ["TOOL", "stop_process_group"]

#: Environment variables a command never sees (the drone's own secrets).
SECRET_ENV = ("GADGET_DRONE_KEY", "GADGET_LLM_API_KEY", "GADGET_TOKEN", "GADGET_SECRET_KEY")
#: How long to wait for output still held open by background children after bash exits.
OUTPUT_GRACE_S = 1.0


class RunCommandParams(BaseModel):
    """run_command arguments."""

    command: str = Field(min_length=1, description="A bash command line, run in the workspace root")
    timeout: float | None = Field(
        default=None, gt=0, le=3600, description="Seconds before the command is killed"
    )


class _Capture:
    """Keeps the head and tail of a command's output within a character budget."""

    def __init__(self, limit: int) -> None:
        self.half = limit // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    async def read(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self.total += len(chunk)
            room = self.half - len(self.head)
            self.head += chunk[:room] if room > 0 else b""
            self.tail = (self.tail + chunk[max(room, 0) :])[-self.half :]

    def text(self) -> str:
        head = self.head.decode("utf-8", errors="replace")
        tail = self.tail.decode("utf-8", errors="replace")
        elided = self.total - len(self.head) - len(self.tail)
        if elided > 0:
            return f"{head}\n[... {elided} bytes of output elided ...]\n{tail}"
        return head + tail


def _command_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    env.update(PAGER="cat", GIT_PAGER="cat", GIT_TERMINAL_PROMPT="0")
    return env


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send `sig` to the group; False when no process of it is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def stop_process_group(proc: Process, grace: float) -> None:
    """SIGTERM the command's whole process group, then SIGKILL what is left after `grace`."""
    pgid = proc.pid  # start_new_session=True: the shell leads its own group
    if not _signal_group(pgid, signal.SIGTERM):
        await proc.wait()
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while loop.time() < deadline:
        await asyncio.sleep(0.05)
        if proc.returncode is not None and not _signal_group(pgid, signal.SIGCONT):
            return
    _signal_group(pgid, signal.SIGKILL)
    await proc.wait()


async def run_command(p: RunCommandParams, ctx: ToolContext) -> ToolResult:
    """Run a bash command; report its output (capped) and exit code."""
    ctx.events.status(f"running: {p.command[:200]}")
    timeout = p.timeout or ctx.settings.command_timeout_s
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        p.command,
        cwd=ctx.workspace.root,
        env=_command_env(),
        stdin=DEVNULL,
        stdout=PIPE,
        stderr=STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    groups = CommandGroups(ctx.workspace.root)
    groups.add(proc.pid)  # a drone killed mid-command ends it at its next start
    capture = _Capture(ctx.settings.command_output_limit)
    reader = asyncio.create_task(capture.read(proc.stdout))
    try:
        try:
            await asyncio.wait_for(proc.wait(), timeout)
            note = f"[exit code: {proc.returncode}]"
        except TimeoutError:
            await stop_process_group(proc, ctx.settings.kill_grace_s)
            note = f"[timed out after {timeout:g}s; its process group was killed]"
        _, pending = await asyncio.wait({reader}, timeout=OUTPUT_GRACE_S)
        if pending:
            note += "\n[background processes still hold the output open; not waiting for them]"
    except BaseException:
        await asyncio.shield(stop_process_group(proc, ctx.settings.kill_grace_s))
        raise
    finally:
        reader.cancel()
        groups.discard(proc.pid)
    output = capture.text().rstrip("\n")
    return ToolResult(f"$ {p.command}\n{output}\n{note}" if output else f"$ {p.command}\n{note}")


TOOL = Tool(
    "run_command",
    "Run a bash command in the workspace root (own process group; default timeout "
    "120 s; long output is cut in the middle). Reports the exit code.",
    RunCommandParams,
    run_command,
)
