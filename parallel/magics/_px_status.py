"""What ``%px`` tells a front end beyond its output: progress and the ``%autopx`` state.

Both travel as ordinary ``display_data`` / ``update_display_data`` messages carrying a
MIME type of ours, so they pass through any kernel (Loom's, ipykernel: the magics only
call ``display``) and any front end (one that does not know the type ignores it, or
shows the bundle's ``text/plain`` when there is one):

- :data:`STATUS_MIME`: a blocking ``%px``'s progress, one display per run (a
  ``display_id``), updated as engines finish and about once a second. The Loom console
  shows it in its status line instead of printing it. Once ``--progress-after`` seconds
  have passed the bundle also has ``text/plain`` (the progress line), for other front
  ends; before that it has none, so a quick ``%px`` shows nothing anywhere.
- :data:`AUTOPX_MIME`: ``%autopx`` turned on or off (the Loom console marks its prompt).

Pure: the console imports this module to read what the magics write.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AUTOPX_MIME",
    "STATUS_MIME",
    "autopx_bundle",
    "read_autopx",
    "read_status",
    "status_bundle",
]

STATUS_MIME = "application/vnd.loom.px-status+json"
AUTOPX_MIME = "application/vnd.loom.px-autopx+json"


def status_bundle(
    done: int, total: int, elapsed: float, *, bar: bool, final: bool, text: str
) -> dict[str, Any]:
    """The MIME bundle of one progress report (``text``: the line other front ends show
    once ``bar`` is due)."""
    data: dict[str, Any] = {
        STATUS_MIME: {
            "done": done,
            "total": total,
            "elapsed": round(elapsed, 3),
            "bar": bar,
            "final": final,
        }
    }
    if bar:
        data["text/plain"] = text
    return data


def read_status(data: object) -> dict[str, Any] | None:
    """The progress report in a display's ``data``, or None if it holds none (or a bad one)."""
    if not isinstance(data, dict):
        return None
    status = data.get(STATUS_MIME)
    if not isinstance(status, dict):
        return None
    try:
        return {
            "done": int(status["done"]),
            "total": int(status["total"]),
            "elapsed": float(status["elapsed"]),
            "bar": bool(status.get("bar")),
            "final": bool(status.get("final")),
        }
    except (KeyError, TypeError, ValueError):
        return None


def autopx_bundle(on: bool, suffix: str) -> dict[str, Any]:
    """The bundle saying ``%autopx{suffix}`` is now on (or off)."""
    return {AUTOPX_MIME: {"on": on, "suffix": suffix}}


def read_autopx(data: object) -> tuple[bool, str] | None:
    """``(on, suffix)`` from a display's ``data``, or None if it holds no autopx state."""
    if not isinstance(data, dict):
        return None
    state = data.get(AUTOPX_MIME)
    if not isinstance(state, dict):
        return None
    return bool(state.get("on")), str(state.get("suffix", ""))
