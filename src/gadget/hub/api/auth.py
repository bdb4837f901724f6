"""POST /api/auth/register, /api/auth/login; GET /api/auth/me."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, StringConstraints

from gadget.hub.api.deps import QUERY_CHECK, HubDep, UserDep
from gadget.hub.api.schemas import MAX_BODY, LoginOut, UserOut, refusals
from gadget.hub.exceptions import Forbidden
from gadget.hub.views import user_json

router = APIRouter(
    prefix="/api/auth", tags=["auth"], max_body_size=MAX_BODY, dependencies=QUERY_CHECK
)

Username = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
]
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class Credentials(BaseModel):
    """A username and a password."""

    username: Username
    password: Password


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=LoginOut,
    responses=refusals(403, 409, body=True),
)
async def register(body: Credentials, hub: HubDep) -> dict[str, Any]:
    """Create a user (only when signup is open or no user exists yet) and log it in."""
    if not hub.settings.allow_signup and await hub.store.count_users() > 0:
        raise Forbidden("signup is closed: ask an admin (`gadget user add NAME`)")
    user = await hub.users.create(body.username, body.password)
    return {"token": hub.auth.issue_token(user.id), "user": user_json(user)}


@router.post("/login", response_model=LoginOut, responses=refusals(401, 429, body=True))
async def login(body: Credentials, request: Request, hub: HubDep) -> dict[str, Any]:
    """Exchange a username and password for a token (429 after too many failures)."""
    address = request.client.host if request.client else None
    user = await hub.users.login(body.username, body.password, address)
    return {"token": hub.auth.issue_token(user.id), "user": user_json(user)}


@router.get("/me", response_model=UserOut, responses=refusals(401))
async def me(user: UserDep) -> dict[str, Any]:
    """The logged-in user."""
    return user_json(user)
