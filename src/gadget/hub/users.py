"""User accounts: creating them (REST signup and `gadget user add`) and logging in."""

from __future__ import annotations

import re

from sqlalchemy.exc import IntegrityError

from gadget.hub.auth import Auth
from gadget.hub.exceptions import AuthError, Conflict, HubError
from gadget.hub.limits import LoginThrottle
from gadget.store.repository import Store
from gadget.store.tables import User

_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class Users:
    """User accounts."""

    def __init__(self, store: Store, auth: Auth, throttle: LoginThrottle) -> None:
        self._store = store
        self._auth = auth
        self._throttle = throttle

    async def create(self, username: str, password: str) -> User:
        """Create a user with an argon2-hashed password.

        Raises:
            HubError: a malformed username or an empty password.
            Conflict: the username is taken.
        """
        if not _NAME.match(username):
            raise HubError(f"username {username!r}: expected 1-64 of A-Z a-z 0-9 _ . @ -")
        if not password:
            raise HubError("password: expected a non-empty password")
        if await self._store.user_by_name(username) is not None:
            raise Conflict(f"username {username!r} is taken")
        password_hash = await self._auth.hash_password(password)
        try:
            return await self._store.create_user(username, password_hash)
        except IntegrityError:
            raise Conflict(f"username {username!r} is taken") from None

    async def login(self, username: str, password: str, address: str | None) -> User:
        """The user `username` if `password` is theirs, within the failed-login limits.

        Args:
            address: the client's address (a proxy's `X-Forwarded-For` when trusted).

        Raises:
            RateLimited: too many failed logins for this username or from this address.
            AuthError: no such user, or the wrong password.
        """
        await self._throttle.attempt(username, address)
        user = await self._store.user_by_name(username)
        ok = await self._auth.check_password(user.password_hash if user else None, password)
        if user is None or not ok:
            raise AuthError("wrong username or password")
        await self._throttle.succeeded(username, address)
        return user

    async def close(self) -> None:
        """Release the throttle's backend."""
        await self._throttle.close()
