"""A turn's changes to the workspace: the summary at its end, `/diff`, and `/undo`'s outcome.

The drone checkpoints the workspace around each turn and reports, before the
turn ends, every file it changed (by the file tools or by commands):
`turnChanges(turnId, [{"path", "status", "additions", "deletions", "diff"?}])`,
kept as the turn's `changes`. `/undo` sends `revertTurn(turnId)`: the drone
restores the files (a file changed since is left alone and listed as a conflict);
the same again re-applies the turn.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text

from gadget.ide.terminal.markdown import inert
from gadget.protocol import FileChange, RevertOutcome

#: Lines of one file's diff shown when every file of the turn is shown.
DIFF_LINES = 60
_MARK = {"added": ("A", "green"), "modified": ("M", "yellow"), "deleted": ("D", "red")}


def _counts(change: FileChange) -> Text:
    return Text.assemble(
        (f"+{change.additions}", "green") if change.additions else "",
        " " if change.additions and change.deletions else "",
        (f"-{change.deletions}", "red") if change.deletions else "",
    )


def file_line(change: FileChange, number: int | None = None) -> Text:
    """`2) M calc.py  +1 -1`."""
    mark, style = _MARK.get(change.status, ("?", "dim"))
    head = f"{number}) " if number is not None else ""
    return Text.assemble(
        (head, "bold"), (mark, f"bold {style}"), f" {inert(change.path)}  ", _counts(change)
    )


def summary(changes: list[FileChange]) -> Text:
    """The line after a turn that changed files: `changed 2 files: M calc.py +1 -1, A t.py +4`."""
    files = "file" if len(changes) == 1 else "files"
    parts: list[Text | str] = [Text(f"· changed {len(changes)} {files}: ", style="dim")]
    for n, change in enumerate(changes[:8]):
        parts += [", " if n else "", file_line(change)]
    if len(changes) > 8:
        parts.append(Text(f", … {len(changes) - 8} more", style="dim"))
    parts.append(Text("  (/diff, /undo)", style="dim"))
    return Text.assemble(*parts)


def diff_text(diff: str, limit: int | None = DIFF_LINES) -> Text:
    """A unified diff coloured: headers bold, hunks cyan, additions green, deletions red."""
    rows = inert(diff.rstrip("\n")).split("\n")
    shown = rows if limit is None else rows[:limit]
    out = Text()
    for row in shown:
        if row.startswith(("+++", "---", "diff ", "index ")):
            style = "bold"
        elif row.startswith("@@"):
            style = "cyan"
        elif row.startswith("+"):
            style = "green"
        elif row.startswith("-"):
            style = "red"
        else:
            style = "dim"
        out.append(row + "\n", style=style)
    if len(rows) > len(shown):
        out.append(f"… ({len(rows) - len(shown)} more lines: /diff N shows file N whole)\n", "dim")
    return out


def diffs(prompt: str, changes: list[FileChange], only: int | None = None) -> RenderableType:
    """`/diff`: the turn's files, numbered, each with its diff (`only`: file number `only`, whole)."""
    picked = list(enumerate(changes, 1))
    if only is not None:
        picked = [picked[only - 1]]
    files = "file" if len(changes) == 1 else "files"
    parts: list[RenderableType] = [
        Text.assemble(
            ("changes of the turn ", "bold"), (f"> {inert(prompt[:80])}", "bold green"),
            (f" ({len(changes)} {files})", "dim"),
        )
    ]  # fmt: skip
    for number, change in picked:
        parts.append(file_line(change, number))
        if change.diff:
            parts.append(diff_text(change.diff, None if only is not None else DIFF_LINES))
        else:
            parts.append(Text("  (no diff: a binary file, or too large)\n", style="dim"))
    return Group(*parts)


def reverted(what: str, outcome: RevertOutcome, undo: bool | None = True) -> Text:
    """What an undo (`undo`), a re-apply (not `undo`) or another IDE's (None) did.

    An undo is partial: the files changed since are left and listed, the rest is
    restored. A re-apply is all or nothing: with a conflict, nothing is re-applied.
    """
    what = inert(what)
    count = len(outcome.restored)
    restored = f": {count} file{'s' if count != 1 else ''} restored" if count else ""
    if undo is None:
        state = "undone" if outcome.reverted else "applied again"
        line = Text(f"· {what} is {state} (from another IDE)", style="dim")
    elif undo and outcome.reverted:
        line = Text(f"↶ undid {what}{restored}", style="bold green")
    elif undo:
        line = Text(f"✗ nothing undone: every file of {what} changed since", style="bold yellow")
    elif not outcome.reverted:
        line = Text(f"↷ re-applied {what}{restored}", style="bold green")
    else:
        line = Text(f"✗ {what} not re-applied (all or nothing): still undone", style="bold yellow")
    for conflict in outcome.conflicts:
        line.append(
            f"\n  ⚠ {inert(conflict.path)} left as it is: {inert(conflict.reason)}", style="yellow"
        )
    return line
