"""``Client.activate()``: register the ``%px`` magics for a client, in whichever host runs.

ipyparallel's semantics: ``rc.activate(targets="all", suffix="")`` makes a blocking
``DirectView`` on ``targets``, registers ``%px{suffix}``, ``%%px{suffix}``,
``%pxresult{suffix}``, ``%pxconfig{suffix}`` and ``%autopx{suffix}`` for it, and returns
the view. The host is Loom's kernel when this code runs in one (its ``get_ipython()``
may also be IPython's instance, so Loom is asked first), else IPython's shell if one
runs; elsewhere there is nothing to register on, and, as ipyparallel does, a warning says
so and the view is still returned.
"""

from __future__ import annotations

import sys
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..client._pool_client import Client, Targets
    from ..client._views import DirectView

__all__ = ["activate", "activate_view"]


def activate(client: Client, targets: Targets = "all", suffix: str = "") -> DirectView:
    """Register the ``%px`` magics (with ``suffix``) on a view of ``targets``; the view."""
    view = client.direct_view(targets)
    view.block = True
    activate_view(view, suffix, stacklevel=4)
    return view


def activate_view(view: DirectView, suffix: str = "", *, stacklevel: int = 3) -> None:
    """Register the ``%px`` magics (with ``suffix``) on ``view`` itself (``view.activate``)."""
    from ._px_loom import activate_loom, current_loom_magics

    magics = current_loom_magics()
    if magics is not None:
        activate_loom(magics, view, suffix)
        return
    ipython = _running_ipython()
    if ipython is not None:
        from ._px_ipython import activate_ipython

        activate_ipython(ipython, view, suffix)
        return
    warnings.warn(
        "the %px magics need IPython or Loom's kernel; none is running here",
        RuntimeWarning,
        stacklevel=stacklevel,
    )


def _running_ipython() -> object | None:
    """IPython's running shell, without importing IPython if nothing has."""
    module = sys.modules.get("IPython")
    get_ipython = getattr(module, "get_ipython", None)
    return get_ipython() if callable(get_ipython) else None
