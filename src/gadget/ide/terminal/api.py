"""The hub's REST API as the terminal IDE uses it (Bearer token)."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

from gadget.ide.terminal.exceptions import HubRefused, HubUnreachable, LoginFailed

Json = dict[str, Any]


class HubApi:
    """An HTTP client of one hub; every failure becomes a `TerminalError`."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 15) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout)

    async def __aenter__(self) -> HubApi:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            r = await self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise HubUnreachable(
                f"cannot reach the hub at {self.url} ({type(exc).__name__}: {exc or 'no answer'});"
                " is `gadget hub` running? Pass --hub URL or set GADGET_HUB_URL."
            ) from None
        if r.status_code == 401:
            raise LoginFailed(f"the hub refused the credentials: {_detail(r)}")
        if r.status_code >= 400:
            raise HubRefused(f"{method} {path}: {r.status_code} {_detail(r)}")
        return r.json()

    async def login(self, username: str, password: str) -> str:
        """Log in; remembers and returns the token."""
        body = await self._request(
            "POST", "/api/auth/login", json={"username": username, "password": password}
        )
        self.token = str(body["token"])
        return self.token

    async def me(self) -> Json:
        """The logged-in user (a `LoginFailed` without a valid token)."""
        return dict(await self._request("GET", "/api/auth/me"))

    async def drones(self) -> list[Json]:
        """The user's drones with their live state."""
        return list(await self._request("GET", "/api/drones"))

    async def projects(self) -> list[Json]:
        """The user's projects, oldest first."""
        return list(await self._request("GET", "/api/projects"))

    async def create_project(self, name: str) -> Json:
        """Create a project named `name`."""
        return dict(await self._request("POST", "/api/projects", json={"name": name}))

    async def chat_sessions(self, project_id: str) -> list[Json]:
        """The chat sessions of a project, newest first."""
        return list(
            await self._request("GET", "/api/chat-sessions", params={"project": project_id})
        )

    async def turns(self, chat_session_id: str) -> list[Json]:
        """Every turn of a chat session, oldest first."""
        return list(await self._request("GET", f"/api/chat-sessions/{chat_session_id}/turns"))

    async def turn(self, turn_id: str) -> Json:
        """One turn, as far as it got (the hub's live mirror while it runs)."""
        return dict(await self._request("GET", f"/api/turns/{turn_id}"))


def _detail(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:200] or r.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return str(body)[:200]
