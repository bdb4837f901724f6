"""Errors of the hub, mapped to replies in one place each (REST: api/errors.py, sockets: sockets/base.py).

HubError
├── AuthError          bad or missing credentials (401, connect refused)
├── Forbidden          authenticated but not allowed (403)
├── NotFound           unknown id, or another user's (404)
├── Conflict           the request clashes with the current state (409)
├── RateLimited        too many attempts; retry after some seconds (429)
├── Refused            a socket request the current state refuses (lock held, busy, offline)
└── AddressInUse       the hub's host and port are taken by another process (at start)
"""

from __future__ import annotations


class HubError(Exception):
    """Root of the hub's errors; the message is safe to show to the caller."""

    status_code = 400


class AuthError(HubError):
    """Missing, malformed or wrong credentials."""

    status_code = 401


class Forbidden(HubError):
    """The caller is known but may not do this."""

    status_code = 403


class NotFound(HubError):
    """No such object for this caller (another user's objects are not found either)."""

    status_code = 404


class Conflict(HubError):
    """The request clashes with what exists (a taken username)."""

    status_code = 409


class RateLimited(HubError):
    """Too many attempts of one kind (failed logins); `retry_after_s` says when to try again."""

    status_code = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Refused(HubError):
    """A socket request the hub's current state refuses (lock held elsewhere, drone busy)."""

    status_code = 409


class AddressInUse(HubError):
    """The hub cannot listen: another process holds its host and port."""

    status_code = 500
