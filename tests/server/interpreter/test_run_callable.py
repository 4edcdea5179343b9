"""Interpreter.run_callable: a function called as user code, as a cell runs (the engine's seam)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from typing import Any

from kernel.server.interpreter import CallOutcome, Interpreter

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
Published = list[tuple[str, dict[str, Any]]]


def _call(interp: Interpreter, fn: Any, *args: object, **kwargs: object) -> CallOutcome:
    return asyncio.run(interp.run_callable(fn, args, kwargs))


def test_the_value_comes_back_and_nothing_is_published(
    interp: Interpreter, published: Published
) -> None:
    outcome = _call(interp, lambda a, b=0: a * 10 + b, 4, b=2)
    assert outcome == CallOutcome(status="ok", value=42, error=None)
    assert published == []
    assert not interp.is_busy


def test_an_exception_is_reported_like_a_cells_without_kernel_frames(
    interp: Interpreter, published: Published
) -> None:
    def divide(x: int) -> float:
        return x / 0

    outcome = _call(interp, divide, 1)
    assert outcome.status == "error"
    assert outcome.value is None
    assert outcome.error is not None
    assert (outcome.error["ename"], outcome.error["evalue"]) == (
        "ZeroDivisionError",
        "division by zero",
    )
    text = _ANSI.sub("", "\n".join(outcome.error["traceback"]))
    assert "return x / 0" in text
    assert "_interpreter.py" not in text  # the kernel's own frames are hidden
    assert published == [("error", outcome.error)]


def test_an_async_function_is_awaited(interp: Interpreter) -> None:
    async def later(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    assert _call(interp, later, 1).value == 2


def test_asyncio_run_works_inside_the_function(interp: Interpreter) -> None:
    async def inner() -> str:
        return "ran"

    assert _call(interp, lambda: asyncio.run(inner())).value == "ran"


def test_the_kernels_loop_is_the_current_loop_again_after_asyncio_run(interp: Interpreter) -> None:
    """asyncio.run() in user code leaves no current loop; the call puts the kernel's back
    (only when it is gone: setting it through the policy cost every task ~3 us)."""

    async def inner() -> int:
        return 1

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        for fn in (lambda: asyncio.run(inner()), lambda: 2):
            await interp.run_callable(fn, (), {})
            assert asyncio.get_event_loop_policy().get_event_loop() is loop

    asyncio.run(scenario())


def test_sigint_interrupts_the_function_with_keyboard_interrupt(interp: Interpreter) -> None:
    previous = signal.getsignal(signal.SIGINT)
    interp.install_sigint_handler()

    def blocks() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(30)  # interrupted at once: the handler raises in this frame

    try:
        outcome = _call(interp, blocks)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert outcome.status == "error"
    assert outcome.error is not None
    assert outcome.error["ename"] == "KeyboardInterrupt"


def test_sigint_cancels_an_awaited_result(interp: Interpreter) -> None:
    previous = signal.getsignal(signal.SIGINT)
    interp.install_sigint_handler()

    async def waits() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.sleep(30)

    try:
        outcome = _call(interp, waits)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert outcome.error is not None
    assert outcome.error["ename"] == "KeyboardInterrupt"


def test_hidden_prefixes_are_the_interpreters_to_choose(published: Published) -> None:
    here = os.path.dirname(__file__)
    interpreter = Interpreter(lambda t, c: published.append((t, c)), hidden_prefixes=[here])

    def fails() -> None:
        raise RuntimeError("boom")

    try:
        outcome = _call(interpreter, fails)
    finally:
        interpreter.history.close()
    assert outcome.error is not None
    assert "raise RuntimeError" not in _ANSI.sub("", "\n".join(outcome.error["traceback"]))
