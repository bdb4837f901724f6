"""The system prompt: the workspace, the tools, the rules, and a glance at the project."""

from __future__ import annotations

from gadget.drone.agent.tools import ToolBox
from gadget.drone.agent.workspace import Workspace

__all__ = ["system_prompt"]

MAX_TOP_LEVEL = 60
GUIDE_FILES = ("AGENTS.md", "README.md")
GUIDE_LINES = 40
GUIDE_CHARS = 3000

RULES = """\
Rules:
- Work only inside the workspace; paths are relative to its root.
- Read a file (read_file) in this turn before you edit or overwrite it; edit_file needs
  the exact old text, matching once.
- Prefer small, careful changes; run the project's tests or commands to check your work.
- Commands run with bash in the workspace root; avoid interactive programs.
- When the work is done, answer the person briefly: what you changed and how you checked it."""

SUBAGENT = """\
You are a subagent: you were given one self-contained task by another agent. Do it with
the tools, then answer with the result only; your answer is all the other agent sees."""


def system_prompt(workspace: Workspace, tools: ToolBox, *, subagent: bool = False) -> str:
    """The system message text for an agent working in `workspace` with `tools`."""
    lines = [
        "You are a coding agent working in a software project on the person's machine.",
        f"Workspace: {workspace.root}",
        "",
        "Tools:",
        *(f"- {name}: {tool.description}" for name, tool in tools.tools.items()),
        "",
        RULES,
        "",
        _overview(workspace),
    ]
    if subagent:
        lines += ["", SUBAGENT]
    return "\n".join(lines).rstrip() + "\n"


def _overview(workspace: Workspace) -> str:
    """Top-level entries and the head of AGENTS.md or README.md."""
    entries = [
        entry.name + ("/" if entry.is_dir() else "")
        for entry, _ in workspace.walk(workspace.root, max_depth=1)
    ]
    shown = entries[:MAX_TOP_LEVEL]
    more = f" (+{len(entries) - len(shown)} more)" if len(entries) > len(shown) else ""
    parts = ["Project top level: " + (", ".join(shown) + more if shown else "(empty)")]
    for name in GUIDE_FILES:
        path = workspace.root / name
        if path.is_file():
            head = path.read_text(encoding="utf-8", errors="replace").splitlines()[:GUIDE_LINES]
            parts += ["", f"Head of {name}:", "\n".join(head)[:GUIDE_CHARS]]
            break
    return "\n".join(parts)
