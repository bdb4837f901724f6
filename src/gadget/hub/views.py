"""Stored rows as wire JSON (`_id`, camelCase), shared by REST and sockets."""

from __future__ import annotations

from typing import Any

from gadget.store.tables import ChatSession, DroneRegistration, Project, User


def user_json(user: User) -> dict[str, Any]:
    """A user as the wire shows it (never the password hash)."""
    return {"_id": user.id, "username": user.username}


def project_json(project: Project) -> dict[str, Any]:
    """A project as JSON."""
    return {
        "_id": project.id,
        "name": project.name,
        "description": project.description,
        "user": project.owner_id,
        "createdAt": project.created_at.isoformat(),
    }


def drone_json(drone: DroneRegistration) -> dict[str, Any]:
    """A drone registration as JSON (never the key hash)."""
    return {
        "_id": drone.id,
        "name": drone.name,
        "hostname": drone.hostname,
        "user": drone.owner_id,
        "createdAt": drone.created_at.isoformat(),
        "lastSeen": drone.last_seen.isoformat() if drone.last_seen else None,
    }


def chat_session_json(chat_session: ChatSession) -> dict[str, Any]:
    """A chat session as JSON."""
    return {
        "_id": chat_session.id,
        "user": chat_session.user_id,
        "project": chat_session.project_id,
        "drone": chat_session.drone_id,
        "title": chat_session.title,
        "createdAt": chat_session.created_at.isoformat(),
        "permissionMode": chat_session.permission_mode,
        "model": chat_session.model,
    }
