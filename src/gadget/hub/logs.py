"""Quiet, bounded logging of malformed frames that engine.io reports with a full traceback."""

from __future__ import annotations

import logging
import time


class MalformedFrameFilter(logging.Filter):
    """Turns engine.io's "message async handler error" traceback into one warning line, at most
    one per `interval` seconds (an authenticated client sending garbage cannot flood the log).
    """

    def __init__(self, interval: float = 1.0) -> None:
        super().__init__()
        self._interval = interval
        self._last = 0.0
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).endswith("async handler error") or record.exc_info is None:
            return True
        now = time.monotonic()
        if now - self._last < self._interval:
            self._dropped += 1
            return False
        exc = record.exc_info[1]
        suffix = f" ({self._dropped} more since the last report)" if self._dropped else ""
        record.msg = f"dropped a malformed frame: {type(exc).__name__}: {exc}{suffix}"
        record.args = None
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        self._last, self._dropped = now, 0
        return True


def install_frame_filter() -> None:
    """Attach the filter to engine.io's server logger once per process."""
    logger = logging.getLogger("engineio.server")
    if not any(isinstance(f, MalformedFrameFilter) for f in logger.filters):
        logger.addFilter(MalformedFrameFilter())
