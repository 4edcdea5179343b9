"""Cells run by another program: ``%%script``, and ``%%bash``, ``%%sh``, ``%%python``,
``%%python3``, ``%%perl``, ``%%ruby``, ``%%pypy`` as IPython has them.

The program's output streams live into the cell's output (``_system.run_command``). As in
IPython, ``%%script PROGRAM ARGS`` writes the cell to the program's stdin, and a non-zero
exit status raises ``CalledProcessError`` unless ``--no-raise-error``; ``--out VAR`` /
``--err VAR`` store a stream's text in a variable instead of showing it. ``%%bash`` and
``%%sh`` pass the cell with ``-c`` (so the script's own stdin stays free). ``%%python``
and ``%%python3`` run the kernel's own interpreter. ``--bg`` starts the program in the
background and ends the cell at once (``--out``/``--err``/``--proc`` then bind awaitable
streams and the process: ``_background``); ``%killbgscripts`` ends those still running.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

from ._args import UsageError, split_options
from ._system import run_command

if TYPE_CHECKING:
    from ._background import BackgroundScripts
    from ._registry import Magics

__all__ = ["load_script_magics"]

_OPTIONS = ("out=", "err=", "no-raise-error", "bg", "proc=")
#: Shortcut cell magics and the command each runs (IPython's defaults).
_SHORTCUTS = {
    "python": sys.executable,
    "python3": sys.executable,
    "python2": "python2",
    "perl": "perl",
    "ruby": "ruby",
    "pypy": "pypy",
}


def load_script_magics(magics: Magics) -> None:
    """Register ``%%script``, ``%%bash``, ``%%sh`` and the interpreter shortcuts."""
    scripts = _ScriptMagics(magics)
    magics.register_cell("script", scripts.script)
    magics.register_cell("bash", scripts.bash)
    magics.register_cell("sh", scripts.sh)
    magics.register_line("killbgscripts", scripts.killbgscripts)
    for name, command in _SHORTCUTS.items():
        magics.register_cell(name, scripts.shortcut(name, command))


class _ScriptMagics:
    def __init__(self, magics: Magics) -> None:
        self._magics = magics
        self._background: BackgroundScripts | None = None  # made by the first --bg cell

    def script(self, line: str, body: str) -> None:
        """Run the cell with a program, which reads it on its stdin.

        Usage: ``%%script [--out VAR] [--err VAR] [--no-raise-error] [--bg [--proc VAR]]
        PROGRAM [ARGS...]``, e.g. ``%%script python3 -u``. The output streams live;
        ``--out``/``--err`` store it in a variable instead. A non-zero exit status raises
        ``CalledProcessError`` unless ``--no-raise-error``. ``--bg`` runs it in the
        background: the cell ends at once, ``--out``/``--err`` name stream readers
        (``await VAR.read()`` in a later cell; otherwise the output is dropped) and ``--proc``
        the process (``await VAR.wait()``); ``%killbgscripts`` ends them.
        """
        options, command = split_options(line, "", _OPTIONS)
        if not command:
            raise UsageError("%%script needs a program to run, e.g. %%script python3")
        self._run(options, shlex.split(command), body)

    def bash(self, line: str, body: str) -> None:
        """Run the cell with ``bash``, output streaming.

        Usage: ``%%bash [--out VAR] [--err VAR] [--no-raise-error]``. ``--out``/``--err``
        store the output text in a variable instead of showing it. A non-zero exit status
        raises ``CalledProcessError`` unless ``--no-raise-error``.
        """
        options, _ = split_options(line, "", _OPTIONS)
        self._run(options, ["bash", "-c", body], None)

    def sh(self, line: str, body: str) -> None:
        """Run the cell with ``sh``, output streaming; options as ``%%bash?``."""
        options, _ = split_options(line, "", _OPTIONS)
        self._run(options, ["sh", "-c", body], None)

    def shortcut(self, name: str, command: str) -> _Shortcut:
        return _Shortcut(self, name, command)

    def _run(self, options: dict[str, str | bool], argv: list[str], stdin: str | None) -> None:
        out_name, err_name = options.get("out"), options.get("err")
        namespace = self._magics.call_site.globals
        for name in (out_name, err_name):
            if isinstance(name, str):
                namespace[name] = ""  # as IPython: set even when the program is missing
        if shutil.which(argv[0]) is None:
            # As IPython: a line on stdout, not an error (the notebook goes on); and before
            # looking at --bg/--proc, which IPython reads only once the program started.
            print(f"Couldn't find program: {argv[0]!r}")
            return
        if options.get("bg"):
            self._start_background(options, argv, stdin)
            return
        stopped: list[str] = []
        try:
            status, out, err = run_command(
                argv,
                capture_stdout=isinstance(out_name, str),
                capture_stderr=isinstance(err_name, str),
                input=stdin,
                on_interrupt=stopped.append,
            )
        except FileNotFoundError:
            print(f"Couldn't find program: {argv[0]!r}")
            return
        if stopped:
            # As IPython 9: an interrupted script says how it ended, and is an error (a
            # CalledProcessError with its signal) unless --no-raise-error.
            print(f"Process was {stopped[0]}.")
        else:
            if isinstance(out_name, str):
                namespace[out_name] = out
            if isinstance(err_name, str):
                namespace[err_name] = err
        if status != 0 and not options.get("no-raise-error"):
            # The cell as bytes, as IPython reports it (its message shows b'...').
            cell = stdin if stdin is not None else argv[-1]
            raise subprocess.CalledProcessError(status, cell.encode("utf8", "replace"))

    def _start_background(
        self, options: dict[str, str | bool], argv: list[str], stdin: str | None
    ) -> None:
        out_name, err_name, proc_name = (options.get(key) for key in ("out", "err", "proc"))
        from ._background import BackgroundScripts, LoopProxy  # only for --bg: start-up

        if self._background is None:
            self._background = BackgroundScripts()
        cell = stdin if stdin is None or stdin.endswith("\n") else stdin + "\n"
        try:
            process, loop = self._background.start(
                argv,
                (cell or "").encode("utf8", "replace"),
                keep_stdout=isinstance(out_name, str),
                keep_stderr=isinstance(err_name, str),
            )
        except FileNotFoundError:
            print(f"Couldn't find program: {argv[0]!r}")
            return
        namespace = self._magics.call_site.globals
        if isinstance(out_name, str):
            namespace[out_name] = LoopProxy(process.stdout, loop)
        if isinstance(err_name, str):
            namespace[err_name] = LoopProxy(process.stderr, loop)
        if isinstance(proc_name, str):
            namespace[proc_name] = LoopProxy(process, loop)

    def close_background(self) -> None:
        """End the background scripts and their loop's thread (tests; the kernel's exit)."""
        if self._background is not None:
            self._background.close()

    def killbgscripts(self, line: str) -> None:
        """End every script started with ``%%script --bg`` that is still running.

        Usage: ``%killbgscripts``. Each gets SIGINT, then SIGTERM, then SIGKILL, 0.1 s apart.
        """
        if self._background is not None:
            self._background.kill_all()
        print("All background processes were killed.")


class _Shortcut:
    """``%%python`` and friends: ``%%script COMMAND`` with the magic line's arguments."""

    def __init__(self, scripts: _ScriptMagics, name: str, command: str) -> None:
        self._scripts = scripts
        self.__doc__ = (
            f"Run the cell with {name} (``%%script {name}``); options as ``%%script?``.\n\n"
            f"Usage: ``%%{name} [--out VAR] [--err VAR] [--no-raise-error] [ARGS...]``"
        )
        self._command = command

    def __call__(self, line: str, body: str) -> None:
        options, args = split_options(line, "", _OPTIONS)
        self._scripts._run(options, [self._command, *shlex.split(args)], body)
