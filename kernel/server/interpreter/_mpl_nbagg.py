"""``%matplotlib notebook`` on Loom's kernel: matplotlib's nbagg backend, with its comm
opened through the ``comm`` package, which Loom serves (``kernel/server/_comm_package``).

matplotlib's ``backend_nbagg`` builds its figure managers on ``ipykernel.comm.Comm``, which
sends only through ipykernel's own ``Kernel`` instance (on any other kernel it sends
nothing). This backend keeps matplotlib's figure manager, canvas, JavaScript and message
handling, and replaces only the object that opens the comm: :class:`CommSocket` opens it
with ``comm.create_comm``. The page sees what ipykernel sends: nbagg's JavaScript, a
``<div>`` for the figure, then a ``matplotlib`` comm.

Importing this module imports matplotlib's ``backend_nbagg``, hence IPython and
``ipykernel.comm`` (imported, never started): ``%matplotlib notebook`` checks they are
installed first. Selected as ``module://kernel.server.interpreter._mpl_nbagg``.
"""

from __future__ import annotations

import uuid
from typing import Any

import comm  # type: ignore[import-not-found, unused-ignore]
from IPython.display import HTML, display  # type: ignore[import-not-found, unused-ignore]
from matplotlib.backend_bases import _Backend  # type: ignore[import-not-found, unused-ignore]
from matplotlib.backends import backend_nbagg  # type: ignore[import-not-found, unused-ignore]

__all__ = ["BACKEND", "CommSocket", "FigureCanvas", "FigureManager"]

BACKEND = f"module://{__name__}"


class CommSocket(backend_nbagg.CommSocket):  # type: ignore[misc, unused-ignore]
    """nbagg's "web socket" to one view of a figure: a ``matplotlib`` comm, opened with
    ``comm.create_comm``. Sending, receiving and closing are matplotlib's."""

    def __init__(self, manager: Any) -> None:  # matplotlib's opens ipykernel's Comm instead
        self.manager = manager
        self.supports_binary = None  # the page says, in its first message
        self._ext_close = False
        self.uuid = str(uuid.uuid4())
        # The page's script finds the figure's place by this id, then opens its end.
        html = HTML(f"<div id={self.uuid!r}></div>")  # type: ignore[no-untyped-call, unused-ignore]
        display(html)  # type: ignore[no-untyped-call, unused-ignore]
        self.comm: Any = comm.create_comm(target_name="matplotlib", data={"id": self.uuid})
        self.comm.on_msg(self.on_message)
        self.comm.on_close(self._closed_by_page)

    def _closed_by_page(self, message: dict[str, Any]) -> None:
        self._ext_close = True
        self.manager.remove_comm(message["content"]["comm_id"])
        self.manager.clearup_closed()


class FigureManager(backend_nbagg.FigureManagerNbAgg):  # type: ignore[misc, unused-ignore]
    """matplotlib's nbagg figure manager, its views opened as :class:`CommSocket`."""

    def _create_comm(self) -> CommSocket:
        socket = CommSocket(self)
        self.add_web_socket(socket)  # type: ignore[no-untyped-call, unused-ignore]
        return socket


class FigureCanvas(backend_nbagg.FigureCanvasNbAgg):  # type: ignore[misc, unused-ignore]
    manager_class = FigureManager


@_Backend.export
class _BackendLoomNbAgg(_Backend):  # type: ignore[misc, unused-ignore]
    FigureCanvas = FigureCanvas
    FigureManager = FigureManager
