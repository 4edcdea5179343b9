"""What the console says about an attached kernel (issue 15 items 4, 5), without processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel.protocol import ConnectionInfo
from shell.console._link_state import Status
from shell.console._startup import attached_kernel_name, farewell_to_attached

IPYKERNEL_INFO = {"implementation": "ipython", "language_info": {"name": "python"}}


@pytest.mark.parametrize(
    ("file_name", "kernel_info", "expected"),
    [
        ("python3", IPYKERNEL_INFO, "python3"),  # started by a manager: its kernelspec
        ("", IPYKERNEL_INFO, "ipython"),  # `python -m ipykernel`: what it calls itself
        ("", {"language_info": {"name": "julia"}}, "julia"),
        ("", {}, "(unnamed)"),
    ],
)
def test_an_attached_kernel_is_called_by_its_own_name(
    file_name: str, kernel_info: dict[str, object], expected: str
) -> None:
    info = ConnectionInfo(key=b"k", kernel_name=file_name)
    assert attached_kernel_name(info, kernel_info) == expected


def test_leaving_an_attached_kernel_says_what_is_true_of_it() -> None:
    path = Path("/run/kernel-x.json")
    assert farewell_to_attached(Status.IDLE, path) == (
        "The kernel is still running; attach again with: loom --existing /run/kernel-x.json"
    )
    assert farewell_to_attached(Status.BUSY, path).startswith("The kernel is still running")
    assert farewell_to_attached(Status.DEAD, path) == (
        "The kernel has died; its connection file is stale: rm /run/kernel-x.json"
    )
    assert farewell_to_attached(Status.NOT_RESPONDING, path).startswith(
        "The kernel was not responding when you left"
    )
