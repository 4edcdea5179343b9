"""iopub output to terminal text and images, shared by the console and ``loom run``.

No prompt_toolkit, no asyncio, no zmq: functions of messages and the terminal's abilities.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel._lazy import lazy_exports

__all__ = [
    "ANSI_RE",
    "OutputRenderer",
    "error_text",
    "format_bundle",
    "image_protocol",
    "render_image",
]

_EXPORTS = {
    "ANSI_RE": "._mime",
    "OutputRenderer": "._output",
    "error_text": "._mime",
    "format_bundle": "._mime",
    "image_protocol": "._images",
    "render_image": "._images",
}

if TYPE_CHECKING:
    from ._images import image_protocol, render_image
    from ._mime import ANSI_RE, error_text, format_bundle
    from ._output import OutputRenderer


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
