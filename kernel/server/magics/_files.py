"""Files: ``%run`` a script, ``%load`` one into the next cell, ``%%writefile`` a cell."""

from __future__ import annotations

import builtins
import shlex
import sys
import tokenize
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernel.server.interpreter._transform import transform_cell

from ._args import UsageError, split_options, unquote

if TYPE_CHECKING:
    from ._registry import Magics

__all__ = ["load_file_magics", "select_lines"]

_MISSING = object()


def load_file_magics(magics: Magics) -> None:
    """Register ``%run``, ``%load`` and ``%%writefile`` on ``magics``."""
    files = _FileMagics(magics)
    magics.register_line("run", files.run)
    magics.register_line("load", files.load)
    magics.register_cell("writefile", files.writefile)
    magics.register_cell("file", files.writefile)  # IPython's alias


class _FileMagics:
    def __init__(self, magics: Magics) -> None:
        self._magics = magics

    def run(self, line: str) -> None:
        """Run a Python script as a program, then keep its variables.

        Usage: ``%run [-i] [-n] FILE [ARGS ...]``

        The script runs as ``__main__`` with ``sys.argv`` set to ``[FILE, ARGS...]`` and its
        directory first on ``sys.path``, in a fresh namespace whose variables are copied into
        the interactive namespace afterwards (even if the script raised). ``FILE`` may omit a
        ``.py`` suffix; an ``.ipy`` file may use IPython syntax. ``sys.exit(0)`` ends the script
        quietly.

        Options:
          -i  run in the interactive namespace itself (the script sees your variables)
          -n  do not set ``__name__`` to ``"__main__"`` (the file's stem instead)
        """
        options, rest = split_options(line, "in")
        try:
            argv = shlex.split(rest)
        except ValueError as exc:
            raise UsageError(f"%run: {exc}") from None
        if not argv:
            raise UsageError("%run: a file name is needed")
        path = _find_script(argv[0])
        code = compile(_read_script(path), str(path), "exec", dont_inherit=True)
        name = path.stem if options.get("n") else "__main__"
        user_ns = self._magics.interpreter.user_ns
        if options.get("i"):
            _run_in(code, user_ns, path, name, [argv[0], *argv[1:]])
            return
        module = types.ModuleType(name)
        module.__dict__["__builtins__"] = builtins
        module.__dict__.update(self._magics.helpers())
        try:
            _run_in(code, module.__dict__, path, name, [argv[0], *argv[1:]], module)
        finally:
            user_ns.update(
                (key, value)
                for key, value in module.__dict__.items()
                if not (key.startswith("__") and key.endswith("__"))
            )

    def load(self, line: str) -> None:
        """Put the contents of a file into the next cell, to edit before running.

        Usage: ``%load [-r RANGES] FILE``. ``-r`` picks lines: ``5``, ``5-10`` (inclusive),
        ``5:10`` (as a slice), several separated by spaces or commas (``-r "1-3 7"``).
        The text starts with a ``# %load ...`` comment, as in IPython.
        """
        options, rest = split_options(line, "r:")
        path = Path(unquote(rest)).expanduser()
        if not rest.strip():
            raise UsageError("%load: a file name is needed")
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(f"File `{path}` not found.") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"%load: cannot read {path}: {exc}") from None
        ranges = options.get("r")
        if isinstance(ranges, str):
            text = select_lines(text, ranges)
        self._magics.interpreter.payload.append(
            {
                "source": "set_next_input",
                "text": f"# %load {line.strip()}\n{text}",
                "replace": False,
            }
        )

    def writefile(self, line: str, body: str) -> None:
        """Write the rest of the cell to a file.

        Usage: ``%%writefile [-a] FILE``. ``-a`` (or ``--append``) appends instead of
        overwriting. Prints ``Writing FILE``, ``Overwriting FILE`` or ``Appending to FILE``.
        """
        options, rest = split_options(line, "a", ("append",))
        filename = unquote(rest)
        if not filename:
            raise UsageError("%%writefile: a file name is needed")
        path = Path(filename).expanduser()
        append = bool(options.get("a") or options.get("append"))
        if append:
            print(f"Appending to {filename}")
        elif path.exists():
            print(f"Overwriting {filename}")
        else:
            print(f"Writing {filename}")
        with path.open("a" if append else "w", encoding="utf-8") as file:
            file.write(body)


def _run_in(
    code: types.CodeType,
    namespace: dict[str, Any],
    path: Path,
    name: str,
    argv: list[str],
    module: types.ModuleType | None = None,
) -> None:
    """Execute ``code`` in ``namespace`` as a program; restores everything it changes."""
    saved = {key: namespace.get(key, _MISSING) for key in ("__name__", "__file__")}
    saved_argv, saved_path = sys.argv, list(sys.path)
    saved_main = sys.modules.get("__main__")
    namespace.update(__name__=name, __file__=str(path))
    sys.argv = argv
    sys.path.insert(0, str(path.parent))
    if module is not None and name == "__main__":
        sys.modules["__main__"] = module  # so pickle finds the script's classes
    try:
        exec(code, namespace)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path
        if saved_main is not None:
            sys.modules["__main__"] = saved_main
        if module is None:
            for key, value in saved.items():
                if value is _MISSING:
                    namespace.pop(key, None)
                else:
                    namespace[key] = value


def _find_script(name: str) -> Path:
    path = Path(name).expanduser()
    for candidate in (path, path.with_name(path.name + ".py")):
        if candidate.is_file():
            return candidate.resolve()
    raise UsageError(f"File `{name}` not found.")


def _read_script(path: Path) -> str:
    try:
        with tokenize.open(path) as file:  # honours a PEP 263 encoding cookie
            source = file.read()
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        raise UsageError(f"%run: cannot read {path}: {exc}") from None
    return transform_cell(source) if path.suffix == ".ipy" else source


def select_lines(text: str, ranges: str) -> str:
    """The lines of ``text`` that ``ranges`` picks (``%load -r``): 1-based ``N``, ``N-M``
    inclusive, ``N:M`` as a slice, separated by spaces or commas, in the order given.

    Raises :class:`UsageError` for a malformed range.
    """
    lines = text.splitlines(keepends=True)
    picked: list[str] = []
    for part in ranges.replace(",", " ").split():
        try:
            if "-" in part:
                start, _, stop = part.partition("-")
                picked += lines[int(start) - 1 : int(stop)]
            elif ":" in part:
                start, _, stop = part.partition(":")
                picked += lines[int(start or 1) - 1 : int(stop) - 1 if stop else None]
            else:
                picked += lines[int(part) - 1 : int(part)]
        except ValueError:
            raise UsageError(f"%load -r: bad line range {part!r}") from None
    return "".join(picked)
