"""``Terminal``: write to the screen whether or not a prompt is on it.

When no prompt_toolkit application runs (a cell is executing), writes go
straight to the stream. While a prompt is live, the prompt must be erased
first and redrawn afterwards, which prompt_toolkit's ``run_in_terminal`` does
on the event loop, without threads (unlike ``patch_stdout``). Because that is
asynchronous, :meth:`Terminal.call` keeps a FIFO: once something is queued,
later writes queue behind it even if the prompt has gone meanwhile, so output
is never reordered.

The task that drains the queue belongs to the ``tasks`` the terminal is given
(the console's task set), so it ends with the console.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from kernel.client._tasks import TaskSet

__all__ = ["Terminal"]


class Terminal:
    """Ordered, prompt-aware writes to ``stream`` (default ``sys.stdout``)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        interactive: bool = True,
        tasks: TaskSet,
    ) -> None:
        self.stream = stream or sys.stdout
        #: False in plain mode: no prompt can be live, so never involve prompt_toolkit.
        self.interactive = interactive
        self._tasks = tasks
        self._queue: list[Callable[[], None]] = []
        self._draining: asyncio.Future[None] | None = None

    def write(self, text: str) -> None:
        """Write and flush ``text`` now (the caller knows no prompt is live)."""
        self.stream.write(text)
        self.stream.flush()

    def call(self, func: Callable[[], None]) -> None:
        """Run ``func`` (which writes to :attr:`stream`) above any live prompt.

        Runs at once when no prompt is live and nothing is queued; otherwise
        queues it behind earlier calls.
        """
        if not self._queue and not _prompt_is_live(self.interactive):
            self._run(func)
            self.stream.flush()
            return
        self._queue.append(func)
        if self._draining is None or self._draining.done():
            self._start_draining()

    def _start_draining(self) -> None:
        try:
            self._draining = self._tasks.spawn(
                self._drain_above_prompt(), name="loom-terminal-drain"
            )
        except RuntimeError:  # the console has ended: no prompt can be live any more
            self._drain()

    async def _drain_above_prompt(self) -> None:
        from prompt_toolkit.application import get_app_or_none, run_in_terminal

        # Loop until the queue is empty: run_in_terminal drains in a task of its
        # own, and a call made after that drain but before this task ends finds
        # this task still running, so it starts no drain of its own.
        while self._queue:
            app = get_app_or_none()
            if app is not None and app.is_running and app.output.responds_to_cpr:
                # run_in_terminal first waits for outstanding cursor position reports,
                # then erases the prompt even if Enter finished it meanwhile, wiping
                # the finished input line. Wait here instead, and look again.
                await app.renderer.wait_for_cpr_responses()
            if _prompt_is_live(self.interactive):
                await run_in_terminal(self._drain)
            else:
                self._drain()

    def _drain(self) -> None:
        while self._queue:
            self._run(self._queue.pop(0))
        self.stream.flush()

    def _run(self, func: Callable[[], None]) -> None:
        try:
            func()
        except Exception as exc:  # output the renderer did not foresee: one line, go on
            self.stream.write(f"\n[loom: could not display output: {exc!r}]\n")

    @property
    def prompt_is_live(self) -> bool:
        """Whether a prompt (a cell's, or a question's) is on screen now."""
        return _prompt_is_live(self.interactive)

    def echoes_ctrl_c(self) -> bool:
        """Whether the terminal echoed ``^C`` for the Ctrl-C just pressed.

        True when :attr:`stream` and stdin are the terminal and its line
        discipline echoes control characters (``ECHO`` and ``ECHOCTL``, as it
        does by default while a cell runs): output written next would continue
        the ``^C`` line.
        """
        if not self.interactive or not _isatty(self.stream) or not _isatty(sys.stdin):
            return False
        try:
            import termios

            lflag = termios.tcgetattr(sys.stdin.fileno())[3]
        except (ImportError, OSError, ValueError):
            return False
        echoctl = getattr(termios, "ECHOCTL", 0)
        return bool(echoctl) and lflag & (termios.ECHO | echoctl) == termios.ECHO | echoctl

    async def settle(self) -> None:
        """Wait until every queued call has run."""
        while self._draining is not None and not self._draining.done():
            await self._draining


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or closed
        return False


def _prompt_is_live(interactive: bool) -> bool:
    if not interactive:
        return False
    # Only look if prompt_toolkit is loaded: plain mode never imports it.
    if "prompt_toolkit" not in sys.modules:
        return False
    from prompt_toolkit.application import get_app_or_none

    app = get_app_or_none()
    return app is not None and app.is_running
