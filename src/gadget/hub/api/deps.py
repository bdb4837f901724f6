"""Request dependencies: the hub's services and the authenticated user."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gadget.hub.exceptions import AuthError, HubError
from gadget.store.tables import User

if TYPE_CHECKING:
    from gadget.hub.app import Hub

_bearer = HTTPBearer(auto_error=False)


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


async def get_hub(request: Request) -> Hub:
    """The hub whose app serves this request (async: FastAPI runs a sync one in a thread)."""
    return _hub(request)


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
    hub = _hub(request)
    user = await hub.store.get_user(hub.auth.user_id_from_token(credentials.credentials))
    if user is None:
        raise AuthError("unknown user: log in again")
    return user


UserDep = Annotated[User, Depends(current_user)]


def _query_names(dependant: Any) -> set[str]:
    """The query parameters a route (and its dependencies) declares."""
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def known_query(request: Request) -> None:
    """Refuse a query parameter the route does not take (a typo would otherwise be ignored).

    Raises:
        HubError: an undeclared query parameter (400).
    """
    route = request.scope.get("route")
    allowed = _query_names(route.dependant) if route is not None else set()
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        expected = ", ".join(sorted(allowed)) or "none"
        raise HubError(f"unknown query parameter {unknown[0][:64]!r}: expected {expected}")


#: The routers' dependencies: every route refuses unknown query parameters.
QUERY_CHECK = [Depends(known_query)]
