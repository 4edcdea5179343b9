"""``InteractiveConsole``: the read-run-print loop at a terminal.

Theory of operation
-------------------
One task runs the loop: show a prompt (``ConsoleUI.read_cell``), then either
handle a front-end command or run the cell and wait for its reply. Output of
our cell streams to the screen as it arrives (nothing is on screen to
protect while a cell runs, except an ``input()`` prompt, which
``Terminal.call`` handles). Output that belongs to no cell of ours — threads
still printing after their cell, other clients' cells — arrives through
``on_foreign_output`` at any time and goes above the live prompt at once.

Stream output is coalesced: ``stream`` messages that arrive in one turn of
the event loop (the client dispatches everything a socket read returned in
one go) are joined per stream name and written with one ``write`` + ``flush``
at the end of that turn, so an output flood costs one write per burst, not
one per message. Any other output first flushes what is pending, so the
order on screen is the kernel's.

A kernel the console started may still be booting when the first prompt is
up (the link's state is ``starting``). A cell entered meanwhile waits for it
(Ctrl-C stops the wait without disturbing the booting kernel), then runs.

SIGINT: while a prompt is up, prompt_toolkit owns the terminal in raw mode
and Ctrl-C is a key (it clears the line). While a cell runs the terminal is
in cooked mode and Ctrl-C is a signal, caught with ``loop.add_signal_handler``
and turned into an interrupt of the *kernel* (the kernel runs in its own
session, so the terminal's signal never reaches it directly). The prompts
leave the loop's SIGINT handler alone (``handle_sigint=False``), so the
console installs its own once. A second Ctrl-C a second or more after the
first stops waiting for an unresponsive kernel: the console is never wedged;
the cell's late output shows up like any background output.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from kernel import KernelDied, KernelError
from kernel.client._input_request import current_input_request
from kernel.client._tasks import Outcome, TaskSet, open_task_set, settled
from shell.render._output import OutputRenderer, merge_streams

from ._cell_status import SHOW_AFTER, CellStatus
from ._commands import (
    Command,
    CommandError,
    connect_info_text,
    edit_text,
    parse_command,
    read_clipboard,
)
from ._debug import report_threads
from ._link import KernelLink
from ._pager import page, page_text
from ._paste import strip_prompts
from ._pdb_complete import completer_for
from ._prompt import ConsoleUI
from ._px_view import PxView
from ._terminal import Terminal

if TYPE_CHECKING:
    from kernel.protocol import Message

__all__ = ["InteractiveConsole"]

T = TypeVar("T")

#: Seconds after the first Ctrl-C from which another one stops waiting for the cell.
ABANDON_AFTER = 1.0
#: Seconds a cell waits for a starting kernel before the console says it is waiting.
WAIT_NOTICE_AFTER = 0.5


class _Exit(Exception):
    """Leave the loop (``exit``, Ctrl-D confirmed, an ``ask_exit`` payload)."""


@dataclass(slots=True)
class _EarlyCell:
    """A cell sent when Enter accepted it, before the prompt returned it."""

    code: str
    task: asyncio.Task[Outcome[Message]]
    started: float


class InteractiveConsole:
    """The loop; :meth:`run` returns the process exit status."""

    def __init__(
        self,
        link: KernelLink,
        ui: ConsoleUI,
        renderer: OutputRenderer,
        term: Terminal,
        *,
        connection_file: Path | None = None,
    ) -> None:
        self.link = link
        self.ui = ui
        self.renderer = renderer
        self.term = term
        self.connection_file = connection_file
        self.count = 1
        self._next_input = ""
        self._cell: asyncio.Task[Outcome[Message]] | None = None
        self._interrupts: list[float] = []
        self._tasks: TaskSet | None = None  # while run() runs: it owns every task spawned
        self._first_prompt = True
        self._cells_run = 0
        self._pending: list[Message] = []  # stream output of this loop turn, not yet written
        self._pending_foreign = False  # whether _pending is others' output (not our cell's)
        self._flush_scheduled = False
        self._early: _EarlyCell | None = None
        # %px: engine colours, the status line, the [px] marker (see _px_view).
        self.px = PxView(
            term.stream,
            ansi=renderer.ansi,
            at_line_start=lambda: renderer.column == 0,
            prompt_live=lambda: ui.is_live,
            changed=ui.invalidate,
        )
        ui.prompt_marker = lambda: self.px.marker
        # The toolbar's line while our cell runs (see _cell_status).
        self.status = CellStatus(
            term.stream,
            ansi=renderer.ansi,
            text=ui.running_status,
            at_line_start=lambda: renderer.column == 0,
            hidden=lambda: term.prompt_is_live or self.px.status is not None,
        )
        # ConsoleUI takes these after construction (it is built before the console).
        ui.on_accept = self._accepted
        ui.write_above = term.call  # help (F2) queues with the kernel's output
        if link.owns_kernel:
            link.death_hint = "Type %restart (or run a cell) to start a new one."
        link.set_handlers(
            notice=self.notice,
            change=self._state_changed,
            foreign_output=self._foreign_output,
            input_handler=self._answer_input,
        )

    # -- the loop ---------------------------------------------------------------

    async def run(self) -> int:
        """Read and run cells until exit; return the exit status (0).

        Every task the console starts (cells, interrupts) belongs to this call
        and ends with it. Raises the :class:`~kernel.KernelError` of a kernel
        that could not start, when a cell waited for it.
        """
        loop = asyncio.get_running_loop()
        async with open_task_set() as tasks:
            self._tasks = tasks
            self._install_sigint()
            try:
                return await self._loop()
            finally:
                loop.remove_signal_handler(signal.SIGINT)
                self._tasks = None

    async def _loop(self) -> int:
        while True:
            try:
                code = await self._read()
                if code:
                    await self._handle(code)
            except _Exit:
                return 0

    async def _read(self) -> str:
        """The next input; '' after Ctrl-C. Raises ``_Exit`` on a confirmed Ctrl-D."""
        await self.term.settle()
        self.renderer.ensure_newline()
        gap: list[str] = []
        if not self._first_prompt:
            # The blank line goes out with the prompt's first drawing: one write.
            with_prompt = self.ui.writes_to(self.renderer.out)
            self.renderer.separate(gap.append if with_prompt else None)
        self._first_prompt = False
        report_threads()
        default, self._next_input = self._next_input, ""
        try:
            code = await self.ui.read_cell(self.count, default, before="".join(gap))
        except KeyboardInterrupt:
            return ""
        except EOFError:
            if await self._confirm_exit():
                raise _Exit from None
            return ""
        finally:
            if self._early is None:  # else begun when the cell was sent
                self.renderer.begin_cell()
        return code

    async def _handle(self, code: str) -> None:
        command = parse_command(code)
        if command is None:
            await self.run_cell(code)
        else:
            await self._command(command)

    async def _confirm_exit(self) -> bool:
        if not self.link.owns_kernel:
            return True
        return await self.ui.confirm("Do you really want to exit ([y]/n)? ")

    # -- running cells ------------------------------------------------------------

    def _accepted(self, code: str) -> None:
        """Enter accepted ``code``: send a cell to a ready kernel at once.

        prompt_toolkit still has to redraw the finished prompt (a millisecond
        or two) before :meth:`ConsoleUI.read_cell` returns; the kernel works on
        the cell meanwhile. No output can be drawn before that redraw: replies
        need another turn of the event loop. Front-end commands, and cells for
        a kernel that is starting or dead, go the ordinary way.
        """
        if not code or parse_command(code) is not None:
            return
        if not self.link.is_ready or self.link.is_dead:
            return
        self.renderer.begin_cell(echo=self.ui.echo())  # others' output may go above it
        task = self._spawn(settled(self._send(code)))
        self._early = _EarlyCell(code, task, time.monotonic())

    async def run_cell(self, code: str) -> None:
        """Run ``code``, streaming its output; deal with a kernel that dies meanwhile.

        A kernel still starting is waited for first; if it cannot start, its
        :class:`~kernel.KernelError` is raised (the console then ends).
        """
        early = self._take_early(code)
        dead = early is None and self.link.is_dead
        if dead and not await self._offer_restart("The kernel is dead."):
            return
        started = early.started if early is not None else time.monotonic()
        self._interrupts = []
        self._cells_run += 1
        cell = early.task if early is not None else self._spawn(settled(self._execute(code)))
        self._cell = cell
        self.status.begin()
        reveal = asyncio.get_running_loop().call_later(
            SHOW_AFTER, lambda: self.term.call(self.status.reveal)
        )
        try:
            await asyncio.wait({cell})
        finally:
            reveal.cancel()
            self._cell = None
            self.ui.last_duration = time.monotonic() - started
            cell.cancel()  # we are being cancelled: stop waiting for the reply too
            self.flush_output()
            self.term.call(self.px.end_cell)
            self.term.call(self.status.end)
        await self.term.settle()
        await self._conclude(cell)

    def _take_early(self, code: str) -> _EarlyCell | None:
        """The cell :meth:`_accepted` sent for ``code``, if it sent this one."""
        early, self._early = self._early, None
        if early is not None and early.code != code:  # not what was sent: forget it
            early.task.cancel()
            return None
        return early

    async def _conclude(self, cell: asyncio.Task[Outcome[Message]]) -> None:
        """Say how ``cell`` ended, unless it ended well; then act on its reply."""
        if cell.cancelled():
            if self.link.is_ready:
                self.notice("Stopped waiting for the cell; it may still be running in the kernel.")
            else:
                self.notice("Not run: the kernel is still starting.")
            return
        outcome = cell.result()
        if isinstance(outcome.error, KernelDied):
            if self.link.is_dead:
                await self._offer_restart("")
            else:
                self.notice(f"The cell was abandoned: {outcome.error}")
            return
        self._after_reply(outcome.unwrap())  # any other error is raised: the console ends

    async def _execute(self, code: str) -> Message:
        if not self.link.is_ready:
            await self._kernel_ready()
        return await self._send(code)

    async def _send(self, code: str) -> Message:
        return await self.link.client.execute(code, on_output=self._cell_output)

    async def _kernel_ready(self) -> None:
        """Wait for a starting kernel, saying so if that takes a while."""
        try:
            async with asyncio.timeout(WAIT_NOTICE_AFTER):
                await self.link.wait_ready()
                return
        except TimeoutError:
            pass
        self.notice(f"Waiting for kernel {self.link.name} to start...")
        await self.link.wait_ready()

    def _after_reply(self, reply: Message) -> None:
        content = reply.content
        count = content.get("execution_count")
        if isinstance(count, int):
            self.count = count + 1
        for payload in content.get("payload") or []:
            if not isinstance(payload, dict):
                continue
            source = payload.get("source")
            if source == "page":
                self.renderer.ensure_newline()
                page(page_text(payload.get("data") or {}), self.term.stream, interactive=True)
            elif source == "set_next_input":
                self._next_input = str(payload.get("text", ""))
            elif source == "ask_exit":
                raise _Exit

    def _cell_output(self, message: Message) -> None:
        if message.msg_type == "execute_input":  # our own input is already on screen
            count = message.content.get("execution_count")
            if isinstance(count, int):
                self.count = count + 1  # in case we stop waiting for the reply
            return
        self._show(message)

    def _foreign_output(self, message: Message, own_session: bool) -> None:
        if message.msg_type == "execute_input":
            count = message.content.get("execution_count")
            if isinstance(count, int) and not own_session:
                self.count = self.ui.count = count + 1
                self.ui.invalidate()
            if own_session:
                return
        self._show(message, foreign=True)

    def _show(self, message: Message, *, foreign: bool = False) -> None:
        """Render ``message`` above any prompt, coalescing stream output (module doc).

        ``foreign`` output (not our cell's) also goes above our input while our
        cell waits behind another client's (``OutputRenderer.render``'s ``above_input``).
        """
        shown = self.px.take(message)
        if shown is None:  # %px's progress or autopx state: the status line shows it
            self.flush_output()
            self.term.call(self.px.draw)
            return
        message = shown
        if message.msg_type == "stream":
            if self._pending and self._pending_foreign != foreign:
                self.flush_output()  # runs of ours and of others are written apart
            self._pending_foreign = foreign
            self._pending.append(message)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self.flush_output)
            return
        self.flush_output()
        render = self.renderer.render
        self.term.call(lambda: self._around(lambda: render(message, above_input=foreign)))

    def flush_output(self) -> None:
        """Write the stream output still pending (one write per run of one stream)."""
        self._flush_scheduled = False
        if not self._pending:
            return
        merged = merge_streams(self._pending)
        self._pending = []
        foreign = self._pending_foreign
        self.term.call(lambda: self._around(lambda: self._render_all(merged, foreign)))

    def _render_all(self, messages: list[Message], foreign: bool = False) -> None:
        for message in messages:
            self.renderer.render(message, above_input=foreign)

    def kernel_answered(self) -> None:
        """A kernel we started answers: print its banner above the prompt and load
        the highlighter, unless a cell was entered meanwhile (the next prompt
        then loads the highlighter; the banner is skipped)."""
        if self._cells_run or not self.ui.is_live:
            return
        banner = str(self.link.kernel_info.get("banner", "")).rstrip()
        if banner:
            self.term.call(lambda: self.renderer.notice(banner + "\n\n"))
        asyncio.get_running_loop().call_soon(self.ui.load_lexer)

    async def _answer_input(self, prompt: str, password: bool) -> str | None:
        """The kernel's ``input()``/``getpass()``: a nested prompt with line editing.

        Ctrl-C interrupts the kernel and sends no answer (None), so the cell's
        ``input()`` raises ``KeyboardInterrupt`` rather than maybe returning ''.
        At pdb's prompt Tab completes its commands and the paused frame's names
        (``_pdb_complete``).
        """
        await self.term.settle()
        self.status.erase()  # the question goes where the status line was
        self.renderer.ensure_newline()
        request = current_input_request.get()
        completer = completer_for(prompt, request.metadata if request is not None else None)
        try:
            return await self.ui.ask(prompt, password=password, completer=completer)
        except KeyboardInterrupt:
            self._spawn(self.link.interrupt())
            return None
        except EOFError:
            return ""
        finally:
            self.renderer.column = 0

    # -- Ctrl-C -------------------------------------------------------------------

    def _install_sigint(self) -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._on_sigint)

    def _on_sigint(self) -> None:
        cell = self._cell
        if cell is None or cell.done():
            return  # between prompts: nothing to interrupt
        if self.term.echoes_ctrl_c():  # "^C" is on screen: what follows starts a line
            self.term.call(self._after_ctrl_c_echo)
        if not self.link.is_ready:
            cell.cancel()  # only waiting for a starting kernel: a signal could kill it
            return
        now = time.monotonic()
        self._interrupts.append(now)
        if len(self._interrupts) > 1 and now - self._interrupts[0] >= ABANDON_AFTER:
            cell.cancel()
            return
        self._spawn(self.link.interrupt())

    def _after_ctrl_c_echo(self) -> None:
        self.status.echoed_over("^C")  # echoed over the status line: keep only ^C
        self.renderer.break_line()
        self.status.draw()

    # -- lifecycle ------------------------------------------------------------------

    async def _offer_restart(self, why: str) -> bool:
        """Ask to restart a dead kernel we started; True once a new one runs."""
        if not self.link.owns_kernel:
            self.notice(f"{why} This console did not start it, so it cannot restart it.".strip())
            return False
        if why:
            self.notice(why)
        if not await self.ui.confirm("Restart kernel? [Y/n] "):
            self.notice("Not restarted. Type %restart to start a new kernel.")
            return False
        return await self._restart()

    async def _restart(self) -> bool:
        self.notice("Restarting the kernel...")
        try:
            await self.link.restart()
        except KernelError as exc:
            self.notice(f"The kernel could not be restarted: {exc}")
            return False
        self.count = 1
        self.notice("Kernel restarted.")
        return True

    # -- front-end commands ---------------------------------------------------------

    async def _command(self, command: Command) -> None:
        name = command.name
        if name == "exit":
            raise _Exit
        if name in ("restart", "connect_info") and not self.link.is_ready:
            await self._kernel_ready()
        if name == "restart":
            if not self.link.owns_kernel:
                self.notice("This console did not start the kernel, so it cannot restart it.")
            else:
                await self._restart()
            return
        if name == "connect_info":
            path = self.connection_file or self.link.connection_file
            self.notice(connect_info_text(self.link.client.info, path))
            return
        try:
            code = await self._command_code(command)
        except CommandError as exc:
            self.notice(f"%{name}: {exc}")
            return
        if code.strip():
            await self.run_cell(code)

    async def _command_code(self, command: Command) -> str:
        """The code ``%paste``, ``%cpaste`` or ``%edit`` produces."""
        if command.name == "paste":
            code = read_clipboard()
            self.notice(code.rstrip("\n") + "\n## -- End pasted text --")
            return "\n".join(strip_prompts(code.split("\n")))
        if command.name == "cpaste":
            self.notice("Pasting code; enter '--' alone on the line to stop, or use Ctrl-D.")
            lines = []
            while True:
                try:
                    line = await self.ui.ask(":")
                except EOFError:
                    break
                except KeyboardInterrupt:
                    return ""
                if line.strip() == "--":
                    break
                lines.append(line)
            return "\n".join(strip_prompts(lines))
        return edit_text(filename=command.arg or None)  # no prompt is live: it may block

    # -- helpers ----------------------------------------------------------------------

    def notice(self, text: str) -> None:
        """Print a message from the console, above the prompt if one is up."""
        self.term.call(lambda: self._around(lambda: self.renderer.notice(text)))
        self.ui.invalidate()

    def _around(self, render: Callable[[], None]) -> None:
        """Run ``render`` (which writes output) with the status lines out of its way:
        our running cell's, and ``%px``'s."""
        self.status.around(lambda: self.px.around(render))

    def _state_changed(self) -> None:
        self.ui.invalidate()
        if self.status.running:  # the status line shows the state too
            self.term.call(self.status.draw)

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``coro`` as a task of :meth:`run` (RuntimeError if it is not running)."""
        if self._tasks is None:
            coro.close()  # never run: do not leave it to warn "never awaited"
            raise RuntimeError("the console is not running")
        return self._tasks.spawn(coro)
