"""Request dependencies: the hub's services and the authenticated user."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gadget.hub.exceptions import AuthError
from gadget.store.tables import User

if TYPE_CHECKING:
    from gadget.hub.app import Hub

_bearer = HTTPBearer(auto_error=False)


def get_hub(request: Request) -> Hub:
    """The hub whose app serves this request."""
    hub: Hub = request.app.state.hub
    return hub


HubDep = Annotated["Hub", Depends(get_hub)]


async def current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    """The user named by the `Authorization: Bearer <JWT>` header.

    Raises:
        AuthError: no header, a bad token, or a user that no longer exists.
    """
    if credentials is None:
        raise AuthError("expected an Authorization: Bearer <token> header (log in first)")
    hub = get_hub(request)
    user = await hub.store.get_user(hub.auth.user_id_from_token(credentials.credentials))
    if user is None:
        raise AuthError("unknown user: log in again")
    return user


UserDep = Annotated[User, Depends(current_user)]
