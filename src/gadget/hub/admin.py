"""Administrative actions run outside a serving hub (`gadget user …`, `gadget up --forget-drone`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from gadget.config import Settings
from gadget.hub.auth import Auth
from gadget.hub.exceptions import HubError, NotFound
from gadget.hub.limits import MemoryThrottle
from gadget.hub.users import Users
from gadget.store.repository import Store, open_store
from gadget.store.tables import User


@dataclass(frozen=True)
class UserInfo:
    """What `gadget user list` shows of a user."""

    id: str
    username: str
    created_at: datetime


@asynccontextmanager
async def _store(settings: Settings) -> AsyncIterator[Store]:
    """The configured database, migrated to the newest schema, closed at the end."""
    async with open_store(settings.resolved_database_url()) as store:
        yield store


@asynccontextmanager
async def _auth(settings: Settings) -> AsyncIterator[Auth]:
    """The hub's credentials, with password threads of their own (stopped at the end)."""
    auth = Auth(settings.resolved_secret_key(), settings.token_ttl_s, settings.password_workers)
    try:
        yield auth
    finally:
        auth.close()


async def _user(store: Store, username: str) -> User:
    user = await store.user_by_name(username)
    if user is None:
        raise NotFound(f"no user named {username!r} (see `gadget user list`)")
    return user


async def add_user(settings: Settings, username: str, password: str) -> str:
    """Create a user in the configured database (migrating it first); returns its id."""
    async with _store(settings) as store, _auth(settings) as auth:
        # Creating a user counts no logins: a throttle in memory, never shared.
        throttle = MemoryThrottle(1, 1, settings.login_window_s)
        user = await Users(store, auth, throttle).create(username, password)
        return user.id


async def list_users(settings: Settings) -> list[UserInfo]:
    """Every user of the configured database, by name."""
    async with _store(settings) as store:
        return [UserInfo(u.id, u.username, u.created_at) for u in await store.list_users()]


async def set_password(settings: Settings, username: str, password: str) -> None:
    """Give `username` a new password.

    Raises:
        NotFound: no such user.
        HubError: an empty password.
    """
    if not password:
        raise HubError("password: expected a non-empty password")
    async with _store(settings) as store, _auth(settings) as auth:
        user = await _user(store, username)
        password_hash = await auth.hash_password(password)  # in a password thread
        await store.set_password_hash(user.id, password_hash)


async def remove_user(settings: Settings, username: str) -> None:
    """Delete `username` with their projects, drones, chat sessions and turns.

    Raises:
        NotFound: no such user.
    """
    async with _store(settings) as store:
        user = await _user(store, username)
        await store.delete_user(user.id)


async def remove_drone(settings: Settings, drone_id: str) -> bool:
    """Delete a drone registration (its key stops working); whether it existed."""
    async with _store(settings) as store:
        if await store.get_drone(drone_id) is None:
            return False
        await store.delete_drone(drone_id)
        return True
