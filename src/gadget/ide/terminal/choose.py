"""Choose the drone, project and chat session: from flags when given, else numbered menus."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from gadget.ide.terminal.api import HubApi, Json
from gadget.ide.terminal.cli import NEW_SESSION
from gadget.ide.terminal.exceptions import NoChoice

#: Ask a question and answer the typed line (`None` at end of input).
Ask = Callable[[str], Awaitable[str | None]]


def match(items: list[Json], wanted: str) -> Json | None:
    """The item whose `_id`, else whose `name`, is `wanted`."""
    by_id = [i for i in items if i.get("_id") == wanted]
    by_name = [i for i in items if i.get("name") == wanted]
    found = by_id or by_name
    return found[0] if found else None


def seen(last_seen: object, now: datetime | None = None) -> str:
    """When an offline drone was last seen, as "seen 5 min ago" ("" when unknown)."""
    try:
        when = datetime.fromisoformat(str(last_seen))
    except ValueError:
        return ""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    minutes = int(((now or datetime.now(UTC)) - when).total_seconds() // 60)
    if minutes < 1:
        return "seen just now"
    if minutes < 60:
        return f"seen {minutes} min ago"
    if minutes < 48 * 60:
        return f"seen {minutes // 60} h ago"
    return f"seen {when.astimezone():%Y-%m-%d}"


def conflict_text(conflict: object) -> str:
    """The drone-id conflict the hub reports (another process took over), readably."""
    if isinstance(conflict, dict):
        where = [f"{k} {conflict[k]}" for k in ("hostname", "pid") if conflict.get(k)]
        since = (
            f", since {str(conflict['at'])[:19].replace('T', ' ')}" if conflict.get("at") else ""
        )
        return f"{', '.join(where) or 'another process'}{since}"
    return str(conflict)


def drone_label(drone: Json) -> str:
    """A drone's name with its state: online, mode, lock holder; offline since when."""
    if not drone.get("online"):
        since = seen(drone["lastSeen"]) if drone.get("lastSeen") else ""
        state = f"offline, {since}" if since else "offline"
    else:
        state = f"online, {drone.get('workspaceMode', '?')}"
        locked = drone.get("lockedBy")
        if isinstance(locked, dict):
            state += f", locked by {locked.get('username', '?')}"
    if drone.get("sandbox") == "none":
        state += ", no sandbox"
    if drone.get("conflict"):
        state += ", id conflict"
    servers = [m for m in drone.get("mcp") or [] if isinstance(m, dict)]
    if servers:
        broken = sum(1 for m in servers if m.get("ok") is False)
        state += f", {len(servers)} MCP server{'s' if len(servers) != 1 else ''}"
        state += f" ({broken} failed)" if broken else ""
    return f"{escape(drone['name'])}  [dim]({escape(state)})[/]"


def drone_warnings(drone: Json) -> list[str]:
    """What a user of `drone` must know before sending it work."""
    name = drone.get("name", "?")
    warnings = []
    if drone.get("sandbox") == "none":
        warnings.append(
            f"⚠ drone {name} runs the agent's commands without a sandbox: they can read and"
            " change anything its user can (see GADGET_SANDBOX)"
        )
    if drone.get("conflict"):
        warnings.append(
            f"⚠ drone {name}: another process took over its id ({conflict_text(drone['conflict'])})"
        )
    for server in drone.get("mcp") or []:
        if isinstance(server, dict) and server.get("ok") is False:
            warnings.append(
                f"⚠ drone {name}: MCP server {server.get('name', '?')} is not running:"
                f" {server.get('error') or 'no reason given'} (its tools are not offered)"
            )
    model = drone.get("model")
    if drone.get("online") and isinstance(model, dict) and model.get("reachable") is False:
        warnings.append(
            f"⚠ drone {name} cannot reach its model {model.get('name', '?')} at"
            f" {model.get('baseUrl', '?')}: {model.get('error') or 'no answer'}"
            " (set GADGET_LLM_BASE_URL / GADGET_LLM_MODEL on the drone)"
        )
    return warnings


def session_label(chat: Json) -> str:
    """A chat session's title and creation time."""
    title = chat.get("title") or "(untitled)"
    return f"{escape(title)}  [dim]{str(chat.get('createdAt', ''))[:16].replace('T', ' ')}[/]"


class Chooser:
    """Resolves the flags `--drone`, `--project`, `--session`, asking when one is missing."""

    def __init__(self, api: HubApi, console: Console, ask: Ask) -> None:
        self._api = api
        self._console = console
        self._ask = ask

    async def menu(self, title: str, labels: list[str], prompt: str) -> str:
        """Show numbered `labels` and ask; the answer is a number or free text."""
        self._console.print(Text(title, style="bold"))
        for n, label in enumerate(labels, 1):
            self._console.print(f"  [bold]{n}[/]) {label}", highlight=False)
        answer = await self._ask(prompt)
        if answer is None:
            raise NoChoice(f"no {title.lower().rstrip(':')} chosen (end of input)")
        return answer.strip()

    async def pick(self, title: str, labels: list[str], prompt: str, default: str = "") -> int:
        """The index of the chosen label, asking again until the answer is a valid number."""
        while True:
            answer = await self.menu(title, labels, prompt) or default
            if answer.isdigit() and 1 <= int(answer) <= len(labels):
                return int(answer) - 1
            self._console.print(
                Text(f"expected a number from 1 to {len(labels)}, got {answer!r}", style="red")
            )

    async def drone(self, wanted: str | None) -> Json:
        """The drone named or with id `wanted`, else the only one, else the chosen one."""
        drones = await self._api.drones()
        if not drones:
            raise NoChoice("you have no drones: register one with `gadget drone register`")
        if wanted:
            found = match(drones, wanted)
            if found is None:
                names = ", ".join(d["name"] for d in drones)
                raise NoChoice(f"no drone named or with id {wanted!r}; yours: {names}")
            return found
        if len(drones) == 1:
            return drones[0]
        labels = [drone_label(d) for d in drones]
        return drones[await self.pick("Drones:", labels, "drone number: ")]

    async def project(self, wanted: str | None) -> Json:
        """The project named or with id `wanted` (created when it is a new name), else chosen."""
        projects = await self._api.projects()
        if wanted:
            return match(projects, wanted) or await self._create(wanted)
        while True:
            labels = [escape(p["name"]) for p in projects]
            answer = await self.menu("Projects:", labels, "project number, or a new name: ")
            if answer.isdigit() and 1 <= int(answer) <= len(projects):
                return projects[int(answer) - 1]
            if answer and not answer.isdigit():
                return match(projects, answer) or await self._create(answer)
            self._console.print("[red]expected a project number or a new project's name[/]")

    async def _create(self, name: str) -> Json:
        project = await self._api.create_project(name)
        self._console.print(f"[dim]created project {name}[/]", highlight=False)
        return project

    async def session(self, project_id: str, wanted: str | None) -> str | None:
        """The chat session id to resume, or `None` for a new session."""
        if wanted:
            return None if wanted == NEW_SESSION else wanted
        chats = await self._api.chat_sessions(project_id)
        if not chats:
            return None
        labels = ["new session", *(session_label(c) for c in chats)]
        index = await self.pick("Chat sessions:", labels, "session number [1 = new]: ", "1")
        return None if index == 0 else str(chats[index - 1]["_id"])
