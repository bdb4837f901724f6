"""The run_command tool: bash in the workspace, sandboxed, in its own process group.

The command is started through :class:`~gadget.drone.sandbox.Sandbox` (bubblewrap where
it works). It ends as a group: on timeout or cancel SIGTERM, then SIGKILL after the
grace period; and when bash exits, whatever it left running in the background is ended
too (under bubblewrap its PID namespace ends with it, so nothing can stay behind).
"""

from __future__ import annotations

import asyncio
import os
import signal
from asyncio.subprocess import DEVNULL, STDOUT, Process
from pathlib import Path

from pydantic import BaseModel, Field

from gadget.drone.agent.tools import Tool, ToolContext, ToolResult
from gadget.drone.agent.tools.groups import CommandGroups, live_members, signal_members
from gadget.drone.fsio import gadget_dir
from gadget.drone.sandbox import Sandbox

__all__ = ["TOOL", "stop_process_group"]

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


async def _pipe_reader(fd: int) -> tuple[asyncio.StreamReader, asyncio.ReadTransport]:
    """A stream over the read end `fd` of our own pipe, and its transport (close it).

    Our own pipe rather than asyncio's PIPE: on Python 3.11, Process.wait() also waits
    for such pipes to close, which a background process left by the command can delay.
    """
    stream = asyncio.StreamReader()
    pipe = os.fdopen(fd, "rb", buffering=0)
    try:
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stream), pipe
        )
    except BaseException:
        pipe.close()
        raise
    return stream, transport


def _command_env() -> dict[str, str]:
    """The drone's environment for a command (Sandbox.wrap removes the drone's secrets)."""
    return {**os.environ, "PAGER": "cat", "GIT_PAGER": "cat", "GIT_TERMINAL_PROMPT": "0"}


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send `sig` to the group; False when no process of it is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def stop_process_group(proc: Process, grace: float, *, sandboxed: bool = False) -> None:
    """SIGTERM the command's whole process group, then SIGKILL what is left after `grace`.

    `sandboxed`: the leader is bwrap, whose exit ends its PID namespace and everything in
    it at once; SIGTERM spares it so the command inside gets its grace period too.
    """
    pgid = proc.pid  # start_new_session=True: the started program leads its own group
    if await _ended(proc, sandboxed):
        return
    if sandboxed:
        await asyncio.to_thread(signal_members, pgid, signal.SIGTERM, pgid)
    else:
        _signal_group(pgid, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while loop.time() < deadline:
        await asyncio.sleep(0.05)
        if await _ended(proc, sandboxed):
            return
    _signal_group(pgid, signal.SIGKILL)
    await proc.wait()


async def _ended(proc: Process, sandboxed: bool) -> bool:
    """Whether nothing of the command runs any more (a zombie its reaper is slow with does not)."""
    if proc.returncode is None:
        return False
    if sandboxed:
        return True  # the kernel kills what was left in bwrap's PID namespace
    if not _signal_group(proc.pid, signal.SIGCONT):  # SIGCONT: a stopped one can see SIGTERM
        return True
    return await asyncio.to_thread(live_members, proc.pid) == 0


async def _start(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[Process, int]:
    """Start `argv` leading a new session, output and errors into a new pipe: (process, read end)."""
    read_end, write_end = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=env, stdin=DEVNULL, stdout=write_end, stderr=STDOUT,
            start_new_session=True,
        )  # fmt: skip
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return proc, read_end


async def run_command(p: RunCommandParams, ctx: ToolContext) -> ToolResult:
    """Run a bash command in the sandbox; report its output (capped) and exit code."""
    ctx.events.status(f"running: {p.command[:200]}")
    timeout = p.timeout or ctx.settings.command_timeout_s
    sandbox = await Sandbox.detect(ctx.settings)
    root = ctx.workspace.root
    gadget_dir(root)  # exists before the sandbox covers it
    argv, env = sandbox.wrap(["bash", "-c", p.command], root, _command_env())
    proc, read_end = await _start(argv, root, env)
    groups = CommandGroups(root)
    groups.add(proc.pid)  # a drone killed mid-command ends it at its next start
    capture = _Capture(ctx.settings.command_output_limit)
    grace, sandboxed = ctx.settings.kill_grace_s, sandbox.kind == "bwrap"
    try:
        stream, transport = await _pipe_reader(read_end)
    except BaseException:
        await asyncio.shield(stop_process_group(proc, grace, sandboxed=sandboxed))
        groups.discard(proc.pid)
        raise
    reader = asyncio.create_task(capture.read(stream))
    try:
        try:
            await asyncio.wait_for(proc.wait(), timeout)
            note = f"[exit code: {proc.returncode}]"
        except TimeoutError:
            note = f"[timed out after {timeout:g}s; its process group was killed]"
        # Also after a normal exit: background processes do not outlive their command.
        await stop_process_group(proc, grace, sandboxed=sandboxed)
        _, pending = await asyncio.wait({reader}, timeout=OUTPUT_GRACE_S)
        if pending:
            note += "\n[background processes still hold the output open; not waiting for them]"
    except BaseException:
        await asyncio.shield(stop_process_group(proc, grace, sandboxed=sandboxed))
        raise
    finally:
        reader.cancel()
        transport.close()
        groups.discard(proc.pid)
    output = capture.text().rstrip("\n")
    return ToolResult(f"$ {p.command}\n{output}\n{note}" if output else f"$ {p.command}\n{note}")


TOOL = Tool(
    "run_command",
    "Run a bash command in the workspace root (default timeout 120 s; long output is cut "
    "in the middle). Reports the exit code. Background processes it starts are ended "
    "when it exits.",
    RunCommandParams,
    run_command,
)
