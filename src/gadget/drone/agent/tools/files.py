"""File tools: read_file, write_file, edit_file and list_dir, all confined to the workspace."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import BaseModel, Field

from gadget.drone.agent.reads import FileReads
from gadget.drone.agent.tools import Tool, ToolContext
from gadget.drone.agent.workspace import Workspace
from gadget.drone.exceptions import ToolError
from gadget.drone.fsio import write_atomic

__all__ = ["TOOLS"]

MAX_READ_LINES = 2000
MAX_LINE_CHARS = 2000
MAX_LIST_ENTRIES = 500


class ReadFileParams(BaseModel):
    """read_file arguments."""

    path: str = Field(description="File path, relative to the workspace root")
    offset: int = Field(default=1, ge=1, description="First line to read (1-based)")
    limit: int = Field(default=MAX_READ_LINES, ge=1, description="Most lines to read")


class WriteFileParams(BaseModel):
    """write_file arguments."""

    path: str = Field(description="File path, relative to the workspace root")
    content: str = Field(description="The whole new content of the file")


class EditFileParams(BaseModel):
    """edit_file arguments."""

    path: str = Field(description="File path, relative to the workspace root")
    old: str = Field(description="Exact text to replace; must occur exactly once")
    new: str = Field(description="Replacement text")


class ListDirParams(BaseModel):
    """list_dir arguments."""

    path: str = Field(default=".", description="Folder, relative to the workspace root")
    depth: int = Field(default=2, ge=1, le=10, description="How many levels to descend")


def _current(path: Path) -> bytes | None:
    """The file's bytes, or None when there is no file."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _read_text(path: Path, shown: str, reads: FileReads) -> str:
    if path.exists() and not path.is_file():
        raise ToolError(f"{shown} is not a file")
    data = _current(path)
    reads.saw(path, data)
    if data is None:
        raise ToolError(f"{shown} does not exist")
    if b"\x00" in data[:8192]:
        raise ToolError(f"{shown} looks binary ({len(data)} bytes); not shown")
    return data.decode("utf-8", errors="replace")


def _read(ws: Workspace, p: ReadFileParams, reads: FileReads) -> str:
    path = ws.resolve(p.path)
    lines = _read_text(path, p.path, reads).splitlines()
    if not lines:
        return f"({p.path} is empty)"
    if p.offset > len(lines):
        raise ToolError(f"offset {p.offset} is past the end of {p.path} ({len(lines)} lines)")
    end = min(len(lines), p.offset - 1 + min(p.limit, MAX_READ_LINES))
    out = [
        f"{n:6}\t{line[:MAX_LINE_CHARS]}{' [line cut]' if len(line) > MAX_LINE_CHARS else ''}"
        for n, line in enumerate(lines[p.offset - 1 : end], p.offset)
    ]
    if end < len(lines):
        out.append(f"[{len(lines) - end} more lines; read on with offset={end + 1}]")
    return "\n".join(out)


def _write(ws: Workspace, p: WriteFileParams, reads: FileReads) -> str:
    path = ws.resolve(p.path)
    if path.is_dir():
        raise ToolError(f"{p.path} is a folder")
    current = _current(path)
    reads.check(path, p.path, current)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = p.content.encode()
    write_atomic(path, data)
    reads.saw(path, data)
    verb = "overwrote" if current is not None else "created"
    return f"{verb} {ws.relative(path)} ({len(p.content.splitlines())} lines)"


def _edit(ws: Workspace, p: EditFileParams, reads: FileReads) -> str:
    path = ws.resolve(p.path)
    if path.exists() and not path.is_file():
        raise ToolError(f"{p.path} is not a file")
    current = _current(path)
    if current is None:
        raise ToolError(f"{p.path} does not exist; use write_file to create it")
    reads.check(path, p.path, current)
    text = current.decode("utf-8", errors="replace")
    if not p.old:
        raise ToolError("old must not be empty; use write_file to create or replace a whole file")
    count = text.count(p.old)
    if count == 0:
        raise ToolError(
            f"old text not found in {p.path}; read the file and copy the text exactly "
            "(whitespace and indentation included)"
        )
    if count > 1:
        raise ToolError(
            f"old text occurs {count} times in {p.path}; include more surrounding lines "
            "so it matches exactly once"
        )
    data = text.replace(p.old, p.new, 1).encode()
    write_atomic(path, data)
    reads.saw(path, data)
    line = text[: text.index(p.old)].count("\n") + 1
    return f"edited {ws.relative(path)} at line {line}"


def _list(ws: Workspace, p: ListDirParams) -> str:
    root = ws.resolve(p.path)
    if not root.is_dir():
        raise ToolError(f"{p.path} is not a folder")
    out: list[str] = []
    for entry, depth in ws.walk(root, max_depth=p.depth):
        if len(out) == MAX_LIST_ENTRIES:
            out.append(f"[more than {MAX_LIST_ENTRIES} entries; list a subfolder]")
            break
        out.append("  " * (depth - 1) + entry.name + ("/" if entry.is_dir() else ""))
    return "\n".join(out) if out else f"({p.path} is empty)"


async def read_file(p: ReadFileParams, ctx: ToolContext) -> str:
    """Read a file with line numbers."""
    return await asyncio.to_thread(_read, ctx.workspace, p, ctx.reads)


async def write_file(p: WriteFileParams, ctx: ToolContext) -> str:
    """Create or replace a file."""
    return await asyncio.to_thread(_write, ctx.workspace, p, ctx.reads)


async def edit_file(p: EditFileParams, ctx: ToolContext) -> str:
    """Replace one exact, unique piece of a file."""
    return await asyncio.to_thread(_edit, ctx.workspace, p, ctx.reads)


async def list_dir(p: ListDirParams, ctx: ToolContext) -> str:
    """List a folder as an indented tree."""
    return await asyncio.to_thread(_list, ctx.workspace, p)


TOOLS = [
    Tool(
        "read_file",
        "Read a text file; lines are numbered. Use offset/limit for big files.",
        ReadFileParams,
        read_file,
        read_only=True,
    ),
    Tool(
        "write_file",
        "Create a file or replace its whole content (folders are created); an existing "
        "file must be read with read_file first in this turn.",
        WriteFileParams,
        write_file,
    ),
    Tool(
        "edit_file",
        "Replace `old` with `new` in a file read earlier in this turn; `old` must match "
        "exactly once.",
        EditFileParams,
        edit_file,
    ),
    Tool(
        "list_dir",
        "List files and folders (honours .gitignore).",
        ListDirParams,
        list_dir,
        read_only=True,
    ),
]
