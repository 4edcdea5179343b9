"""Plain mode: when stdin or stdout is not a terminal (``printf 'print(1)' | loom``).

No prompts, no escape codes: lines are read from stdin, grouped into cells,
run, and their outputs printed as plain text (results without ``Out[N]:``,
errors and stderr on stderr, ANSI colours stripped). The exit status is 0 at
end of input; 1 if the kernel dies; 130 after a second Ctrl-C.

Grouping, as when pasting into a REPL: a line is added to the current cell
and the cell runs once the kernel's ``is_complete`` says it is complete. A
blank line ends a block. So that scripts without blank lines after their
blocks work too, a line at column 0 that cannot continue the block (not
``else``, ``elif``, ``except``, ``finally``) ends it when the cell before it
is complete.

stdin is read without blocking the event loop (``loop.add_reader`` for pipes
and terminals; a regular file never blocks, so it is read directly), which
keeps background output and ``input()`` requests flowing.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import re
import signal
import stat
import sys
from collections.abc import Callable
from typing import TextIO

from kernel import KernelDied
from kernel.client._tasks import Outcome, TaskSet, open_task_set, settled
from kernel.protocol import Message
from shell.render._output import ANSI_RE, OutputRenderer

from ._commands import is_exit
from ._debug import report_threads
from ._link import KernelLink
from ._multiline import check_complete
from ._pager import page_text
from ._px_view import is_px_signal

__all__ = ["LineReader", "PlainConsole", "read_cell"]

_CONTINUES_BLOCK = re.compile(r"^(else|elif|except|finally)\b")
#: Plain mode is not interactive: give the kernel time to answer is_complete.
_IS_COMPLETE_TIMEOUT = 10.0


class LineReader:
    """Reads lines from a file descriptor on the event loop."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdin
        self._fd = self._stream.fileno()
        mode = os.fstat(self._fd).st_mode
        self._selectable = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._eof = False

    async def readline(self) -> str:
        """The next line with its newline; '' at end of input."""
        if not self._selectable:
            return self._stream.readline()
        while "\n" not in self._buffer and not self._eof:
            await self._wait_readable()
            chunk = os.read(self._fd, 65536)
            if not chunk:
                self._eof = True
                self._buffer += self._decoder.decode(b"", final=True)
            else:
                self._buffer += self._decoder.decode(chunk)
        line, newline, rest = self._buffer.partition("\n")
        self._buffer = rest
        return line + newline

    async def _wait_readable(self) -> None:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        loop.add_reader(self._fd, _resolve, ready)
        try:
            await ready
        finally:
            loop.remove_reader(self._fd)


async def read_cell(reader: LineReader, link: KernelLink | None, pending: list[str]) -> str | None:
    """The next cell from ``reader`` (None at end of input).

    ``pending`` carries a line read ahead that starts the following cell.
    """
    lines: list[str] = []
    if pending:
        lines.append(pending.pop())
        if await _status(link, lines) != "incomplete":
            return "\n".join(lines)
    while True:
        raw = await reader.readline()
        if not raw:
            return "\n".join(lines) if lines else None
        line = raw.rstrip("\r\n")
        if not line.strip():
            if lines:
                return "\n".join(lines)
            continue
        if lines and _starts_statement(line) and await _status(link, [*lines, ""]) == "complete":
            pending.append(line)
            return "\n".join(lines)
        lines.append(line)
        if await _status(link, lines) != "incomplete":
            return "\n".join(lines)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _starts_statement(line: str) -> bool:
    return not line[:1].isspace() and not _CONTINUES_BLOCK.match(line) and line[:1] not in ")]}"


async def _status(link: KernelLink | None, lines: list[str]) -> str:
    status, _ = await check_complete(link, "\n".join(lines), _IS_COMPLETE_TIMEOUT)
    return status


class PlainConsole:
    """Runs every cell of ``reader`` through ``link``, printing plainly (module docstring).

    SIGINT while a cell runs interrupts the kernel; a second one ends the run
    (status 130). Every task it starts (cells, interrupts) belongs to :meth:`run`.
    """

    def __init__(self, link: KernelLink, renderer: OutputRenderer, reader: LineReader) -> None:
        self.link = link
        self.renderer = renderer
        self.reader = reader
        self._show = _show(renderer)
        self._cell: asyncio.Task[Outcome[Message]] | None = None
        self._interrupts = 0
        self._tasks: TaskSet | None = None  # while run() runs
        link.set_handlers(
            notice=_notice,
            foreign_output=lambda message, own_session: self._show(message),
            input_handler=self.answer,
        )

    async def run(self) -> int:
        """Run every cell; return the exit status: 0 at end of input (or ``exit``,
        or an ``ask_exit`` payload), 1 if the kernel died, 130 after a second Ctrl-C."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self.on_sigint)
        try:
            async with open_task_set() as tasks:
                self._tasks = tasks
                return await self._loop()
        finally:
            self._tasks = None
            loop.remove_signal_handler(signal.SIGINT)
            self.renderer.ensure_newline()

    async def _loop(self) -> int:
        pending: list[str] = []
        while True:
            code = await read_cell(self.reader, self.link, pending)
            if code is None or is_exit(code):
                return 0
            if self.link.is_dead:
                return 1  # the notice has said why; nothing could run this cell
            status = await self.run_one(code)
            if status is not None:
                return status

    def on_sigint(self) -> None:
        """Ctrl-C: interrupt the kernel's cell; the second one stops waiting for it."""
        self._interrupts += 1
        cell = self._cell
        if cell is None or cell.done() or self._tasks is None:
            return
        if self._interrupts == 1:
            self._tasks.spawn(self.link.interrupt())
        else:
            cell.cancel()

    async def answer(self, prompt: str, password: bool) -> str:
        """The kernel's ``input()``: the next line of the input (echoing the prompt)."""
        self.renderer.out.write(prompt)
        self.renderer.out.flush()
        self.renderer.column = 0
        return (await self.reader.readline()).rstrip("\r\n")

    async def run_one(self, code: str) -> int | None:
        """Run one cell; the exit status if the run must end after it, else None."""
        if self._tasks is None:
            raise RuntimeError("run_one() is for run(), which owns the cell's task")
        self._interrupts = 0
        report_threads("cell")
        execute = self.link.client.execute(code, on_output=self._show)
        cell = self._cell = self._tasks.spawn(settled(execute))
        try:
            await asyncio.wait({cell})
        finally:
            self._cell = None
            cell.cancel()  # we are being cancelled: stop waiting for the reply too
        if cell.cancelled():
            print("loom: interrupted", file=sys.stderr, flush=True)
            return 130
        outcome = cell.result()
        if isinstance(outcome.error, KernelDied):
            self.renderer.ensure_newline()
            if not self.link.is_dead:  # else the death notice has said it already
                print(f"loom: {outcome.error}", file=sys.stderr, flush=True)
            return 1
        return self._after_reply(outcome.unwrap())

    def _after_reply(self, reply: Message) -> int | None:
        for payload in reply.content.get("payload") or []:
            if not isinstance(payload, dict):
                continue
            if payload.get("source") == "page":
                self.renderer.notice(ANSI_RE.sub("", page_text(payload.get("data") or {})))
            elif payload.get("source") == "ask_exit":
                return 0
        return None


def _notice(text: str) -> None:
    print(f"loom: {text}", file=sys.stderr, flush=True)


def _show(renderer: OutputRenderer) -> Callable[[Message], None]:
    """Render outputs, but not inputs: plain mode echoes no code."""

    def render(message: Message) -> None:
        # %px's progress and autopx state are for the interactive console's status line.
        if message.msg_type != "execute_input" and not is_px_signal(message):
            renderer.render(message)

    return render
