"""POST /api/auth/register, /api/auth/login; GET /api/auth/me."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, status
from pydantic import BaseModel, StringConstraints

from gadget.hub.api.deps import HubDep, UserDep
from gadget.hub.exceptions import AuthError, Forbidden
from gadget.hub.views import user_json

router = APIRouter(prefix="/api/auth", tags=["auth"])

Username = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
]
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class Credentials(BaseModel):
    """A username and a password."""

    username: Username
    password: Password


@router.post("/register", status_code=status.HTTP_201_CREATED)
async def register(body: Credentials, hub: HubDep) -> dict[str, Any]:
    """Create a user (only when signup is open or no user exists yet) and log it in."""
    if not hub.settings.allow_signup and await hub.store.count_users() > 0:
        raise Forbidden("signup is closed: ask an admin (`gadget user add NAME`)")
    user = await hub.users.create(body.username, body.password)
    return {"token": hub.auth.issue_token(user.id), "user": user_json(user)}


@router.post("/login")
async def login(body: Credentials, hub: HubDep) -> dict[str, Any]:
    """Exchange a username and password for a token."""
    user = await hub.store.user_by_name(body.username)
    if user is None or not hub.auth.check_password(user.password_hash, body.password):
        raise AuthError("wrong username or password")
    return {"token": hub.auth.issue_token(user.id), "user": user_json(user)}


@router.get("/me")
async def me(user: UserDep) -> dict[str, Any]:
    """The logged-in user."""
    return user_json(user)
