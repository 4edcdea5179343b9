"""Everything of the kernel server that runs on a helper thread.

This is the only room of Loom that may import ``threading`` (``tests/test_layers.py``
checks it): a newcomer can tell from the folder which code must be thread-safe.
``IOThread`` (thread ``loom-io``) owns iopub and control; the heartbeat echo is
thread ``loom-heartbeat``; ``OutStream`` and ``StdinBridge`` are called on the main
thread but hand their work to ``loom-io``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_exports

__all__ = [
    "IOThread",
    "OutStream",
    "StdinBridge",
    "start_heartbeat",
]

_EXPORTS = {
    "IOThread": "._iothread",
    "start_heartbeat": "._heartbeat_echo",
    "OutStream": "._streams",
    "StdinBridge": "._stdin",
}

if TYPE_CHECKING:
    from ._heartbeat_echo import start_heartbeat
    from ._iothread import IOThread
    from ._stdin import StdinBridge
    from ._streams import OutStream


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
