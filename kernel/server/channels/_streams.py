"""``sys.stdout``/``sys.stderr`` replacements that feed the I/O thread.

``write`` is the I/O thread's writer function, set per instance: a deque
append (see :class:`~kernel.server.channels._iothread.StreamSink`) and, for the first
write of a batch, one eventfd write; the I/O thread publishes
the text within ``FLUSH_INTERVAL``, so text printed just before a long
computation still reaches the client.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._iothread import IOThread

__all__ = ["OutStream"]


class OutStream(io.TextIOBase):
    """A text stream named ``stdout`` or ``stderr`` that publishes on iopub."""

    def __init__(self, iothread: IOThread, name: str, fileno: int) -> None:
        super().__init__()
        self._io = iothread
        self._name = name
        # An instance attribute, so print() calls the I/O thread's writer directly:
        # one Python call per write instead of two (a print loop writes twice a line).
        self.write = iothread.writer(name)  # type: ignore[method-assign]
        self._fileno = fileno

    name = property(lambda self: f"<{self._name}>")
    encoding = "utf-8"
    errors = "strict"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        # The captured fd: a child process handed ``sys.stdout`` writes into
        # the same capture pipe, so its output is published too.
        return self._fileno

    def flush(self) -> None:
        self._io.flush()
