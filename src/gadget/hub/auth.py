"""Credentials: password hashing (argon2), JWTs for IDEs, keys for drones."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gadget.hub.exceptions import AuthError

_ALGORITHM = "HS256"


class Auth:
    """Issues and checks every credential of the hub."""

    def __init__(self, secret_key: str, token_ttl_s: int) -> None:
        self._secret = secret_key
        self._ttl = timedelta(seconds=token_ttl_s)
        self._hasher = PasswordHasher()

    def hash_password(self, password: str) -> str:
        """An argon2 hash of `password`."""
        return self._hasher.hash(password)

    def check_password(self, password_hash: str, password: str) -> bool:
        """Whether `password` matches `password_hash`."""
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

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
