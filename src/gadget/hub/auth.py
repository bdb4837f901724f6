"""Credentials: password hashing (argon2), JWTs for IDEs, keys for drones.

argon2 costs tens of ms of CPU per hash (4 lanes, 64 MiB): it runs in a small pool
of its own threads, never on the event loop, and on Linux those threads run at a
lower scheduling priority, so a storm of logins queues behind the streams instead
of competing with them (docs/security.md, bench/login_storm).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gadget.hub.exceptions import AuthError

_T = TypeVar("_T")

_ALGORITHM = "HS256"
#: Niceness of the password threads: the lowest. At nice 10 a storm of logins still took
#: the loop's CPU in slices of milliseconds (stream p99 x3 in bench/login_storm); at 19
#: the stream does not notice. SCHED_IDLE measured the same but can starve logins for
#: minutes on a machine busy with other work (a build in `gadget up`'s drone).
_PASSWORD_NICENESS = 19


def _lower_priority() -> None:
    """Run this pool thread (and the argon2 lane threads it starts) at a lower priority."""
    # Linux only: there setpriority() on a thread id affects that thread alone;
    # elsewhere the same call would renice the whole process (or another one).
    if sys.platform == "linux":
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _PASSWORD_NICENESS)


class Auth:
    """Issues and checks every credential of the hub."""

    def __init__(self, secret_key: str, token_ttl_s: int, password_workers: int = 2) -> None:
        self._secret = secret_key
        self._ttl = timedelta(seconds=token_ttl_s)
        self._hasher = PasswordHasher()
        self._workers = password_workers
        self._pool: ThreadPoolExecutor | None = None
        #: A hash of no one's password, checked for unknown usernames (same cost as a user's).
        self._decoy: str | None = None

    async def _in_pool(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._pool is None:  # created on first use: nothing starts in __init__
            self._pool = ThreadPoolExecutor(
                self._workers, thread_name_prefix="argon2", initializer=_lower_priority
            )
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def hash_password(self, password: str) -> str:
        """An argon2 hash of `password` (computed in a password thread)."""
        return await self._in_pool(self._hasher.hash, password)

    async def check_password(self, password_hash: str | None, password: str) -> bool:
        """Whether `password` matches `password_hash` (checked in a password thread).

        With no hash (an unknown username) a decoy hash is checked instead, so the
        answer takes as long as for a real user and does not tell which names exist.
        """
        if password_hash is None:
            if self._decoy is None:
                self._decoy = await self.hash_password(secrets.token_urlsafe(16))
            await self._in_pool(self._verify, self._decoy, password)
            return False
        return await self._in_pool(self._verify, password_hash, password)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def close(self) -> None:
        """Stop the password threads (checks still queued are cancelled)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def issue_token(self, user_id: str) -> str:
        """A signed JWT naming `user_id`, valid for the configured lifetime."""
        now = datetime.now(UTC)
        claims = {"sub": user_id, "iat": now, "exp": now + self._ttl}
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def user_id_from_token(self, token: object) -> str:
        """The user id a valid token names.

        Raises:
            AuthError: the token is missing, malformed, expired or not ours.
        """
        if not isinstance(token, str) or not token:
            raise AuthError("expected a JWT in auth.token (log in first)")
        try:
            claims = jwt.decode(token, self._secret, algorithms=[_ALGORITHM])
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired: log in again") from None
        except jwt.PyJWTError:
            raise AuthError("invalid token: log in again") from None
        sub = claims.get("sub")
        if not isinstance(sub, str):
            raise AuthError("invalid token: no subject")
        return sub

    @staticmethod
    def new_drone_key() -> tuple[str, str]:
        """A fresh drone key and the hash to store (the key itself is shown once)."""
        key = "gdk_" + secrets.token_urlsafe(32)
        return key, Auth.hash_drone_key(key)

    @staticmethod
    def hash_drone_key(key: str) -> str:
        """The stored form of a drone key.

        Keys are 256 random bits, so a fast hash is safe here (unlike passwords),
        and drone reconnects stay cheap.
        """
        return "sha256$" + hashlib.sha256(key.encode()).hexdigest()

    @staticmethod
    def check_drone_key(key_hash: str, key: object) -> bool:
        """Whether `key` is the drone key stored as `key_hash` (constant time)."""
        if not isinstance(key, str):
            return False
        return hmac.compare_digest(key_hash, Auth.hash_drone_key(key))
