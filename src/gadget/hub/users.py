"""Creating users (REST signup and `gadget user add`)."""

from __future__ import annotations

import re

from sqlalchemy.exc import IntegrityError

from gadget.hub.auth import Auth
from gadget.hub.exceptions import Conflict, HubError
from gadget.store.repository import Store
from gadget.store.tables import User

_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class Users:
    """User accounts."""

    def __init__(self, store: Store, auth: Auth) -> None:
        self._store = store
        self._auth = auth

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
        try:
            return await self._store.create_user(username, self._auth.hash_password(password))
        except IntegrityError:
            raise Conflict(f"username {username!r} is taken") from None
