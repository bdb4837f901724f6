"""Errors of the hub, mapped to replies in one place each (REST: api/errors.py, sockets: sockets/base.py).

HubError
├── AuthError          bad or missing credentials (401, connect refused)
├── Forbidden          authenticated but not allowed (403)
├── NotFound           unknown id, or another user's (404)
├── Conflict           the request clashes with the current state (409)
├── RateLimited        too many attempts; retry after some seconds (429)
├── Refused            a socket request the current state refuses (lock held, busy, offline)
│   └── Resend         a stream event not applied now: the drone resends from `expected`
├── Unavailable        the database cannot be reached now (503); nothing was changed
├── AddressInUse       the hub's host and port are taken by another process (at start)
└── Misconfigured      settings the hub cannot run with (Redis with SQLite) (at start)
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


class Misconfigured(HubError):
    """Settings the hub refuses to start with; the message says which and how to fix them."""

    status_code = 500


class Unavailable(HubError):
    """The database cannot be reached now; the request changed nothing and may be retried."""

    status_code = 503


class Resend(Refused):
    """A stream event that is not applied now; the drone resends from `expected`.

    `code` is "gap" (its seq is not the next one) or "full" (the hub holds too much not
    yet stored); the `error` reply carries code, turnId and expected.
    """

    def __init__(self, message: str, code: str, turn_id: str, expected: int) -> None:
        super().__init__(message)
        self.code, self.turn_id, self.expected = code, turn_id, expected
