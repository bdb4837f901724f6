"""Logging of every Gadget process: text or JSON lines, carrying turn, drone and user ids.

Every entry point (hub, drone, `gadget up`, `gadget chat`) calls :func:`setup_logging` once.
Code that knows which turn, drone or user it works for wraps that work in
:func:`log_context`; every record logged inside it (and in tasks created inside it, which
copy the context) carries those ids: as fields in JSON, as a `[turn=… drone=…]` suffix in text.

    with log_context(drone=drone_id, user=user_id):
        logger.info("drone connected")
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar, Token
from typing import IO, Literal

import orjson
from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "CONTEXT_FIELDS",
    "JsonFormatter",
    "LogSettings",
    "TextFormatter",
    "bind",
    "current_context",
    "log_context",
    "setup_logging",
    "unbind",
]

#: The ids a record may carry, in the order they are shown.
CONTEXT_FIELDS = ("turn", "drone", "user")

_VARS: dict[str, ContextVar[str | None]] = {
    name: ContextVar(f"gadget_log_{name}", default=None) for name in CONTEXT_FIELDS
}
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Loggers of Gadget itself; every other logger is a library's and is quiet below WARNING.
_OWN = "gadget"


class LogSettings(BaseSettings):
    """`GADGET_LOG_FORMAT` (text or json) and `GADGET_LOG_LEVEL` (DEBUG … CRITICAL)."""

    model_config = SettingsConfigDict(env_prefix="GADGET_", extra="ignore")

    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in _LEVELS:
            raise ValueError(f"expected one of {', '.join(_LEVELS)}, got {value!r}")
        return level


# -- context -------------------------------------------------------------------
Bound = list[tuple[ContextVar[str | None], Token[str | None]]]


def bind(*, turn: str | None = None, drone: str | None = None, user: str | None = None) -> Bound:
    """Set the given ids for this context (None leaves one as it is); undo with :func:`unbind`."""
    given = {"turn": turn, "drone": drone, "user": user}
    return [(_VARS[name], _VARS[name].set(value)) for name, value in given.items() if value]


def unbind(bound: Bound) -> None:
    """Restore the ids that :func:`bind` replaced."""
    for var, token in reversed(bound):
        var.reset(token)


@contextlib.contextmanager
def log_context(
    *, turn: str | None = None, drone: str | None = None, user: str | None = None
) -> Iterator[None]:
    """Records logged inside the block carry these ids (the ones not given are kept)."""
    bound = bind(turn=turn, drone=drone, user=user)
    try:
        yield
    finally:
        unbind(bound)


def current_context() -> dict[str, str]:
    """The ids set in this context, by field name."""
    found = {name: var.get() for name, var in _VARS.items()}
    return {name: value for name, value in found.items() if value}


def _record_ids(record: logging.LogRecord) -> dict[str, str]:
    """The ids of a record: `extra={"turn": …}` wins over the context."""
    return {
        name: str(value)
        for name in CONTEXT_FIELDS
        if (value := getattr(record, name, None) or _VARS[name].get())
    }


# -- formatters and filters ----------------------------------------------------
class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the ids, and `exc` if any."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (a traceback goes, escaped, into `exc`)."""
        entry: dict[str, object] = {
            "time": _iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_record_ids(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [turn=… drone=… user=…]: message` for people.

    Ids are cut to their first 8 characters here (enough to tell them apart when
    reading); JSON lines carry them whole, for searching.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s%(gadget_ids)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The usual text line, the record's ids (if any) after its logger's name."""
        ids = _record_ids(record)
        shown = " ".join(f"{name}={value[:8]}" for name, value in ids.items())
        record.gadget_ids = f" [{shown}]" if shown else ""
        return super().format(record)


class LibraryNoise(logging.Filter):
    """Drops libraries' records below WARNING (httpx's request lines, uvicorn's banners)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether to keep the record."""
        own = record.name == _OWN or record.name.startswith(_OWN + ".")
        return own or record.levelno >= logging.WARNING


def _iso_time(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class _GadgetHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`setup_logging` installs (so a second call replaces, not adds)."""


def setup_logging(
    settings: LogSettings | None = None, *, verbose: bool = False, stream: IO[str] | None = None
) -> None:
    """Send every record to stderr (or `stream`) in the configured format and level.

    Libraries' records below WARNING are dropped unless the level is DEBUG (`--verbose`
    or `GADGET_LOG_LEVEL=DEBUG`), when everything is shown.

    Raises:
        pydantic.ValidationError: GADGET_LOG_FORMAT or GADGET_LOG_LEVEL is not a known value.
    """
    settings = settings or LogSettings()
    level = "DEBUG" if verbose else settings.log_level
    handler = _GadgetHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    if level != "DEBUG":
        handler.addFilter(LibraryNoise())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _GadgetHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
