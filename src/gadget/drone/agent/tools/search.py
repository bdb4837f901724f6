"""The search tool: a regular expression over the workspace's files, honouring .gitignore."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from pathspec import GitIgnoreSpec
from pydantic import BaseModel, Field

from gadget.drone.agent.tools import Tool, ToolContext
from gadget.drone.agent.workspace import Workspace
from gadget.drone.exceptions import ToolError

__all__ = ["TOOL"]

MAX_MATCHES = 200
MAX_FILE_BYTES = 2_000_000
MAX_SHOWN_CHARS = 300


class SearchParams(BaseModel):
    """search arguments."""

    pattern: str = Field(description="Python regular expression to look for, line by line")
    path: str = Field(default=".", description="File or folder to search in")
    glob: str | None = Field(default=None, description="Only files matching this glob, e.g. '*.py'")


def _search(ws: Workspace, p: SearchParams) -> str:
    try:
        regex = re.compile(p.pattern)
    except re.error as exc:
        raise ToolError(f"bad regular expression {p.pattern!r}: {exc}") from None
    start = ws.resolve(p.path)
    if not start.exists():
        raise ToolError(f"{p.path} does not exist")
    only = GitIgnoreSpec.from_lines([p.glob]) if p.glob else None
    files = [start] if start.is_file() else [f for f, _ in ws.walk(start) if f.is_file()]
    hits: list[str] = []
    for file in files:
        rel = ws.relative(file)
        if only is not None and not only.match_file(rel):
            continue
        hits.extend(_grep(file, rel, regex, MAX_MATCHES + 1 - len(hits)))
        if len(hits) > MAX_MATCHES:
            hits[MAX_MATCHES:] = [f"[more than {MAX_MATCHES} matches; narrow the pattern or path]"]
            break
    return "\n".join(hits) if hits else f"no match for {p.pattern!r} in {p.path}"


def _grep(file: Path, rel: str, regex: re.Pattern[str], room: int) -> list[str]:
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            return []
        data = file.read_bytes()
    except OSError:
        return []
    if b"\x00" in data[:8192]:
        return []
    out: list[str] = []
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if regex.search(line):
            out.append(f"{rel}:{number}: {line.strip()[:MAX_SHOWN_CHARS]}")
            if len(out) >= room:
                break
    return out


async def search(p: SearchParams, ctx: ToolContext) -> str:
    """Find lines matching a regex."""
    return await asyncio.to_thread(_search, ctx.workspace, p)


TOOL = Tool(
    "search",
    "Search files for a regular expression (skips .gitignored, binary and huge files); "
    "prints path:line: text.",
    SearchParams,
    search,
    read_only=True,
)
