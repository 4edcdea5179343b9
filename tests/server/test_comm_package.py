"""The ``comm`` package served by Loom's CommManager (``kernel/server/_comm_package.py``):
comms opened in the kernel are published with their metadata and buffers, and the front
end's messages reach the package's targets and comms. In-process: the real ``comm``
package, the kernel's real CommManager, a list standing for iopub."""

from __future__ import annotations

from typing import Any

import pytest

from kernel.protocol import Message
from kernel.server import _comm_package
from kernel.server._comms import CommManager

comm: Any = pytest.importorskip("comm")

Published = list[tuple[str, dict[str, Any], dict[str, Any], list[bytes]]]


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> tuple[CommManager, Published, list[Any]]:
    # The package's functions are restored afterwards: other tests see it untouched.
    monkeypatch.setattr(comm, "create_comm", comm.create_comm)
    monkeypatch.setattr(comm, "get_comm_manager", comm.get_comm_manager)
    published: Published = []
    current: list[Any] = [None]
    manager = CommManager(
        lambda msg_type, content: published.append((msg_type, content, {}, [])),
        lambda msg_type, content, metadata, buffers: published.append(
            (msg_type, content, metadata, buffers)
        ),
        lambda: current[0],
    )
    _comm_package._adapt(comm, manager)
    return manager, published, current


def request(msg_type: str, content: dict[str, Any], buffers: tuple[bytes, ...] = ()) -> Message:
    return Message.create(msg_type, content, session="front-end", buffers=list(buffers))


def test_a_kernel_comm_is_published_with_metadata_and_buffers(
    served: tuple[CommManager, Published, list[Any]],
) -> None:
    manager, published, _ = served
    opened = comm.create_comm(
        target_name="t", data={"a": 1}, metadata={"m": 2}, buffers=[b"x", memoryview(b"yz")]
    )
    assert published == [
        (
            "comm_open",
            {
                "data": {"a": 1},
                "comm_id": opened.comm_id,
                "target_name": "t",
                "target_module": None,
            },
            {"m": 2},
            [b"x", b"yz"],
        )
    ]
    assert manager.info() == {opened.comm_id: {"target_name": "t"}}
    received: list[dict[str, Any]] = []
    opened.on_msg(received.append)
    message = request("comm_msg", {"comm_id": opened.comm_id, "data": {"b": 3}}, (b"blob",))
    manager.handle_msg(message.content, message)
    assert [(m["content"]["data"], m["buffers"]) for m in received] == [({"b": 3}, [b"blob"])]
    opened.send({"c": 4})
    assert published[-1][:2] == ("comm_msg", {"data": {"c": 4}, "comm_id": opened.comm_id})
    closed: list[dict[str, Any]] = []
    opened.on_close(closed.append)
    message = request("comm_close", {"comm_id": opened.comm_id, "data": {}})
    manager.handle_close(message.content, message)
    assert len(closed) == 1
    assert manager.info() == {}


def test_the_front_end_opens_a_comm_to_a_package_target(
    served: tuple[CommManager, Published, list[Any]],
) -> None:
    manager, published, _ = served
    opened: list[tuple[Any, dict[str, Any]]] = []
    comm.get_comm_manager().register_target("control", lambda c, m: opened.append((c, m)))
    message = request("comm_open", {"comm_id": "c1", "target_name": "control", "data": {"x": 1}})
    manager.handle_open(message.content, message)
    [(their_comm, msg)] = opened
    assert (their_comm.comm_id, msg["content"]["data"]) == ("c1", {"x": 1})
    assert manager.info("control") == {"c1": {"target_name": "control"}}
    assert published == []  # no comm_close: the target took it
    # A target nobody registered is still answered with comm_close, as before.
    message = request("comm_open", {"comm_id": "c2", "target_name": "nobody", "data": {}})
    manager.handle_open(message.content, message)
    assert published == [("comm_close", {"comm_id": "c2", "data": {}}, {}, [])]


def test_a_comm_knows_the_request_being_handled(
    served: tuple[CommManager, Published, list[Any]],
) -> None:
    _, _, current = served
    opened = comm.create_comm(target_name="t")
    assert opened.kernel.get_parent() == {}
    current[0] = request("execute_request", {"code": "1"})
    parent = opened.kernel.get_parent()
    assert parent["header"] == current[0].header
    assert parent["content"] == {"code": "1"}
