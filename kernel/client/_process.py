"""``KernelProcess``: a launched kernel, watched without threads.

``asyncio.create_subprocess_exec`` is not used: on Python 3.11 its default
child watcher (``ThreadedChildWatcher``) starts one thread per child, and the
console must never run a second Python thread. Instead the process is started
with :class:`subprocess.Popen` and its exit is learnt from a *pidfd*
(``os.pidfd_open``, Linux >= 5.3), which becomes readable when the process
exits and can be watched with ``loop.add_reader`` like any socket.

The kernel gets a session (and process group) of its own, so the Ctrl-C the
terminal sends to the console's foreground group never reaches it directly:
interrupting is the front end's decision. Its stdout and stderr go to an
anonymous temporary file (never a pipe, which would fill up and block the
kernel), so a failed start can be explained with the tail of its output.
The file lives as long as the process object and is not size-limited: kernels
write little there (ipykernel forwards user output over iopub). A launcher's command
(``mpiexec``, ``ssh``) passes ``log=``: its output is appended to that named file
instead, and ``stdin_pipe=True`` gives it a stdin the owner writes to and closes.

:func:`until_exit` awaits anything (a heartbeat, a reply) *racing* the
process's exit, so a waiter learns of a dead kernel at once, not at a timeout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

# asyncio is imported where it is used: a controller spawns its engines' fork server
# before it imports asyncio (~25 ms of CPU), and spawning needs only Popen.
if TYPE_CHECKING:
    import asyncio

__all__ = [
    "KernelProcess",
    "ProcessExited",
    "describe_exit",
    "exited_within",
    "until_exit",
    "wait_pid_exit",
]

T = TypeVar("T")


class KernelProcess:
    """One kernel process: signals, state predicates and an async ``wait``.

    Spawning raises ``OSError`` (e.g. ``FileNotFoundError`` for a missing
    executable). The owner must make the process exit and call :meth:`close`.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        pass_fds: Sequence[int] = (),
        log: Path | None = None,
        stdin_pipe: bool = False,
        stdout_pipe: bool = False,
    ) -> None:
        # ``stdout_pipe``: the output (stdout and stderr) comes on :attr:`stdout` as it is
        # written, for an owner that reads it live (the ssh launcher's agent reports) and
        # writes it to ``log`` itself. The output file is owned by this object (closed in
        # close()), so no context manager.
        if log is None:
            self._output: IO[bytes] = tempfile.TemporaryFile(prefix="loom-kernel-")  # noqa: SIM115
        else:  # appended to (a launcher's commands share one log), owner-only
            fd = os.open(log, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            self._output = os.fdopen(fd, "r+b")
        try:
            self._popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else self._output,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
                pass_fds=tuple(pass_fds),  # e.g. a pipe on which the child says it is ready
            )
        except BaseException:
            self._output.close()
            raise
        # Opening the pidfd after Popen is race-free: the PID cannot be reused
        # before we reap the child, and only this object reaps it.
        self._pidfd: int | None = os.pidfd_open(self._popen.pid)
        self._exited: asyncio.Future[int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def stdin(self) -> IO[bytes] | None:
        """The process's stdin, with ``stdin_pipe=True``."""
        return self._popen.stdin

    @property
    def stdout(self) -> IO[bytes] | None:
        """The process's output, with ``stdout_pipe=True``."""
        return self._popen.stdout

    def close_stdin(self) -> None:
        """End the process's stdin (``ssh`` passes the EOF on to the remote command)."""
        if self._popen.stdin is not None and not self._popen.stdin.closed:
            with contextlib.suppress(OSError):
                self._popen.stdin.close()

    @property
    def returncode(self) -> int | None:
        """The exit status (negative: killed by that signal), or None while running."""
        return self._popen.poll()

    def is_alive(self) -> bool:
        """True until the process has exited (a stopped process is alive)."""
        return self.returncode is None

    def is_stopped(self) -> bool:
        """True if the process is stopped by a signal (``/proc/PID/stat`` state ``T``).

        A SIGSTOPped kernel stops answering its heartbeat, like a dead one, but
        will resume on SIGCONT; this tells the two apart.
        """
        if not self.is_alive():
            return False
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return False
        # The command name in parentheses may itself contain ") "; the state
        # is the first field after the *last* closing parenthesis.
        return stat.rpartition(")")[2].split()[0] == "T"

    async def wait(self) -> int:
        """Wait for the process to exit and return its exit status.

        Any number of tasks may wait at once; cancelling one waiter does not
        affect the others.
        """
        import asyncio

        code = self.returncode
        if code is not None:
            self._settle(code)
            return code
        if self._exited is None:
            if self._pidfd is None:
                raise RuntimeError("wait() on a closed KernelProcess")
            self._loop = asyncio.get_running_loop()
            self._exited = self._loop.create_future()
            self._loop.add_reader(self._pidfd, self._on_exit)
        return await asyncio.shield(self._exited)

    def _on_exit(self) -> None:
        # A readable pidfd means the process has exited, so this poll reaps it.
        # (If something else reaped it first, Popen reports 0 rather than None.)
        code = self._popen.poll()
        if code is not None:  # None is not expected; stay registered rather than lose the exit
            self._settle(code)

    def _settle(self, code: int) -> None:
        self._release_pidfd()
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(code)

    def _release_pidfd(self) -> None:
        if self._pidfd is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = None

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the kernel's process group (its own, see module doc).

        Falls back to the process alone if the group is gone (the kernel moved
        itself out of it). Once the kernel has been reaped this still reaches
        what remains of its group (processes the kernel started), which is how
        shutdown clears stragglers; nothing is signalled if none remain.
        """
        alive = self.is_alive()
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            if alive:
                with contextlib.suppress(ProcessLookupError):  # exited meanwhile
                    os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the process group."""
        self.send_signal(signal.SIGKILL)

    def reap_blocking(self, timeout: float = 5.0) -> int | None:
        """SIGKILL and reap synchronously; the last resort when async cleanup was cancelled."""
        if self.is_alive():
            self.kill()
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
        return self.returncode

    def output_tail(self, limit: int = 4000) -> str:
        """The last ``limit`` bytes the process wrote to stdout/stderr, decoded leniently."""
        if self._output.closed:
            return ""
        fd = self._output.fileno()
        size = os.fstat(fd).st_size
        # pread, not seek+read: the child shares this file offset while it runs.
        start = max(0, size - limit)
        return os.pread(fd, size - start, start).decode("utf-8", "replace")

    def close(self) -> None:
        """Release the pidfd, stdin and the output file. Does not stop the process."""
        self.close_stdin()
        code = self.returncode
        if code is not None:
            self._settle(code)  # waiters learn the exit even if it was reaped synchronously
        else:
            self._release_pidfd()
            if self._exited is not None and not self._exited.done():
                self._exited.cancel()
        if self._popen.stdout is not None:  # stdout_pipe: its reader may have closed it
            with contextlib.suppress(OSError):
                self._popen.stdout.close()
        self._output.close()

    def __repr__(self) -> str:
        return f"<KernelProcess pid={self.pid} returncode={self.returncode}>"


# -- waiting on something while watching the process ---------------------------


class ProcessExited(Exception):
    """The process exited (with status ``code``) while we waited for something else."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


async def until_exit(proc: KernelProcess, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable``; raise :class:`ProcessExited` instead if ``proc`` exits first.

    An exit wins a tie: a kernel that answered and then died is not running.
    Both helper tasks have ended when this returns.
    """
    import asyncio

    main = asyncio.ensure_future(awaitable)
    exited = asyncio.ensure_future(proc.wait())
    try:
        await asyncio.wait((main, exited), return_when=asyncio.FIRST_COMPLETED)
    finally:
        main.cancel()
        exited.cancel()
        await asyncio.wait((main, exited))  # cancelled tasks end promptly
    if not exited.cancelled():
        if not main.cancelled():
            main.exception()  # mark retrieved; the exit is the news
        raise ProcessExited(exited.result())
    return main.result()


async def exited_within(proc: KernelProcess, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``proc`` to exit; True if it did."""
    import asyncio

    try:
        async with asyncio.timeout(seconds):
            await proc.wait()
    except TimeoutError:
        return False
    return True


def describe_exit(code: int) -> str:
    """``"exited with code 3"`` or ``"was killed by SIGKILL"`` for a Popen-style status."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"


def wait_pid_exit(pid: int, timeout: float) -> bool:
    """Block until process ``pid`` (a child or not) has exited, or ``timeout`` seconds
    passed; True if it exited. A pidfd: no polling."""
    import select

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)
