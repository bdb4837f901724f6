"""The IDE sockets connected to this node: who each is, and which session it shows."""

from __future__ import annotations

from dataclasses import dataclass

from gadget.hub.exceptions import AuthError
from gadget.hub.sockets.rate import Bucket


@dataclass
class IdeLink:
    """One IDE socket: its user and the drone/session it locked, if any."""

    sid: str
    user_id: str
    username: str
    drone_id: str | None = None
    chat_session_id: str | None = None
    #: Its event rate (sockets/base.py creates it at its first event).
    bucket: Bucket | None = None


class Ides:
    """Index of this node's IDE sockets by sid."""

    def __init__(self, max_per_user: int = 2_000) -> None:
        self._links: dict[str, IdeLink] = {}
        self._per_user: dict[str, int] = {}
        self._max_per_user = max_per_user

    def __contains__(self, sid: object) -> bool:
        return sid in self._links

    def __len__(self) -> int:
        return len(self._links)

    def sids(self) -> list[str]:
        """Every IDE socket connected here."""
        return list(self._links)

    def add(self, link: IdeLink) -> None:
        """A new IDE socket.

        Raises:
            AuthError: its user has as many IDE sockets connected here as allowed.
        """
        count = self._per_user.get(link.user_id, 0)
        if count >= self._max_per_user:
            raise AuthError(
                f"{link.username} has {count} IDE connections to this hub already, the most "
                "allowed: close some tabs or terminals"
            )
        self._per_user[link.user_id] = count + 1
        self._links[link.sid] = link

    def get(self, sid: str) -> IdeLink | None:
        """The IDE socket `sid`, if it is connected here."""
        return self._links.get(sid)

    def pop(self, sid: str) -> IdeLink | None:
        """Forget a disconnected socket."""
        link = self._links.pop(sid, None)
        if link is not None:
            left = self._per_user[link.user_id] - 1
            if left:
                self._per_user[link.user_id] = left
            else:
                del self._per_user[link.user_id]
        return link

    def of_user(self, user_id: str) -> int:
        """How many IDE sockets of `user_id` are connected here."""
        return self._per_user.get(user_id, 0)

    def showing_drone(self, drone_id: str) -> list[IdeLink]:
        """This node's IDE sockets holding (or showing) a drone's lock."""
        return [i for i in self._links.values() if i.drone_id == drone_id]

    def showing(self, chat_session_id: str) -> list[IdeLink]:
        """This node's IDE sockets showing a chat session."""
        return [i for i in self._links.values() if i.chat_session_id == chat_session_id]
