"""The IDE sockets connected to this node: who each is, and which session it shows."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class IdeLink:
    """One IDE socket: its user and the drone/session it locked, if any."""

    sid: str
    user_id: str
    username: str
    drone_id: str | None = None
    chat_session_id: str | None = None


class Ides:
    """Index of this node's IDE sockets by sid."""

    def __init__(self) -> None:
        self._links: dict[str, IdeLink] = {}

    def __contains__(self, sid: object) -> bool:
        return sid in self._links

    def __len__(self) -> int:
        return len(self._links)

    def sids(self) -> list[str]:
        """Every IDE socket connected here."""
        return list(self._links)

    def add(self, link: IdeLink) -> None:
        """A new IDE socket."""
        self._links[link.sid] = link

    def get(self, sid: str) -> IdeLink | None:
        """The IDE socket `sid`, if it is connected here."""
        return self._links.get(sid)

    def pop(self, sid: str) -> IdeLink | None:
        """Forget a disconnected socket."""
        return self._links.pop(sid, None)

    def of_user(self, user_id: str) -> int:
        """How many IDE sockets of `user_id` are connected here."""
        return sum(1 for link in self._links.values() if link.user_id == user_id)

    def showing_drone(self, drone_id: str) -> list[IdeLink]:
        """This node's IDE sockets holding (or showing) a drone's lock."""
        return [i for i in self._links.values() if i.drone_id == drone_id]

    def showing(self, chat_session_id: str) -> list[IdeLink]:
        """This node's IDE sockets showing a chat session."""
        return [i for i in self._links.values() if i.chat_session_id == chat_session_id]
