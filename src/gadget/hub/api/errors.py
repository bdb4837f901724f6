"""The one place where hub errors become HTTP responses."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from gadget.hub.exceptions import AuthError, HubError, RateLimited

logger = logging.getLogger(__name__)


async def _hub_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HubError)
    logger.info("%s %s -> %d: %s", request.method, request.url.path, exc.status_code, exc)
    headers: dict[str, str] | None = None
    if isinstance(exc, AuthError):
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after_s)}
    return JSONResponse({"detail": str(exc)}, status_code=exc.status_code, headers=headers)


def install(app: FastAPI) -> None:
    """Map every HubError to `{"detail": message}` with its status code."""
    app.add_exception_handler(HubError, _hub_error)
