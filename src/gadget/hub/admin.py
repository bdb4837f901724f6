"""Administrative actions run outside a serving hub (`gadget user add`)."""

from __future__ import annotations

from gadget.config import Settings
from gadget.hub.auth import Auth
from gadget.hub.users import Users
from gadget.store.database import make_engine, migrate
from gadget.store.repository import Store


async def add_user(settings: Settings, username: str, password: str) -> str:
    """Create a user in the configured database (migrating it first); returns its id."""
    url = settings.resolved_database_url()
    await migrate(url)
    store = Store(make_engine(url))
    try:
        auth = Auth(settings.resolved_secret_key(), settings.token_ttl_s)
        user = await Users(store, auth).create(username, password)
        return user.id
    finally:
        await store.close()
