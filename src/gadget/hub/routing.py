"""Who is where: drones and their locks, IDE connections, and the rooms events go to.

Pure in-memory state with no I/O; the socket handlers and services change it
and emit. A drone serves at most one chat session (its lock); every IDE socket
that locked that session sits in the session's room and gets its stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gadget.hub.views import chat_session_json, drone_json, project_json
from gadget.protocol import WorkspaceMode
from gadget.store.tables import ChatSession, DroneRegistration, Project


def session_room(chat_session_id: str) -> str:
    """The room of every IDE socket showing this chat session."""
    return f"session:{chat_session_id}"


def user_room(user_id: str) -> str:
    """The room of every IDE socket of this user (drone list updates)."""
    return f"user:{user_id}"


@dataclass
class Lock:
    """A drone locked for one chat session of one user."""

    chat_session_id: str
    user_id: str
    username: str
    #: The objects sent with each processWorkOrder: registration, project, chat session.
    registration: dict[str, Any]
    project: dict[str, Any]
    chat_session: dict[str, Any]

    @classmethod
    def of(
        cls,
        chat: ChatSession,
        user_id: str,
        username: str,
        drone: DroneRegistration,
        project: Project,
    ) -> Lock:
        """A lock of `drone` for `chat`, carrying the objects work orders are sent with."""
        return cls(
            chat.id,
            user_id,
            username,
            registration=drone_json(drone),
            project=project_json(project),
            chat_session=chat_session_json(chat),
        )

    @property
    def room(self) -> str:
        """The session room this lock's stream goes to."""
        return session_room(self.chat_session_id)


@dataclass
class DroneLink:
    """A registered drone as the hub currently knows it."""

    drone_id: str
    owner_id: str
    name: str
    sid: str | None = None
    workspace_mode: WorkspaceMode = WorkspaceMode.IDLE
    lock: Lock | None = None
    current_turn_id: str | None = None
    #: The model the drone said it uses at its last connect (name, baseUrl, reachable, error).
    model: dict[str, Any] | None = None
    #: The drone's sandbox for commands as it reported it ("bwrap" or "none"), if it did.
    sandbox: str | None = None
    #: When the drone last connected or disconnected (ISO 8601).
    last_seen: str | None = None
    #: Another process with this drone's id replaced it: {"hostname", "pid", "at"}.
    conflict: dict[str, Any] | None = None

    @property
    def online(self) -> bool:
        """Whether a socket of this drone is connected now."""
        return self.sid is not None

    def view(self) -> dict[str, Any]:
        """The live state the IDE's drone list shows (`droneState`, REST)."""
        locked_by = None
        if self.lock is not None:
            locked_by = {"_id": self.lock.user_id, "username": self.lock.username}
        return {
            "_id": self.drone_id,
            "online": self.online,
            "workspaceMode": self.workspace_mode.value,
            "lockedBy": locked_by,
            "chatSession": self.lock.chat_session_id if self.lock else None,
            "currentTurn": self.current_turn_id,
            "model": self.model,
            "sandbox": self.sandbox,
            "lastSeen": self.last_seen,
            "conflict": self.conflict,
        }


@dataclass
class IdeLink:
    """One IDE socket: its user and the drone/session it locked, if any."""

    sid: str
    user_id: str
    username: str
    drone_id: str | None = None
    chat_session_id: str | None = None


@dataclass
class Router:
    """The hub's index of drones and IDE sockets."""

    drones: dict[str, DroneLink] = field(default_factory=dict)
    drone_sids: dict[str, DroneLink] = field(default_factory=dict)
    ides: dict[str, IdeLink] = field(default_factory=dict)

    def drone(self, drone_id: str, owner_id: str, name: str) -> DroneLink:
        """The link of a drone, created on first sight."""
        link = self.drones.get(drone_id)
        if link is None:
            link = self.drones[drone_id] = DroneLink(drone_id, owner_id, name)
        return link

    def attach_drone(self, link: DroneLink, sid: str) -> str | None:
        """Bind a new socket to a drone; returns the socket it replaces, if any."""
        old = link.sid
        if old is not None:
            self.drone_sids.pop(old, None)
        link.sid = sid
        self.drone_sids[sid] = link
        return old

    def detach_drone(self, sid: str) -> DroneLink | None:
        """Forget a drone socket; the link (lock, turn) stays for the grace period."""
        link = self.drone_sids.pop(sid, None)
        if link is not None and link.sid == sid:
            link.sid = None
        return link

    def ides_of_session(self, chat_session_id: str, user_id: str | None = None) -> list[IdeLink]:
        """IDE sockets showing a chat session (optionally only those of one user)."""
        return [
            i
            for i in self.ides.values()
            if i.chat_session_id == chat_session_id and (user_id is None or i.user_id == user_id)
        ]
