"""Background scripts: ``%%script --bg`` (``--out``, ``--err``, ``--proc``) and
``%killbgscripts``, with IPython 9's meaning.

A background script is started and the cell ends at once. Its processes run under an
asyncio loop of their own, on a daemon thread started by the first ``--bg`` cell (so a
cell busy in synchronous code never stalls their pipes, and the kernel's own loop is not
touched). ``--out VAR`` / ``--err VAR`` bind a stream reader and ``--proc VAR`` the process,
each wrapped so that its coroutine methods (``read``, ``readline``, ``wait``...) return an
awaitable for the cell's own loop: ``await VAR.read()`` in a later cell. A stream nobody
asked for is read to its end and dropped, so the program never blocks on a full pipe.
``%killbgscripts`` (and the process's exit) ends the ones still running: SIGINT, then
SIGTERM, then SIGKILL, a tenth of a second apart, as IPython does.

The loop's thread is the kernel's one helper thread outside ``kernel/server/channels``
(``tests/test_layers.py`` names it): IPython's ``--bg`` streams must keep flowing while a
cell holds the main thread, which the kernel's own loop cannot do.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import inspect
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["BackgroundScripts", "LoopProxy"]

#: Seconds each signal is given before the next, stronger one (IPython's 0.1).
SIGNAL_GRACE = 0.1


class LoopProxy:
    """``obj`` (living on ``loop``) with its coroutine methods callable from another loop."""

    def __init__(self, obj: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._obj = obj
        self._loop = loop

    def __repr__(self) -> str:
        return f"<background {self._obj!r}>"

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._obj, name)
        if isinstance(attr, asyncio.StreamReader):
            return LoopProxy(attr, self._loop)  # a process's .stdout / .stderr
        if not inspect.iscoroutinefunction(attr):
            return attr
        return _OnLoop(attr, self._loop)


class _OnLoop:
    """A coroutine method of an object on another loop; a call returns an awaitable (an
    ``asyncio`` future when the caller's thread runs a loop, else a
    ``concurrent.futures.Future`` to ``.result()``)."""

    def __init__(self, method: Callable[..., Any], loop: asyncio.AbstractEventLoop) -> None:
        self._method = method
        self._loop = loop
        self.__doc__ = method.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(self._method(*args, **kwargs), self._loop)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return future
        return asyncio.wrap_future(future)


class BackgroundScripts:
    """The background processes of one kernel, and the loop thread that runs them."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._processes: list[asyncio.subprocess.Process] = []

    def start(
        self, argv: list[str], stdin: bytes, *, keep_stdout: bool, keep_stderr: bool
    ) -> tuple[asyncio.subprocess.Process, asyncio.AbstractEventLoop]:
        """Start ``argv`` with ``stdin`` written to it; return the process and its loop.

        A stream not kept is read to its end and dropped. Raises ``OSError`` (e.g.
        ``FileNotFoundError``) if the program cannot be started."""
        loop = self._running_loop()
        process = self._call(
            loop,
            asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            ),
        )
        self._processes.append(process)
        dropped = [
            stream
            for stream, kept in ((process.stdout, keep_stdout), (process.stderr, keep_stderr))
            if stream is not None and not kept
        ]
        loop.call_soon_threadsafe(_spawn, loop, _feed_and_drain(process, stdin, dropped))
        return process, loop

    def kill_all(self) -> None:
        """End every background process still running (SIGINT, SIGTERM, SIGKILL)."""
        loop = self._loop
        running = [p for p in self._processes if p.returncode is None]
        self._processes = running
        if loop is None or not running:
            return
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if not running:
                break
            for process in running:
                _signal(process, sig)
            # A loop gone (interpreter exit) or stuck: the signals were sent all the same.
            with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
                self._call(loop, _wait_all(running, SIGNAL_GRACE))
            running = [p for p in running if p.returncode is None]
        self._processes = running

    def close(self) -> None:
        """End the processes still running and stop the loop's thread (at the process's
        exit; a later ``start`` makes a new one)."""
        self.kill_all()
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        atexit.unregister(self.close)
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        if not thread.is_alive():
            loop.close()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            # A daemon: a kernel killed outright must not wait for it; close() at a normal
            # exit ends its processes first.
            thread = threading.Thread(
                target=loop.run_forever, name="loom-background-scripts", daemon=True
            )
            thread.start()
            atexit.register(self.close)
            self._loop, self._thread = loop, thread
        return self._loop

    @staticmethod
    def _call(loop: asyncio.AbstractEventLoop, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)


def _spawn(loop: asyncio.AbstractEventLoop, coro: Any) -> None:
    task = loop.create_task(coro)
    _TASKS.add(task)  # the loop keeps only weak references to tasks
    task.add_done_callback(_TASKS.discard)


_TASKS: set[asyncio.Task[None]] = set()


async def _feed_and_drain(
    process: asyncio.subprocess.Process, stdin: bytes, dropped: list[asyncio.StreamReader]
) -> None:
    pipe = process.stdin
    if pipe is not None:
        try:
            pipe.write(stdin)
            await pipe.drain()
            pipe.close()
            await pipe.wait_closed()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the program exited without reading its input
    await asyncio.gather(*(stream.read() for stream in dropped))
    await process.wait()


async def _wait_all(processes: list[asyncio.subprocess.Process], timeout: float) -> None:
    await asyncio.wait([asyncio.ensure_future(p.wait()) for p in processes], timeout=timeout)


def _signal(process: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    # os.kill, not process.send_signal: that polls (waitpid) from this thread, and reaping a
    # child that just exited would take it from the loop's child watcher, which then reports
    # exit status 255 for it. A signal to an exited, unreaped child does nothing.
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, sig)
