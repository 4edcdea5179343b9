"""``run_console``: connect to a kernel and run the interactive or plain console.

Start-up is arranged for a fast first prompt: the kernel process is launched
first (``KernelManager.launch``: a spawn, no pyzmq), and prompt_toolkit (the
slowest part of our own start-up) is imported while the kernel boots in
parallel. The prompt does not wait for the kernel: it is shown (and takes
typing) at once, with ``starting`` in the toolbar. Only once it is drawn does
the console connect to the kernel, which is when pyzmq is imported (some
20 ms the prompt need not wait for). A cell entered before the kernel answers
waits for it, then runs, and the kernel's banner is printed above the prompt
when it answers. If the kernel cannot start, the console says why and exits
with status 1. History (the file and the kernel's) and the syntax highlighter
load in the background after the prompt is up.

With ``--existing`` the console attaches to a running kernel: it can then
interrupt it (``interrupt_request``) but neither restart nor stop it, and
leaves it running on exit. A kernel the console started is shut down when
the console exits, whatever the reason.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from kernel import KernelError, KernelManager
from kernel.client import DEFAULT_KERNEL_NAME, find_running_kernel
from kernel.client._tasks import TaskSet, open_task_set, settled
from kernel.protocol import ConnectionFileError, ConnectionInfo
from shell.render._images import image_protocol
from shell.render._output import OutputRenderer

from ._link import KernelLink
from ._link_state import Status
from ._terminal import Terminal

if TYPE_CHECKING:
    from kernel.protocol import JSONDict

    from ._input_history import ConsoleHistory
    from ._prompt import ConsoleUI
    from ._repl import InteractiveConsole

__all__ = ["run_console"]

#: Entries of the kernel's history merged into the console's at start-up.
KERNEL_HISTORY_ENTRIES = 1000


def _preload_ui() -> None:
    """Import what the first prompt needs (done while the kernel starts).

    Pygments' lexers are not among them: the highlighter is loaded once the
    first prompt is on screen (see ``ConsoleUI``).
    """
    import prompt_toolkit.shortcuts  # noqa: F401

    from shell.console import _repl as _interactive  # noqa: F401


async def run_console(
    kernel_name: str | None = None,
    existing: str | None = None,
    *,
    vi_mode: bool | None = None,
) -> int:
    """Run the console until exit; return the process exit status.

    ``existing`` names a connection file as :func:`kernel.client.find_running_kernel`
    takes it ('' for the newest one whose kernel is not gone). Interactive
    when stdin and stdout are terminals, plain mode otherwise.
    """
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    with _cancelled_by_signals() as terminated:
        try:
            return await _run(kernel_name, existing, vi_mode, interactive)
        except asyncio.CancelledError:
            if terminated:
                return 128 + terminated[0]
            raise


@contextmanager
def _cancelled_by_signals() -> Iterator[list[int]]:
    """SIGTERM and SIGHUP (the terminal closed) cancel the console's task, so the
    cleanup (shutting down a kernel we started) runs instead of the process
    just vanishing. Yields the list the signal number is recorded in."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    received: list[int] = []

    def stop(signum: int) -> None:
        if not received and task is not None:
            received.append(signum)
            task.cancel()

    signals = (signal.SIGTERM, signal.SIGHUP)
    for signum in signals:
        loop.add_signal_handler(signum, stop, signum)
    try:
        yield received
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


async def _run(
    kernel_name: str | None, existing: str | None, vi_mode: bool | None, interactive: bool
) -> int:
    async with AsyncExitStack() as stack:
        try:
            link, path = await _open_link(stack, kernel_name, existing, interactive)
        except (KernelError, ConnectionFileError, OSError) as exc:
            print(f"loom: {exc}", file=sys.stderr)
            return 1
        # The link's two tasks (watching the kernel; launching and holding the
        # connection) end with the console: shutdown() ends serve(), and leaving
        # the task set cancels the watch.
        async with open_task_set() as tasks:

            def connect() -> None:
                """Connect to the kernel we launched (see :meth:`KernelLink.serve`)."""
                if not link.is_ready:
                    tasks.spawn(link.serve(), name="loom-kernel-start")

            tasks.spawn(link.watch(), name="loom-kernel-watch")
            try:
                if interactive:
                    return await _run_interactive(link, path, _vi_mode(vi_mode), connect)
                return await _run_plain(link, connect)
            finally:
                await link.shutdown()  # graceful, through the client; ends serve()
    raise AssertionError("unreachable")


def _vi_mode(asked: bool | None) -> bool:
    if asked is None:
        return os.environ.get("LOOM_EDITING_MODE", "").lower() == "vi"
    return asked


async def _open_link(
    stack: AsyncExitStack, kernel_name: str | None, existing: str | None, preload: bool
) -> tuple[KernelLink, Path | None]:
    """Attach to a kernel (ready on return), or launch one (``serve`` connects to it).

    Cleanup is registered on ``stack``. An unknown kernelspec or a command that
    cannot be spawned raises here, before any prompt is shown.
    """
    if existing is not None:
        from kernel import connect_client

        found = find_running_kernel(existing)  # a stale file: ConnectionFileError, at once
        path, info = found.path, found.info
        if found.skipped:
            names = ", ".join(str(p) for p in found.skipped)
            print(
                f"loom: skipped stale connection files (their kernels are gone): {names}",
                file=sys.stderr,
            )
        if preload:
            _preload_ui()
        try:
            client = await stack.enter_async_context(connect_client(info, ready_timeout=10.0))
        except TimeoutError:
            raise KernelError(f"the kernel of {path} does not answer") from None
        return KernelLink(client, None, attached_kernel_name(info, client.kernel_info)), path
    name = kernel_name or DEFAULT_KERNEL_NAME
    manager = KernelManager(name)
    manager.launch()
    stack.push_async_callback(manager.shutdown, now=True)  # last resort; no-op normally
    return KernelLink.starting(manager, name), None


async def _run_plain(link: KernelLink, connect: Callable[[], None]) -> int:
    """Plain mode: connect at once, and run the cells of stdin once the kernel answers."""
    from ._plain import LineReader, PlainConsole

    connect()
    _end_startup()
    try:
        await link.wait_ready()
    except KernelError as exc:
        print(f"loom: {exc}", file=sys.stderr)
        return 1
    renderer = OutputRenderer(sys.stdout, sys.stderr, ansi=False, out_prompts=False)
    return await PlainConsole(link, renderer, LineReader()).run()


async def _run_interactive(
    link: KernelLink, path: Path | None, vi_mode: bool, connect: Callable[[], None]
) -> int:
    """The prompt is shown at once, and ``connect`` called once it is drawn; a
    kernel still starting is waited for by the first cell that runs. If it
    cannot start, the console ends with status 1."""
    from ._input_history import ConsoleHistory
    from ._prompt import ConsoleUI
    from ._repl import InteractiveConsole

    if not link.is_ready:
        _preload_ui()  # while the kernel boots
    history = ConsoleHistory()
    renderer = OutputRenderer(sys.stdout, ansi=True, images=image_protocol())
    ui = ConsoleUI(link, history=history, vi_mode=vi_mode)
    ui.after_drawn(_end_startup)
    ui.after_drawn(connect)
    _print_intro(link, path)
    async with open_task_set() as tasks:  # what the prompt needs ends with it
        term = Terminal(sys.stdout, tasks=tasks)
        console = InteractiveConsole(link, ui, renderer, term, connection_file=path)
        tasks.spawn(_merge_kernel_history(link, history, ui), name="loom-kernel-history")
        if link.owns_kernel:
            tasks.spawn(_announce_ready(link, console), name="loom-kernel-banner")
        else:
            tasks.spawn(_learn_count(link, console), name="loom-kernel-count")
        status = await _until_exit(console, link, renderer, tasks)
    if not link.owns_kernel:
        print(farewell_to_attached(link.state, path))
    return status


def attached_kernel_name(info: ConnectionInfo, kernel_info: JSONDict) -> str:
    """What to call a kernel we attached to: its kernelspec name if its connection file
    has one (a kernel started by a manager), else what the kernel calls itself
    (``implementation``: ``ipython`` for ipykernel), else its language."""
    language = kernel_info.get("language_info")
    for name in (
        info.kernel_name,
        kernel_info.get("implementation"),
        language.get("name") if isinstance(language, dict) else None,
    ):
        if isinstance(name, str) and name.strip():
            return name.strip()
    return "(unnamed)"


def farewell_to_attached(state: Status, path: Path | None) -> str:
    """The last line of a console leaving an attached kernel: what is true of it now."""
    if state == Status.DEAD:
        return (
            f"The kernel has died; its connection file is stale: rm {path}"
            if path is not None
            else "The kernel has died."
        )
    again = f"attach again with: loom --existing {path}"
    if state == Status.NOT_RESPONDING:
        return f"The kernel was not responding when you left; to try later, {again}"
    return f"The kernel is still running; {again}"


def _print_intro(link: KernelLink, path: Path | None) -> None:
    attached = "" if link.owns_kernel else f" (attached to {path})"
    intro = f"Loom console — kernel {link.name}{attached}. F2: help, Ctrl-D: exit.\n"
    if link.is_ready:
        print(f"{_banner(link)}\n\n{intro}")
    else:  # the banner is printed above the prompt when the kernel answers
        print(intro)


async def _until_exit(
    console: InteractiveConsole, link: KernelLink, renderer: OutputRenderer, tasks: TaskSet
) -> int:
    """Run the console until it exits (its status), or until the kernel turns out
    unable to start (the prompt is taken down, the reason printed, status 1)."""
    run = tasks.spawn(settled(console.run()), name="loom-console")
    ready = tasks.spawn(settled(link.wait_ready()), name="loom-kernel-ready")
    await asyncio.wait({run, ready}, return_when=asyncio.FIRST_COMPLETED)
    failed = link.start_error
    if failed is not None:  # a cell that waited for the kernel raised this too
        run.cancel()
        await asyncio.wait({run})  # the prompt is gone before the reason is printed
        renderer.ensure_newline()
        print(f"loom: {failed}", file=sys.stderr)
        return 1
    return (await run).unwrap()


def _end_startup() -> None:
    """Start-up is over: garbage collection, off since ``loom`` started (see
    ``shell.cli``), resumes; what start-up allocated (modules, classes) is moved
    out of the way of later collections (``gc.freeze``)."""
    gc.freeze()
    gc.enable()


def _banner(link: KernelLink) -> str:
    return str(link.kernel_info.get("banner", "")).rstrip()


async def _announce_ready(link: KernelLink, console: InteractiveConsole) -> None:
    """Once a kernel we started answers, tell the console (it prints the banner)."""
    try:
        await link.wait_ready()
    except KernelError:
        return
    console.kernel_answered()


async def _merge_kernel_history(link: KernelLink, history: ConsoleHistory, ui: ConsoleUI) -> None:
    """Add the kernel's recent history behind the console's (in the background)."""
    from ._input_history import kernel_history_entries

    try:
        await link.wait_ready()
        reply = await link.client.history("tail", n=KERNEL_HISTORY_ENTRIES, timeout=10.0)
    except (KernelError, TimeoutError):
        return
    history.add_kernel_entries(kernel_history_entries(reply))
    ui.reload_history()


async def _learn_count(link: KernelLink, console: InteractiveConsole) -> None:
    """An attached kernel's next execution count, for the first prompt.

    A silent execute reports the counter without running anything: the
    *last* count used (ipykernel and Loom's kernel agree), so the next is +1.
    """
    try:
        reply = await link.client.execute("", silent=True, store_history=False, timeout=10.0)
    except (KernelError, TimeoutError):
        return
    count = reply.content.get("execution_count")
    if isinstance(count, int) and console.count == 1:
        console.count = console.ui.count = max(count + 1, 1)
        console.ui.invalidate()
