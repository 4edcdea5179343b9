"""The ``%px`` magics (ipyparallel's), for Loom's kernel and for IPython.

``%load_ext parallel`` (or ``rc.activate()``) gives ``%px``, ``%%px``, ``%pxresult``,
``%pxconfig``, ``%autopx`` and ``%cluster``; the user guide is the ``%px`` section of
``docs/parallel.md``. The rooms:

- ``_px_parse``: the options (pure);
- ``_px_output``: how engines' output, results and errors are shown (pure);
- ``_px_run``: sending code, following it, Ctrl-C (blocking or on a loop, no threads);
- ``_px_magics``: the magics, whatever the host; ``_px_cluster``: which cluster, ``%cluster``;
- ``_px_loom``, ``_px_ipython``: the two hosts; ``_px_activate``: ``Client.activate``.

Names load lazily (PEP 562): importing this package imports none of them, nor IPython.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel._lazy import lazy_exports

__all__ = [
    "EngineOutput",
    "ErrorGroup",
    "PxArgs",
    "PxError",
    "PxSettings",
    "PxUsageError",
    "activate",
    "group_errors",
    "load_ipython_extension",
    "load_loom_extension",
    "parse_px",
    "render_outputs",
    "run_px",
    "unload_ipython_extension",
    "unload_loom_extension",
]

_EXPORTS = {
    "activate": "._px_activate",
    "load_ipython_extension": "._px_ipython",
    "unload_ipython_extension": "._px_ipython",
    "load_loom_extension": "._px_loom",
    "unload_loom_extension": "._px_loom",
    "EngineOutput": "._px_output",
    "ErrorGroup": "._px_output",
    "PxError": "._px_output",
    "group_errors": "._px_output",
    "render_outputs": "._px_output",
    "PxArgs": "._px_parse",
    "PxUsageError": "._px_parse",
    "parse_px": "._px_parse",
    "PxSettings": "._px_run",
    "run_px": "._px_run",
}

if TYPE_CHECKING:
    from ._px_activate import activate
    from ._px_ipython import load_ipython_extension, unload_ipython_extension
    from ._px_loom import load_loom_extension, unload_loom_extension
    from ._px_output import EngineOutput, ErrorGroup, PxError, group_errors, render_outputs
    from ._px_parse import PxArgs, PxUsageError, parse_px
    from ._px_run import PxSettings, run_px

__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
