"""The ``comm`` package on Loom's kernel: ipywidgets, ipympl and matplotlib's nbagg open
their comms through it.

The ``comm`` package leaves ``comm.create_comm`` and ``comm.get_comm_manager`` for the
kernel to replace (ipykernel does when its kernel module is imported); by default its comms
send nothing. Once user code imports ``comm``, :func:`install` replaces both: a comm is a
:class:`comm.base_comm.BaseComm` whose messages go out on Loom's iopub (with metadata and
binary buffers), and the package's manager becomes the kernel's
:attr:`~kernel.server._comms.CommManager.package`, so messages from the front end reach its
targets and comms. Nothing is imported before user code imports ``comm``.

Each comm has a ``kernel`` attribute with ``get_parent()`` (the request being handled, as a
message dict), which is what ipywidgets' ``Output`` widget asks of ipykernel's comms to learn
which request's outputs to capture; it is Loom's, not ipykernel's ``Kernel``.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from kernel.server.interpreter._import_hooks import after_import

if TYPE_CHECKING:
    from ._comms import CommManager

__all__ = ["KernelView", "install"]


def install(manager: CommManager) -> None:
    """Serve the ``comm`` package from ``manager``: now if it is already imported, else once
    user code imports it."""
    after_import("comm", lambda module: _adapt(module, manager))


class KernelView:
    """The little of a kernel that comm users ask for: ``get_parent()``."""

    def __init__(self, manager: CommManager) -> None:
        self._manager = manager

    def get_parent(self) -> dict[str, Any]:
        """The request being handled as ipykernel gives it (``{}`` between requests)."""
        message = self._manager.parent()
        if message is None:
            return {}
        return {
            "header": message.header,
            "parent_header": message.parent_header,
            "metadata": message.metadata,
            "content": message.content,
        }


def _adapt(module: ModuleType, manager: CommManager) -> None:
    from comm.base_comm import BaseComm  # type: ignore[import-not-found, unused-ignore]
    from comm.base_comm import (  # type: ignore[import-not-found, unused-ignore]
        CommManager as PackageManager,
    )

    view = KernelView(manager)
    publish = manager.publish

    class LoomComm(BaseComm):  # type: ignore[misc, unused-ignore]
        """A comm whose messages Loom's kernel sends."""

        kernel = view

        def publish_msg(
            self,
            msg_type: str,
            data: dict[str, Any] | None = None,
            metadata: dict[str, Any] | None = None,
            buffers: list[Any] | None = None,
            **keys: Any,
        ) -> None:
            content = {"data": {} if data is None else data, "comm_id": self.comm_id, **keys}
            # Buffers may be memoryviews or numpy arrays (ipywidgets' serialisers): as bytes.
            frames = [b if isinstance(b, bytes) else bytes(memoryview(b)) for b in buffers or ()]
            publish(msg_type, content, metadata or {}, frames)

    # Kept across a re-import of ``comm`` (a reload): the comms already open stay routed.
    package = manager.package or PackageManager()
    manager.package = package
    module.create_comm = LoomComm  # type: ignore[attr-defined]
    module.get_comm_manager = lambda: package  # type: ignore[attr-defined]
