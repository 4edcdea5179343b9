"""Output content as text: the one reading shared by the console and ``loom run``.

Both front ends turn iopub outputs into text with these functions, so a
result, a display or an error reads the same in both:

- :func:`choose_mime`: which representation of a MIME bundle to show;
- :func:`format_bundle`: that representation as text (or an image's escapes);
- :func:`error_text`: an ``error`` message's traceback, or ``ename: evalue``;
- :data:`ANSI_RE`: the escape sequences to strip where colours cannot go.

What each front end does with the text (prompts, redrawing, which stream,
when to strip escapes) is its own business: see ``OutputRenderer`` and
``shell.batch._report.TextRenderer``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ._images import render_image

__all__ = [
    "ANSI_RE",
    "IMAGE_TYPES",
    "choose_mime",
    "error_text",
    "format_bundle",
    "text_of",
    "with_newline",
]

#: CSI, OSC and APC escape sequences (to measure or strip text).
ANSI_RE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor movement
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: titles, hyperlinks, iTerm2 images
    r"|\x1b_[^\x1b]*\x1b\\"  # APC: kitty images
)
#: The image types a terminal may show (or that may be saved to a file).
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif")
# The default text/plain repr of display objects that only carry richer data.
_OBJECT_REPR = re.compile(r"^<[\w.]+ object( at 0x[0-9a-fA-F]+)?>$")
_RICH_TEXT = ("text/markdown", "text/html")


def text_of(value: object) -> str | None:
    """A bundle entry as text: a string as it is, a list of strings joined
    (nbformat's multi-line form); None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(part, str) for part in value):
        return "".join(value)
    return None


def choose_mime(data: Mapping[str, object], *, images: bool) -> str | None:
    """The MIME type of ``data`` to show, or None when none can be shown.

    Preference: an image (only if ``images``: the caller can draw it or save
    it), then Markdown, then HTML when ``text/plain`` is missing or only an
    object's default repr, then ``text/plain`` (so a DataFrame prints its text
    table), then LaTeX source. Without ``images`` an image is never chosen:
    the ``text/plain`` beside it (``<Figure size …>``) is.
    """
    if images:
        for mime in IMAGE_TYPES:
            if isinstance(data.get(mime), str):
                return mime
    plain = text_of(data.get("text/plain"))
    if plain is None or _OBJECT_REPR.match(plain.strip()):
        for mime in _RICH_TEXT:
            if text_of(data.get(mime)) is not None:
                return mime
    if plain is not None:
        return "text/plain"
    if text_of(data.get("text/latex")) is not None:
        return "text/latex"
    return None


def format_bundle(data: object, images: str | None) -> tuple[str, bool]:
    """The text to show for a MIME bundle, and whether its height is unknown.

    The representation is :func:`choose_mime`'s. ``images`` is an
    :func:`~shell.render._images.image_protocol` result, or None when images
    cannot be shown at all (``loom run``). An image's text is what
    :func:`~shell.render._images.render_image` gives (its height is unknown
    unless it was saved to a file); Markdown and HTML are rendered as text;
    a bundle with nothing to show gives a note listing its types,
    ``[output of type image/png]``. ``data`` that is no MIME bundle at all (a
    kernel may sign anything) gives one line saying so.
    """
    if not isinstance(data, Mapping):
        return f"[malformed output: its data is {_kind(data)}, not a MIME bundle]", False
    mime = choose_mime(data, images=images is not None)
    if mime is None:
        return f"[output of type {', '.join(sorted(data)) or 'none'}]", False
    if mime in IMAGE_TYPES and images is not None:
        return render_image(str(data[mime]), mime, images), images != "file"
    text = text_of(data.get(mime)) or ""
    if mime == "text/markdown":
        from ._richtext import markdown_to_text  # on the first Markdown output

        return markdown_to_text(text), False
    if mime == "text/html":
        from ._richtext import html_to_text

        return html_to_text(text), False
    return text, False


def _kind(value: object) -> str:
    """What ``value`` is, for a message about malformed output: ``a str``, ``null``."""
    if value is None:
        return "null"
    name = type(value).__name__
    return f"an {name}" if name[:1] in "aeiou" else f"a {name}"


def error_text(content: Mapping[str, object]) -> str:
    """An ``error`` message's text: its traceback lines (escape codes kept),
    or ``ename: evalue`` when the kernel sent no traceback."""
    lines = content.get("traceback")
    text = "\n".join(str(line) for line in lines) if isinstance(lines, list) else ""
    return text or f"{content.get('ename', 'Error')}: {content.get('evalue', '')}"


def with_newline(text: str) -> str:
    """``text`` ending with a newline (one is added if it has none)."""
    return text if text.endswith("\n") else text + "\n"
