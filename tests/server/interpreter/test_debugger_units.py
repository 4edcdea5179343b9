"""``KernelPdb`` without a front end, in process: it never reads the process's stdin."""

from __future__ import annotations

import sys

import pytest

from kernel.server.interpreter._debugger import KernelPdb, _user_frames, set_trace


def test_breakpoint_without_a_front_end_says_so_and_goes_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # builtins.input is Python's own here (no cell is running): pdb must not start.
    previous = sys.gettrace()
    reached = []
    set_trace(sys._getframe(), hidden_prefixes=["/nowhere"])
    reached.append(True)
    sys.settrace(previous)  # pytest-cov or a debugger may have had one
    assert reached == [True]
    assert "the debugger needs a front end that answers input()" in capsys.readouterr().out


def test_post_mortem_without_a_front_end_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ZeroDivisionError) as caught:
        1 / 0  # noqa: B018
    debugger = KernelPdb(["/nowhere"])
    debugger.reset()
    debugger.interaction(None, caught.tb)
    assert "not started" in capsys.readouterr().out


class _Frame:
    def __init__(self, filename: str) -> None:
        self.f_code = type("Code", (), {"co_filename": filename})()


def test_the_user_sees_frames_from_the_first_of_theirs_without_the_kernels() -> None:
    import asyncio

    files = [
        "<frozen runpy>",
        "/loom/kernel/__main__.py",
        asyncio.__file__,
        "/loom/kernel/server/_server.py",
        "<cell-3>",
        "/loom/kernel/server/magics/_timing.py",
        "<cell-3>",
        "/home/me/lib.py",
    ]
    frames = [_Frame(name) for name in files]

    def is_kernel(frame: object) -> bool:
        return str(frame.f_code.co_filename).startswith("/loom/kernel")  # type: ignore[attr-defined]

    assert _user_frames(frames, is_kernel) == [4, 6, 7]  # type: ignore[arg-type]
    assert _user_frames(frames[:4], is_kernel) == []  # type: ignore[arg-type]
