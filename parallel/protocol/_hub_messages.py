"""Messages between the controller's hub and its engines and clients (pure).

They travel in the Jupyter wire format (``kernel.protocol.Session``: signed, replay
checked) on the hub ROUTER and the notification PUB. The names follow ipyparallel's
messaging (``registration_request``, ``connection_request``, ``shutdown_request``,
``registration_notification``, ``unregistration_notification``); the contents are
Loom's own, because an engine here is a whole kernel with five ports:

=============================  ============================================================
``registration_request``       ``{"uuid", "pid", "address", "ports": {shell_port..}}`` (engine)
``registration_reply``         ``{"status": "ok", "id": N}``
``connection_request``         ``{}`` (client)
``connection_reply``           ``{"status": "ok", "engines": [engine record...]}``
``shutdown_request``           ``{"targets": [ids] | null, "hub": bool}`` (client)
``registration_notification``  an engine record (PUB)
``unregistration_notification``  ``{"id", "uuid", "reason"}`` (PUB), and ``restart``:
                               ``{"state": "restarting" | "given up" | "off" | "failed"}``
``setup_request``              ``{"code"}`` or ``{"name"}`` + a pickled call in buffers,
                               ``"targets": [ids] | null`` (client; recorded, replayed)
                               or ``{"clear": true}`` (forget every recorded item)
``setup_reply``                ``{"status": "ok", "index", "engines": [ids it applies to]}``
=============================  ============================================================

A ``registration_notification`` (and a ``connection_reply`` record) of a replaced engine
adds ``"restarted": {"count", "reason"}``; one announced after a setup replay adds
``"setup": {"status", "count"}`` (and ``ename``, ``evalue``, ``summary`` on error). The
``connection_reply`` adds ``"setup"``: the recorded items' ``{"kind", "summary",
"targets"}``, and ``"joining"``: ``{"id", "pid"}`` of engines registered but not announced
yet (their setup replay runs).

An engine record is ``{"id", "uuid", "pid", "address", "ports", "max_message_size",
"labels", "resources", "instance"}``: ``address`` is the ip the engine bound (or, on an ipc cluster,
its socket-file prefix); the transport and key are the cluster's
(``ControllerInfo.engine_connection``). A ``registration_request`` carries the last three
too, and ``instance`` (the process's id, new at each start: requests to the engine
name it, see ``kernel/protocol/_freshness.py``); older peers leave them out, meaning no
limit known, no labels, no resources, no instance to name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kernel.protocol import CHANNELS, JSONDict, MalformedMessage

from ._engine_traits import labels_from, resources_from

__all__ = [
    "EngineRecord",
    "address_of",
    "instance_of",
    "max_message_size_of",
    "ports_of",
    "traits_of",
]


def ports_of(data: object) -> dict[str, int]:
    """The five ``*_port`` numbers in ``data``; raises :class:`MalformedMessage`."""
    if not isinstance(data, Mapping):
        raise MalformedMessage("ports must be an object")
    ports: dict[str, int] = {}
    for channel in CHANNELS:
        value = data.get(f"{channel}_port")
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
            raise MalformedMessage(f"{channel}_port must be a port number, got {value!r}")
        ports[f"{channel}_port"] = value
    return ports


@dataclass(frozen=True, slots=True)
class EngineRecord:
    """One registered engine as the hub knows it."""

    id: int
    uuid: str
    pid: int
    address: str
    ports: dict[str, int]
    #: The largest frame the engine's shell accepts (``LOOM_MAX_MESSAGE_SIZE``; 0: no
    #: limit). libzmq drops a connection that sends more, silently: clients check first.
    max_message_size: int = 0
    #: What the engine carries (``_engine_traits``): labels, sorted, and resources (name
    #: -> amount); empty for an engine that registered none, or an older one.
    labels: tuple[str, ...] = ()
    resources: Mapping[str, float] = field(default_factory=dict)
    #: The engine process's instance id (new at each start; "" from an older engine):
    #: clients and the hub name it in every request they send the engine, which refuses
    #: requests naming another (replays, issue 12; ``kernel/protocol/_freshness.py``).
    instance: str = ""

    def to_content(self) -> JSONDict:
        return {
            "id": self.id,
            "uuid": self.uuid,
            "pid": self.pid,
            "address": self.address,
            "ports": dict(self.ports),
            "max_message_size": self.max_message_size,
            "labels": list(self.labels),
            "resources": dict(self.resources),
            **({"instance": self.instance} if self.instance else {}),
        }

    @classmethod
    def from_content(cls, content: Mapping[str, Any]) -> EngineRecord:
        """Validate a record a peer sent; raises :class:`MalformedMessage`."""
        engine_id, uuid, pid = content.get("id"), content.get("uuid"), content.get("pid", 0)
        if not isinstance(engine_id, int) or isinstance(engine_id, bool) or engine_id < 0:
            raise MalformedMessage(f"engine id must be a non-negative integer, got {engine_id!r}")
        if not isinstance(uuid, str) or not uuid:
            raise MalformedMessage("engine uuid must be a non-empty string")
        if not isinstance(pid, int) or isinstance(pid, bool):
            raise MalformedMessage("engine pid must be an integer")
        limit = max_message_size_of(content)
        labels, resources = traits_of(content)
        return cls(
            engine_id,
            uuid,
            pid,
            address_of(content),
            ports_of(content.get("ports")),
            limit,
            labels=labels,
            resources=resources,
            instance=instance_of(content),
        )


def traits_of(content: Mapping[str, Any]) -> tuple[tuple[str, ...], dict[str, float]]:
    """An engine's ``labels`` (sorted) and ``resources``; none when absent (an older
    engine); raises :class:`MalformedMessage` naming a bad one."""
    try:
        labels = labels_from(content.get("labels") or [])
        resources = resources_from(content.get("resources") or {})
    except ValueError as exc:
        raise MalformedMessage(str(exc)) from None
    return tuple(sorted(labels)), resources


def instance_of(content: Mapping[str, Any]) -> str:
    """An engine's ``instance`` ("" when absent: an older engine); raises
    :class:`MalformedMessage` for one that is not a short string."""
    instance = content.get("instance", "")
    if not isinstance(instance, str) or len(instance) > 64:
        raise MalformedMessage("an engine's instance must be a string of at most 64 characters")
    return instance


def max_message_size_of(content: Mapping[str, Any]) -> int:
    """An engine's ``max_message_size`` (0 when absent: an older engine, limit unknown)."""
    limit = content.get("max_message_size", 0)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise MalformedMessage(f"max_message_size must be a non-negative integer, got {limit!r}")
    return limit


def address_of(content: Mapping[str, Any]) -> str:
    """The ``address`` in ``content``; raises :class:`MalformedMessage`."""
    address = content.get("address")
    if not isinstance(address, str) or not address or len(address) > 4096:
        raise MalformedMessage("an engine's address must be a non-empty string")
    return address
