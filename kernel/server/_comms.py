"""Comms (messaging spec, "Custom Messages"): kernel-side registry and routing.

A front end opens a comm with a ``target_name``; a target registered here
receives the comm and its messages. Opening a comm to an unknown target is
answered with ``comm_close``, as ipykernel does, so the front end is not left
waiting.

Libraries (ipywidgets, ipympl, matplotlib's nbagg through Loom's backend) open comms
through the ``comm`` package; once user code imports it, :attr:`CommManager.package` is
that package's manager (``_comm_package``) and messages for its targets and comms go there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kernel.protocol import JSONDict, Message, new_id

__all__ = ["Comm", "CommManager"]

log = logging.getLogger("loom.kernel")

Send = Callable[[str, JSONDict], None]
#: ``publish(msg_type, content, metadata, buffers)``: an iopub message with all its parts.
Publish = Callable[[str, JSONDict, JSONDict, list[bytes]], None]


class PackageComms(Protocol):
    """What Loom uses of the ``comm`` package's ``CommManager`` (``comm.base_comm``)."""

    targets: dict[str, Any]
    comms: dict[str, Any]

    def comm_open(self, stream: Any, ident: Any, msg: dict[str, Any]) -> None: ...
    def comm_msg(self, stream: Any, ident: Any, msg: dict[str, Any]) -> None: ...
    def comm_close(self, stream: Any, ident: Any, msg: dict[str, Any]) -> None: ...


@dataclass(eq=False)
class Comm:
    """One end of a comm in the kernel."""

    comm_id: str
    target_name: str
    _send: Send = field(repr=False)
    on_msg: Callable[[JSONDict], None] | None = None
    on_close: Callable[[JSONDict], None] | None = None
    closed: bool = False

    def send(self, data: JSONDict | None = None, metadata: JSONDict | None = None) -> None:
        self._send("comm_msg", {"comm_id": self.comm_id, "data": data or {}})

    def close(self, data: JSONDict | None = None) -> None:
        if not self.closed:
            self.closed = True
            self._send("comm_close", {"comm_id": self.comm_id, "data": data or {}})


Target = Callable[[Comm, JSONDict], None]


class CommManager:
    """Routes comm_open/comm_msg/comm_close and answers comm_info."""

    def __init__(
        self,
        send: Send,
        publish: Publish | None = None,
        parent: Callable[[], Message | None] | None = None,
    ) -> None:
        self._send = send
        self.targets: dict[str, Target] = {}
        self.comms: dict[str, Comm] = {}
        #: Sends a comm message with metadata and buffers (the ``comm`` package's comms).
        self.publish: Publish = publish or (
            lambda msg_type, content, _m, _b: send(msg_type, content)
        )
        #: The request being handled (what ipykernel's ``kernel.get_parent()`` gives).
        self.parent: Callable[[], Message | None] = parent or (lambda: None)
        #: The ``comm`` package's manager, once user code imported ``comm``.
        self.package: PackageComms | None = None

    def register_target(self, name: str, target: Target) -> None:
        self.targets[name] = target

    def open(self, target_name: str, data: JSONDict | None = None) -> Comm:
        """Open a comm from the kernel side."""
        comm = Comm(new_id(), target_name, self._send)
        self.comms[comm.comm_id] = comm
        self._send(
            "comm_open", {"comm_id": comm.comm_id, "target_name": target_name, "data": data or {}}
        )
        return comm

    def handle_open(self, content: JSONDict, message: Message | None = None) -> None:
        comm_id, target_name = str(content.get("comm_id")), str(content.get("target_name"))
        target = self.targets.get(target_name)
        if target is None and self.package is not None and target_name in self.package.targets:
            self.package.comm_open(None, "", _as_dict(content, message))
            return
        comm = Comm(comm_id, target_name, self._send)
        if target is None:
            log.info("comm_open for unknown target %r; closing it", target_name)
            comm.close()
            return
        self.comms[comm_id] = comm
        try:
            target(comm, content.get("data") or {})
        except Exception:
            log.exception("comm target %r failed", target_name)
            comm.close()
            self.comms.pop(comm_id, None)

    def handle_msg(self, content: JSONDict, message: Message | None = None) -> None:
        comm_id = str(content.get("comm_id"))
        if self.package is not None and comm_id in self.package.comms:
            self.package.comm_msg(None, "", _as_dict(content, message))
            return
        comm = self.comms.get(comm_id)
        if comm is not None and comm.on_msg is not None:
            comm.on_msg(content.get("data") or {})

    def handle_close(self, content: JSONDict, message: Message | None = None) -> None:
        comm_id = str(content.get("comm_id"))
        if self.package is not None and comm_id in self.package.comms:
            self.package.comm_close(None, "", _as_dict(content, message))
            return
        comm = self.comms.pop(comm_id, None)
        if comm is not None:
            comm.closed = True
            if comm.on_close is not None:
                comm.on_close(content.get("data") or {})

    def info(self, target_name: str | None = None) -> dict[str, Any]:
        comms = dict(self.comms)
        if self.package is not None:
            comms.update(self.package.comms)
        return {
            comm_id: {"target_name": comm.target_name}
            for comm_id, comm in comms.items()
            if target_name is None or comm.target_name == target_name
        }


def _as_dict(content: JSONDict, message: Message | None) -> dict[str, Any]:
    """The message as the ``comm`` package's handlers take it (ipykernel's message dict)."""
    if message is None:
        return {
            "header": {},
            "parent_header": {},
            "metadata": {},
            "content": content,
            "buffers": [],
        }
    return {
        "header": message.header,
        "parent_header": message.parent_header,
        "metadata": message.metadata,
        "content": content,
        "buffers": list(message.buffers),
    }
