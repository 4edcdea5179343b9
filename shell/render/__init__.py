"""iopub output to terminal text and images, shared by the console and ``loom run``.

No prompt_toolkit, no asyncio, no zmq: functions of messages and the terminal's abilities.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel._lazy import lazy_exports

__all__ = [
    "OutputRenderer",
    "format_bundle",
    "image_protocol",
    "render_image",
]

_EXPORTS = {
    "OutputRenderer": "._output",
    "format_bundle": "._output",
    "image_protocol": "._images",
    "render_image": "._images",
}

if TYPE_CHECKING:
    from ._images import image_protocol, render_image
    from ._output import OutputRenderer, format_bundle


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
