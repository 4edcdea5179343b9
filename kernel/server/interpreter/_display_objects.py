"""Rich objects to display, as ``IPython.display`` has them: ``HTML``, ``Markdown``,
``Latex``, ``SVG``, ``Javascript``, ``Pretty``, ``JSON`` and ``Image``.

Each shows as its MIME type through the ``_repr_*_`` protocol (``_display.format_object``);
they need no IPython. ``IPython.display``'s own classes work as well when IPython is
installed (``_ipython_shell``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["HTML", "JSON", "SVG", "Image", "Javascript", "Latex", "Markdown", "Pretty"]


class _TextObject:
    """Text for one MIME type, given as ``data`` or read (UTF-8) from ``filename``."""

    def __init__(
        self,
        data: str | None = None,
        *,
        filename: str | os.PathLike[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if filename is not None:
            data = Path(filename).read_text(encoding="utf-8")
        self.data: str = data or ""
        self.metadata: dict[str, Any] = dict(metadata or {})

    def __repr__(self) -> str:
        return f"<{type(self).__name__} object>"

    def _payload(self) -> str | tuple[str, dict[str, Any]]:
        return (self.data, self.metadata) if self.metadata else self.data


class HTML(_TextObject):
    """Displays as ``text/html``."""

    def _repr_html_(self) -> str | tuple[str, dict[str, Any]]:
        return self._payload()


class Markdown(_TextObject):
    """Displays as ``text/markdown``."""

    def _repr_markdown_(self) -> str | tuple[str, dict[str, Any]]:
        return self._payload()


class Latex(_TextObject):
    """Displays as ``text/latex``."""

    def _repr_latex_(self) -> str | tuple[str, dict[str, Any]]:
        return self._payload()


class SVG(_TextObject):
    """Displays as ``image/svg+xml``."""

    def _repr_svg_(self) -> str | tuple[str, dict[str, Any]]:
        return self._payload()


class Javascript(_TextObject):
    """Displays as ``application/javascript``."""

    def _repr_javascript_(self) -> str | tuple[str, dict[str, Any]]:
        return self._payload()


class Pretty(_TextObject):
    """Displays its text as-is, as ``text/plain`` only."""

    def __repr__(self) -> str:
        return self.data


class JSON:
    """Displays JSON data (or a JSON document string, parsed) as ``application/json``.

    Raises ``ValueError`` for a string that is not JSON.
    """

    def __init__(
        self,
        data: Any,
        *,
        expanded: bool = False,
        root: str = "root",
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.data: Any = json.loads(data) if isinstance(data, str) else data
        self.metadata: dict[str, Any] = {"expanded": expanded, "root": root, **(metadata or {})}

    def __repr__(self) -> str:
        return "<JSON object>"

    def _repr_json_(self) -> tuple[Any, dict[str, Any]]:
        return self.data, self.metadata


_IMAGE_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg"}


class Image:
    """A PNG or JPEG image from ``data`` (bytes) or ``filename`` (a str ``data`` is a filename).

    ``format`` defaults to the file suffix, else to what the bytes start with, else PNG.
    ``width``/``height`` go to the image's metadata. Raises ``ValueError`` for other formats.
    """

    def __init__(
        self,
        data: bytes | str | os.PathLike[str] | None = None,
        *,
        filename: str | os.PathLike[str] | None = None,
        format: str | None = None,
        width: int | None = None,
        height: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(data, str | os.PathLike):
            data, filename = None, data
        if filename is not None:
            data = Path(filename).read_bytes()
            format = format or Path(filename).suffix.lstrip(".").lower() or None
        self.data: bytes = data or b""
        fmt = (format or ("jpeg" if self.data.startswith(b"\xff\xd8") else "png")).lower()
        if fmt not in _IMAGE_FORMATS:
            raise ValueError(f"unsupported image format {fmt!r} (png or jpeg)")
        self.format: str = _IMAGE_FORMATS[fmt]
        self.metadata: dict[str, Any] = dict(metadata or {})
        if width is not None:
            self.metadata["width"] = width
        if height is not None:
            self.metadata["height"] = height

    def __repr__(self) -> str:
        return "<Image object>"

    def _repr_png_(self) -> bytes | tuple[bytes, dict[str, Any]] | None:
        return self._payload() if self.format == "png" else None

    def _repr_jpeg_(self) -> bytes | tuple[bytes, dict[str, Any]] | None:
        return self._payload() if self.format == "jpeg" else None

    def _payload(self) -> bytes | tuple[bytes, dict[str, Any]]:
        return (self.data, self.metadata) if self.metadata else self.data
