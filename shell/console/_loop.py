"""The console's event loop: asyncio's, with a cheaper check of signal numbers.

prompt_toolkit installs its SIGWINCH handler (``loop.add_signal_handler``) when a
prompt starts and removes it when the prompt ends, so twice per cell. asyncio
checks the signal number each time against ``signal.valid_signals()``, which
builds a fresh set of ``Signals`` enum members on every call: ~0.15-0.2 ms,
twice per cell, half of it between Enter and the next prompt. The valid
signals cannot change while the process runs, so :class:`ConsoleLoop` checks
against a set made once. ``_check_signal`` is a private method of CPython's
Unix loop (``asyncio/unix_events.py``); if a later Python drops it, this
override is simply never called (``tests/shell/console/test_ptk_private.py``
checks that it still is).
"""

from __future__ import annotations

import asyncio
import signal

__all__ = ["ConsoleLoop"]

_VALID_SIGNALS = frozenset(int(sig) for sig in signal.valid_signals())


class ConsoleLoop(asyncio.SelectorEventLoop):
    """``asyncio.SelectorEventLoop`` whose signal-number check uses a set made once."""

    def _check_signal(self, sig: int) -> None:
        # The same errors as asyncio's check.
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in _VALID_SIGNALS:
            raise ValueError(f"invalid signal number {sig}")
