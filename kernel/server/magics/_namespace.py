"""The user's variables: ``%who``, ``%who_ls``, ``%whos`` and ``%reset``.

A *user variable* is a name of the interpreter's namespace that does not start with ``_`` and
is not one the kernel defined (a name in :attr:`Magics.hidden` still bound to the same object).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._args import UsageError, split_options

if TYPE_CHECKING:
    from ._registry import Magics

__all__ = ["load_namespace_magics"]

_SEQUENCES = ("dict", "list", "tuple")
_COLUMN_GAP = 3
#: ``%whos`` shows longer values as their first and last 25 characters.
_MAX_DATA = 50
_MISSING = object()


def load_namespace_magics(magics: Magics) -> None:
    """Register ``%who``, ``%who_ls``, ``%whos`` and ``%reset`` on ``magics``."""
    namespace = _NamespaceMagics(magics)
    magics.register_line("who", namespace.who)
    magics.register_line("who_ls", namespace.who_ls)
    magics.register_line("whos", namespace.whos)
    magics.register_line("reset", namespace.reset)


class _NamespaceMagics:
    def __init__(self, magics: Magics) -> None:
        self._magics = magics

    def who_ls(self, line: str) -> list[str]:
        """Return a sorted list of the user's variables.

        Usage: ``%who_ls [TYPE ...]`` keeps only values whose type name is one of the TYPEs
        (``%who_ls int str``).
        """
        ns = self._magics.interpreter.user_ns
        hidden = self._magics.hidden
        names = [
            name
            for name, value in ns.items()
            if not name.startswith("_") and value is not hidden.get(name, _MISSING)
        ]
        types = set(line.split())
        if types:
            names = [name for name in names if type(ns[name]).__name__ in types]
        return sorted(names)

    def who(self, line: str) -> None:
        """Print the user's variables, optionally only those of the given types.

        Usage: ``%who [TYPE ...]``, e.g. ``%who function str``.
        """
        names = self.who_ls(line)
        if not names:
            print(
                "No variables match your requested type."
                if line.strip()
                else "Interactive namespace is empty."
            )
            return
        rows = [names[i : i + 9] for i in range(0, len(names), 9)]
        print("\n".join("\t ".join(row) + "\t " for row in rows))

    def whos(self, line: str) -> None:
        """Print a table of the user's variables: name, type and a summary of the value.

        Usage: ``%whos [TYPE ...]``. Containers show their length, arrays their shape,
        size and dtype, data frames their shape; other values their ``str``, cut in the
        middle when long.
        """
        names = self.who_ls(line)
        if not names:
            print(
                "No variables match your requested type."
                if line.strip()
                else "Interactive namespace is empty."
            )
            return
        ns = self._magics.interpreter.user_ns
        types = [type(ns[name]).__name__ for name in names]
        name_width = max(len("Variable"), *map(len, names)) + _COLUMN_GAP
        type_width = max(len("Type"), *map(len, types)) + _COLUMN_GAP
        lines = [
            "Variable".ljust(name_width) + "Type".ljust(type_width) + " Data/Info",
            "-" * (name_width + type_width + len("Data/Info") + 1),
        ]
        for name, type_name in zip(names, types, strict=True):
            summary = _summary(ns[name], type_name)
            lines.append(f"{name:<{name_width}}{type_name:<{type_width}} {summary}")
        print("\n".join(lines))

    def reset(self, line: str) -> None:
        """Delete the user's variables (and the output history ``Out``, ``_``, ``_N``).

        Usage: ``%reset [-f] [-s]`` or ``%reset out``.

        IPython asks for confirmation first; Loom cannot ask, so ``%reset`` acts as
        ``%reset -f`` and prints a note (``-f`` silences it). ``-s`` (soft) keeps the output
        history. ``%reset out`` only clears the output history. The input history ``In`` is
        kept. Names the kernel defined come back as they were.
        """
        options, rest = split_options(line, "fs")
        if rest not in ("", "out"):
            raise UsageError(f"%reset: unknown argument {rest!r} (use -f, -s or out)")
        if not options.get("f"):
            print("Note: Loom cannot ask for confirmation; resetting as %reset -f would.")
        if rest == "out" or not options.get("s"):
            self._reset_output_history()
        if rest == "out":
            return
        ns = self._magics.interpreter.user_ns
        hidden = self._magics.hidden
        soft = bool(options.get("s"))
        for name in list(ns):
            if soft and _is_output_history(name):
                continue
            if ns[name] is not hidden.get(name, _MISSING):
                del ns[name]
        ns.update({k: v for k, v in hidden.items() if not (soft and _is_output_history(k))})

    def _reset_output_history(self) -> None:
        ns = self._magics.interpreter.user_ns
        out = ns.get("Out")
        if isinstance(out, dict):
            for count in out:
                ns.pop(f"_{count}", None)
            out.clear()
        ns.update(_="", __="", ___="")


def _is_output_history(name: str) -> bool:
    return name in ("_", "__", "___") or (name[:1] == "_" and name[1:].isdigit())


def _summary(value: object, type_name: str) -> str:
    """``%whos``'s Data/Info column for ``value``."""
    if type_name in _SEQUENCES:
        return f"n={len(value)}"  # type: ignore[arg-type]
    shape = getattr(value, "shape", None)
    if type_name == "ndarray" and shape is not None:
        size = getattr(value, "size", 0)
        nbytes = size * getattr(value, "itemsize", 0)
        dims = "x".join(str(d) for d in shape)
        return f"{dims}: {size} elems, type `{getattr(value, 'dtype', '?')}`, {nbytes} bytes"
    if type_name in ("DataFrame", "Series") and shape is not None:
        return f"Shape: {shape}"
    try:
        text = str(value)
    except Exception:
        text = f"<object with id {id(value)} (str() failed)>"
    text = text.replace("\n", "\\n")
    if len(text) < _MAX_DATA:
        return text
    return text[:25] + "<...>" + text[-25:]
