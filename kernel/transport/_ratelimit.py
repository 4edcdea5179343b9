"""Rate-limited warnings, for logging what peers send wrong.

A module of its own (stdlib only) so that the kernel's I/O thread can use it
before anything imports asyncio: see ``kernel.server._app``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    """Logs at most ``burst`` warnings per ``interval`` seconds, then one summary.

    ipykernel logs a full traceback per forged message; a flood of them must
    not turn into megabytes of log.
    """

    def __init__(self, logger: logging.Logger, *, burst: int = 5, interval: float = 10.0) -> None:
        self._logger = logger
        self._burst = burst
        self._interval = interval
        self._window_start = 0.0
        self._count = 0
        self._suppressed = 0

    def warning(self, fmt: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._window_start >= self._interval:
            if self._suppressed:
                self._logger.warning("suppressed %d similar messages", self._suppressed)
            self._window_start, self._count, self._suppressed = now, 0, 0
        if self._count < self._burst:
            self._count += 1
            self._logger.warning(fmt, *args)
        else:
            self._suppressed += 1
