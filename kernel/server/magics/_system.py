"""Shell commands: ``!cmd``, ``x = !cmd``, ``%cd``, ``%pwd``, ``%env``, ``%pip``; and
:func:`run_command`, which ``%%script`` and friends (``_script_magics``) use too.

Theory of operation
-------------------
A child process writes straight into this process's standard output and error *file
descriptors* (``sys.stdout.fileno()``; in the kernel that is the pipe the I/O thread publishes
from), so its output streams live, interleaved as it was written. ``sys.stdout``/``sys.stderr``
are flushed first so text printed before the command comes before its output. When a stream
has no file descriptor (``%%capture`` swapped in a ``StringIO``), the child's output comes
through a pipe that this thread copies to the stream while it waits, with a selector: no thread.

The child runs in its own process group with stdin from ``/dev/null`` (a command reading its
stdin ends instead of hanging the kernel), or fed the text it is given (``%%script``), written
by the same selector loop as it becomes writable, so a child that fills its output pipe
before reading all of its input cannot deadlock. A ``KeyboardInterrupt`` while waiting (the kernel's
interrupt) sends SIGINT to the whole group, then SIGKILL after :data:`INTERRUPT_GRACE` seconds,
and is re-raised.
"""

from __future__ import annotations

import builtins
import codecs
import contextlib
import os
import selectors
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import IO, TYPE_CHECKING, SupportsIndex, TextIO

from ._args import UsageError, split_options, unquote

if TYPE_CHECKING:
    from ._registry import Magics

__all__ = ["SList", "getoutput", "load_shell_magics", "run_command", "system"]

#: Seconds an interrupted child gets to exit after SIGINT before it is killed.
INTERRUPT_GRACE = 2.0
#: Environment variables whose names contain these are shown as ``<hidden>`` by ``%env``.
_SECRET_WORDS = ("key", "token", "secret", "pass")


class SList(list[str]):
    """The lines a command printed (``x = !cmd``), as IPython's ``SList``.

    ``.s`` joins them with spaces, ``.n`` with newlines; ``.l``/``.list`` is the list itself;
    ``.grep(pattern)`` and ``.fields(*indexes)`` filter and split.
    """

    @property
    def s(self) -> str:
        return " ".join(self)

    @property
    def n(self) -> str:
        return "\n".join(self)

    @property
    def l(self) -> list[str]:  # noqa: E743 - IPython's name
        return list(self)

    def grep(self, pattern: str, prune: bool = False) -> SList:
        """Lines containing ``pattern`` (a regular expression); ``prune`` keeps the others."""
        import re

        regex = re.compile(pattern)
        return SList(line for line in self if (regex.search(line) is None) == prune)

    def fields(self, *indexes: SupportsIndex) -> SList:
        """Whitespace-split columns of each line: all of them, or those at ``indexes`` joined
        by a space. Lines without such a column contribute nothing."""
        out = SList()
        for line in self:
            words = line.split()
            if not indexes:
                out.append(" ".join(words))
                continue
            picked = [words[i] for i in indexes if -len(words) <= int(i) < len(words)]
            if picked:
                out.append(" ".join(picked))
        return out

    @property
    def list(self) -> builtins.list[str]:
        return builtins.list(self)


def system(cmd: str) -> int:
    """Run ``cmd`` with ``/bin/sh``, its output streaming to stdout/stderr; return its status.

    The status is the exit code, or ``-N`` if signal ``N`` ended the command.
    """
    status, _, _ = run_command(cmd, shell=True)
    return status


def getoutput(cmd: str) -> SList:
    """Run ``cmd`` with ``/bin/sh`` and return its output lines (stderr included) as an SList."""
    _, out, _ = run_command(cmd, shell=True, capture_stdout=True, merge_stderr=True)
    return SList((out or "").splitlines())


def run_command(
    args: str | Sequence[str],
    *,
    shell: bool = False,
    capture_stdout: bool = False,
    capture_stderr: bool = False,
    merge_stderr: bool = False,
    input: str | None = None,
    on_interrupt: Callable[[str], None] | None = None,
) -> tuple[int, str | None, str | None]:
    """Run a command; return ``(status, stdout, stderr)``, the texts ``None`` unless captured.

    Output not captured goes to ``sys.stdout``/``sys.stderr`` as described in the module
    docstring; ``merge_stderr`` sends stderr wherever stdout goes. ``input`` is written to the
    command's stdin (UTF-8), which is then closed; without it stdin is ``/dev/null``. Raises
    ``OSError`` if the command cannot be started. Interrupted, it stops the child, then
    raises ``KeyboardInterrupt``; or, given ``on_interrupt``, calls it with how the child
    ended (``"interrupted"`` or ``"killed"``) and returns its status (what was captured
    before is dropped).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    out_target, out_sink = _target(sys.stdout, capture_stdout)
    merged: tuple[int, TextIO | None] = (subprocess.STDOUT, None)
    err_target, err_sink = merged if merge_stderr else _target(sys.stderr, capture_stderr)
    proc = subprocess.Popen(
        args,
        shell=shell,
        stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
        stdout=out_target,
        stderr=err_target,
        process_group=0,
    )
    captured: dict[int, list[str]] = {}
    try:
        pipes = [(1, proc.stdout, out_sink), (2, proc.stderr, err_sink)]
        feed = None if proc.stdin is None else (proc.stdin, (input or "").encode())
        captured = _pump([(key, pipe, sink) for key, pipe, sink in pipes if pipe is not None], feed)
        status = proc.wait()
    except KeyboardInterrupt:
        how = _stop(proc)
        if on_interrupt is None:
            # A fresh one, raised here: the traceback shows the user's line, not the
            # subprocess module's wait that the signal happened to land in.
            raise KeyboardInterrupt from None
        on_interrupt(how)
        status, captured = proc.returncode, {1: [], 2: []}
    finally:
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None and not pipe.closed:
                pipe.close()
    out = "".join(captured[1]) if capture_stdout else None
    err = "".join(captured[2]) if capture_stderr and not merge_stderr else None
    return status, out, err


def _target(stream: TextIO, capture: bool) -> tuple[int, TextIO | None]:
    """Where a child's stream goes: the stream's fd, or a pipe copied to ``sink`` (``None``:
    collected)."""
    if capture:
        return subprocess.PIPE, None
    try:
        return stream.fileno(), None
    except (AttributeError, OSError, ValueError):
        return subprocess.PIPE, stream


def _pump(
    pipes: Iterable[tuple[int, IO[bytes], TextIO | None]],
    feed: tuple[IO[bytes], bytes] | None = None,
) -> dict[int, list[str]]:
    """Copy each pipe to its sink, or collect its text under its key when the sink is ``None``,
    until every pipe reaches end of file; meanwhile write ``feed``'s bytes to its pipe."""
    collected: dict[int, list[str]] = {1: [], 2: []}
    with selectors.DefaultSelector() as selector:
        for key, pipe, sink in pipes:
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            selector.register(pipe, selectors.EVENT_READ, (key, sink, decoder))
        pending = memoryview(feed[1]) if feed is not None else memoryview(b"")
        if feed is not None:
            selector.register(feed[0], selectors.EVENT_WRITE, None)
        while selector.get_map():
            for selected, _ in selector.select():
                if selected.data is None:
                    pending = _feed(selector, selected.fileobj, pending)  # type: ignore[arg-type]
                    continue
                key, sink, decoder = selected.data
                chunk = os.read(selected.fd, 65536)
                text = decoder.decode(chunk, final=not chunk)
                if not chunk:
                    selector.unregister(selected.fileobj)
                if text and sink is not None:
                    sink.write(text)
                    sink.flush()
                elif text:
                    collected[key].append(text)
    return collected


def _feed(selector: selectors.BaseSelector, pipe: IO[bytes], pending: memoryview) -> memoryview:
    """Write what the pipe takes of ``pending``; close it when all is written (or the child
    closed its end). Returns what is left."""
    try:
        written = os.write(pipe.fileno(), pending[:65536]) if pending else 0
    except BrokenPipeError:
        written = len(pending)
    pending = pending[written:]
    if not pending:
        selector.unregister(pipe)
        pipe.close()
    return pending


def _stop(proc: subprocess.Popen[bytes]) -> str:
    """Interrupt the child's process group; kill it if it has not exited after the grace.
    Returns ``"interrupted"`` or ``"killed"``: which ended it."""
    try:
        _signal_group(proc, signal.SIGINT)
        proc.wait(timeout=INTERRUPT_GRACE)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
        return "killed"
    return "interrupted"


def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(proc.pid, signum)


def load_shell_magics(magics: Magics) -> None:
    """Register ``%cd``, ``%pwd``, ``%env`` and ``%pip`` on ``magics``."""
    shell = _ShellMagics(magics)
    magics.register_line("cd", shell.cd)
    magics.register_line("pwd", shell.pwd)
    magics.register_line("env", shell.env)
    magics.register_line("pip", shell.pip)


class _ShellMagics:
    def __init__(self, magics: Magics) -> None:
        self._magics = magics
        self._previous_dir: str | None = None

    def cd(self, line: str) -> None:
        """Change the working directory and print the new one.

        Usage: ``%cd [-q] [DIR]``. No DIR goes home; ``-`` goes back to the previous
        directory; ``~`` is expanded. ``-q`` does not print.
        """
        options, target = split_options(line, "q")
        target = unquote(target)
        if not target:
            target = os.path.expanduser("~")
        elif target == "-":
            if self._previous_dir is None:
                raise UsageError("cd -: there is no previous directory")
            target = self._previous_dir
        current = os.getcwd()
        try:
            os.chdir(os.path.expanduser(target))
        except OSError as exc:
            raise UsageError(f"cd: {exc.strerror}: {target!r}") from None
        self._previous_dir = current
        if not options.get("q"):
            print(os.getcwd())

    def pwd(self, line: str) -> str:
        """Return the current working directory.

        Usage: ``%pwd``
        """
        return os.getcwd()

    def env(self, line: str) -> object:
        """Get, set or list environment variables.

        Usage:
          %env             a dict of all variables (secret-looking values hidden)
          %env VAR         the value of VAR
          %env VAR=value   set VAR (also ``%env VAR value``); ``{expr}``/``$name`` expand
        """
        line = line.strip()
        if not line:
            return {
                name: "<hidden>" if _looks_secret(name) else value
                for name, value in os.environ.items()
            }
        if "=" in line:
            name, _, value = line.partition("=")
        else:
            name, _, value = line.partition(" ")
            if not value.strip():
                try:
                    return os.environ[name]
                except KeyError:
                    raise UsageError(f"Environment does not have key: {name}") from None
        name, value = name.strip(), value.strip()
        if not name:
            raise UsageError("%env: a variable name is needed")
        os.environ[name] = value
        print(f"env: {name}={value}")
        return None

    def pip(self, line: str) -> None:
        """Run pip in the kernel's Python (``sys.executable -m pip``), output streaming.

        Usage: ``%pip install PACKAGE`` (any pip arguments). Restart the kernel to use an
        upgraded package that was already imported.
        """
        system(f"{shlex.quote(sys.executable)} -m pip {line}")
        print("Note: you may need to restart the kernel to use updated packages.")


def _looks_secret(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)
