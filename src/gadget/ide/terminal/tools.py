"""Tool calls as the web IDE shows them (`ide/web/tools.js`), as rich panels.

A drone's result is `{"ok": bool, "output": str}`. The panel's title is the
tool's name and a one-line hint (the command, the path…), its subtitle a chip:
`exit N` when the output ends with `[exit code: N]`, else `done` or `error`.
Bodies by tool name: `run_command` as its terminal output, `read_file` as
numbered lines, `edit_file` as a diff of the edit, `write_file` as the written
code; any other tool as its parameters and result. Everything is cut to a few
dozen lines with a count of what was left out; command output keeps its end,
where the errors and the exit code are.
"""

from __future__ import annotations

import difflib
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.syntax import Syntax
from rich.text import Text

from gadget.ide.terminal.markdown import inert

#: Lines of a body shown (command output: its first and last lines).
MAX_LINES = 20
#: Characters of a body shown.
MAX_CHARS = 4000
#: Characters of one line of command output shown.
MAX_ROW = 400
_EXIT = re.compile(r"\[exit code: (-?\d+)\]\s*$")
_NUMBERED = re.compile(r"^ *(\d+)\t(.*)$")
_THEME = "ansi_dark"


@dataclass(frozen=True)
class ToolResult:
    """A tool's result as shown: whether it worked, its text, the exit code of a command.

    `refused`: the person denied the call, or the session's permission mode did not let
    it run; `server`: the MCP server of an MCP tool.
    """

    ok: bool
    text: str
    exit: int | None = None
    refused: bool = False
    server: str | None = None


def parse_json(payload: str) -> Any:
    """The JSON value of `payload`, or `payload` itself when it is not JSON."""
    try:
        return json.loads(payload)
    except ValueError:
        return payload


def pretty(value: Any) -> str:
    """A value readably: strings as themselves, short values on one line, else indented."""
    if isinstance(value, str):
        return value
    compact = json.dumps(value, ensure_ascii=False)
    return compact if len(compact) <= 100 else json.dumps(value, indent=2, ensure_ascii=False)


def _pick(value: Any, *keys: str) -> Any:
    if isinstance(value, dict):
        return next((value[k] for k in keys if value.get(k) is not None), None)
    return None


def read_result(response: str) -> ToolResult:
    """The drone's `{"ok", "output"}` (older or foreign shapes are shown as they came)."""
    value = parse_json(response)
    ok, refused, server = True, False, None
    if isinstance(value, dict):
        refused = value.get("refused") is True
        server = value["server"] if isinstance(value.get("server"), str) else None
        output = _pick(value, "output", "stdout", "content", "text")
        ok = value.get("ok") is not False and value.get("success") is not False
        ok = ok and not value.get("error")
        text = output if isinstance(output, str) else pretty(value.get("error") or value)
    else:
        text = pretty(value)
    noted = _EXIT.search(text)
    field = _pick(value, "exit_code", "exitCode", "returncode")
    code = int(noted.group(1)) if noted else field if isinstance(field, int) else None
    return ToolResult(ok and code in {None, 0}, inert(text), code, refused, server)


def brief(params: Any) -> str:
    """A one-line hint of what a call did, shown next to its name."""
    value = _pick(params, "command", "description", "path", "pattern", "query", "prompt", "url")
    if value is None and isinstance(params, str):
        value = params
    return inert(str(value).split("\n")[0][:100]) if value is not None else ""


def cut(text: str, lines: int = MAX_LINES, chars: int = MAX_CHARS) -> str:
    """The first `lines` lines and `chars` characters of `text`, saying how much was left out."""
    kept = "\n".join(text[:chars].split("\n")[:lines])
    if len(kept) < len(text):
        rest = text[len(kept) :]
        more = rest.count("\n")
        kept += f"\n… ({more} more lines)" if more else f"… ({len(rest)} more characters)"
    return kept


def cut_middle(text: str, lines: int = MAX_LINES) -> str:
    """`text` without its middle when longer than `lines` lines: a command's end matters most."""
    rows = [r if len(r) <= MAX_ROW else r[:MAX_ROW] + "…" for r in text.split("\n")]
    if len(rows) > lines:
        head = lines // 3
        rows = [*rows[:head], f"… ({len(rows) - lines} lines left out)", *rows[head - lines :]]
    return "\n".join(rows)


def diff_lines(old: str, new: str) -> list[tuple[str, str]]:
    """A line diff of `old` → `new` as (op, line) with op one of "-", "+", " "."""
    a, b = old.split("\n"), new.split("\n")
    if len(a) > 1 and len(b) > 1 and a[-1] == b[-1] == "":
        a, b = a[:-1], b[:-1]  # "x\n" splits into ["x", ""]: not a change
    out: list[tuple[str, str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            out += [(" ", line) for line in a[i1:i2]]
            continue
        out += [("-", line) for line in a[i1:i2]]
        out += [("+", line) for line in b[j1:j2]]
    return out


def _result(res: ToolResult) -> Text:
    return Text(cut(res.text), style="" if res.ok else "red")


def syntax(code: str, path: Any, start: int = 1, numbers: bool = False) -> Syntax:
    """`code` highlighted by the lexer its path (or content) suggests."""
    lexer = Syntax.guess_lexer(str(path or ""), code)
    return Syntax(
        code,
        lexer,
        theme=_THEME,
        line_numbers=numbers,
        start_line=start,
        word_wrap=True,
        background_color="default",
    )


def _run_command(params: Any, res: ToolResult) -> RenderableType | None:
    text = res.text if res.text.startswith("$ ") else f"$ {_pick(params, 'command')}\n{res.text}"
    first, _, rest = cut_middle(text).partition("\n")
    return Text.assemble((first, "bold"), "\n" if rest else "", (rest, "" if res.ok else "red"))


def _read_file(params: Any, res: ToolResult) -> RenderableType | None:
    rows = res.text.split("\n")
    numbered = list(itertools.takewhile(bool, map(_NUMBERED.match, rows)))
    if not res.ok or not numbered:
        return None
    shown = [m for m in numbered[:MAX_LINES] if m]
    code = "\n".join(m.group(2) for m in shown)
    left = len(numbered) - len(shown)
    after = ([f"… ({left} more lines)"] if left else []) + rows[len(numbered) :]
    start = int(shown[0].group(1))
    lines = syntax(code, _pick(params, "path"), start, numbers=True)
    return Group(lines, Text("\n".join(after), style="dim")) if after else lines


def _edit_file(params: Any, res: ToolResult) -> RenderableType | None:
    old, new = _pick(params, "old", "old_string"), _pick(params, "new", "new_string")
    if not isinstance(old, str) or not isinstance(new, str):
        return None
    styles = {"-": "red", "+": "green", " ": "dim"}
    lines = diff_lines(inert(old), inert(new))
    shown = [Text(f"{op} {line}", style=styles[op]) for op, line in lines[: MAX_LINES * 2]]
    if len(lines) > len(shown):
        shown.append(Text(f"… ({len(lines) - len(shown)} more lines)", style="dim"))
    return Group(*shown, _result(res))


def _write_file(params: Any, res: ToolResult) -> RenderableType | None:
    content = _pick(params, "content")
    if not isinstance(content, str):
        return None
    shown = cut(inert(content.rstrip("\n")))
    return Group(syntax(shown, _pick(params, "path")), _result(res))


#: Bodies by tool name; `None` falls back to parameters and result.
BODIES: dict[str, Callable[[Any, ToolResult], RenderableType | None]] = {
    "run_command": _run_command,
    "read_file": _read_file,
    "edit_file": _edit_file,
    "write_file": _write_file,
}


def chip(res: ToolResult, approval: Any = None) -> Text:
    """`exit N`, `done`, `error` or `refused`, coloured, and who answered when it was asked."""
    label = f"exit {res.exit}" if res.exit is not None else "done" if res.ok else "error"
    if res.refused:
        label = "refused"
    decision = _pick(approval, "decision")
    if isinstance(decision, str):
        verb = {"allow": "allowed", "deny": "denied", "allow-session": "allowed for session"}
        who = _pick(approval, "by")
        label = f"{verb.get(decision, inert(decision))}{f' by {inert(str(who))}' if who else ''} · {label}"
    return Text(f" {label} ", style="bold green" if res.ok else "bold red")


def tool_title(name: str, args: Any, server: str | None = None) -> Text:
    """`⚙ name  hint`, with the MCP server of an MCP tool."""
    hint = brief(args)
    return Text.assemble(
        ("⚙ " + inert(name), "bold cyan"),
        (f" ({inert(server)})" if server else "", "cyan"),
        (f"  {hint}" if hint else "", ""),
    )


def tool_panel(name: str, params: str, response: str, approval: Any = None) -> Panel:
    """A finished tool call as a panel: name and hint, body, and its chip."""
    args = parse_json(params)
    res = read_result(response)
    shape = BODIES.get(name)
    body = shape(args, res) if shape is not None else None
    if body is None:
        body = Group(Text(cut(inert(pretty(args)), 8), style="cyan"), _result(res))
    return Panel(
        body,
        title=tool_title(name, args, res.server),
        title_align="left",
        subtitle=chip(res, approval),
        subtitle_align="right",
        border_style="cyan" if res.ok else "red",
    )
