"""The magic registry, and the ``_loom_*_`` helpers that transformed cells call.

:func:`~kernel.server.interpreter._transform.transform_cell` turns ``%name args`` into
``_loom_magic_("name", "args")`` and so on; :meth:`Magics.install` puts those helpers in the
user namespace. A helper records where it was called from (a :class:`CallSite`: the cell's
file name and line, and its namespaces), expands ``{expr}``/``$name`` in the arguments there,
and dispatches to the registered function. Magics that run Python (``%time``, ``%%capture``...)
compile it at the call site's file and line, so tracebacks point at the user's cell.

The built-in magics live in one module per job (``_timing``, ``_system``, ``_namespace``,
``_files``, ``_history_magics``, ``_output_magics``, ``_extensions``, ``_display_magics``,
``_script_magics``, ``_config_magics``, ``_profile_magics``, ``_debug_magics``); each has a
``load_*_magics(magics)`` function that registers its magics here. Other packages add
theirs through ``%load_ext`` (see ``_extensions``), so ``kernel`` never imports them.
"""

from __future__ import annotations

import builtins
import fnmatch
import inspect
import sys
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from kernel.server.introspection._inspection import format_help
from kernel.server.introspection._lookup import resolve

from ._args import UsageError, expand_vars, split_options
from ._config_magics import load_config_magics
from ._debug_magics import load_debug_magics
from ._display_magics import load_display_magics
from ._extensions import load_extension_magics
from ._files import load_file_magics
from ._history_magics import load_history_magics
from ._namespace import load_namespace_magics
from ._output_magics import load_output_magics
from ._profile_magics import load_profile_magics
from ._script_magics import load_script_magics
from ._system import SList, getoutput, load_shell_magics, system
from ._timing import load_timing_magics

if TYPE_CHECKING:
    from ._context import MagicContext

__all__ = [
    "CANNOT_AWAIT",
    "HELPERS",
    "CallSite",
    "CellMagic",
    "LineMagic",
    "Magics",
    "SList",
    "UsageError",
]

#: ``fn(args)``: a line magic; what it returns is the value of the ``%name args`` expression.
LineMagic = Callable[[str], object]
#: ``fn(args, body)``: a cell magic; ``args`` is the rest of the ``%%name`` line.
CellMagic = Callable[[str, str], object]

#: True while an async magic runs for a caller that cannot await it
#: (``get_ipython().run_line_magic(...)`` in a cell): the magic must then finish without
#: suspending, e.g. by waiting in place instead of on the loop (the ``%px`` magics do).
CANNOT_AWAIT: ContextVar[bool] = ContextVar("loom_magic_cannot_await", default=False)

HELPERS = ("_loom_magic_", "_loom_cell_magic_", "_loom_system_", "_loom_getoutput_", "_loom_help_")
"""The names :meth:`Magics.install` defines in a namespace."""

_USAGE = """\
Loom's Python kernel understands IPython's syntax:

  obj?, obj??      help on an object (?? shows its source)
  ?obj, ??obj      the same
  %magic args      run a line magic; %lsmagic lists them, %magic? explains one
  %%magic args     (first line of a cell) run the whole cell through a cell magic
  !cmd             run a shell command; x = !cmd captures its output lines
  {expr}, $name    in shell commands and magic arguments: Python values
"""


@dataclass(frozen=True, slots=True)
class CallSite:
    """Where a magic was called from: a line of a cell (or file), and its namespaces.

    ``locals`` is ``None`` at module level (where the globals are the locals).
    """

    filename: str
    lineno: int
    globals: dict[str, Any]
    locals: dict[str, Any] | None = None

    @classmethod
    def from_frame(cls, frame: FrameType) -> CallSite:
        """The call site of code running in ``frame``."""
        f_locals = frame.f_locals
        local_ns = None if f_locals is frame.f_globals else dict(f_locals)
        return cls(frame.f_code.co_filename, frame.f_lineno or 1, frame.f_globals, local_ns)


class Magics:
    """The magics of one interpreter: ``line`` and ``cell`` map names (no ``%``) to functions.

    Construction registers the built-in magics. Attributes:

    - ``interpreter``: what magics act on (a :class:`~._context.MagicContext`: the
      interpreter's namespace, payload, history, display and publisher).
    - ``line`` / ``cell``: the registries; add to them with :meth:`register_line` /
      :meth:`register_cell`.
    - ``async_names``: the magics registered with ``is_async=True`` (``"%name"``,
      ``"%%name"``); the interpreter's transform awaits their calls.
    - ``hidden``: name -> object of what the namespace held when :meth:`install` ran; ``%who``
      skips a name while it is still bound to that object, and ``%reset`` restores them.
    - ``pre_execute`` / ``post_execute``: callables the kernel calls before / after every
      cell (``autoreload`` reloads edited modules before; the inline backend shows and closes
      the cell's figures after); see :meth:`run_pre_execute` / :meth:`run_post_execute`.
    """

    def __init__(self, interpreter: MagicContext) -> None:
        self.interpreter = interpreter
        self.line: dict[str, LineMagic] = {}
        self.cell: dict[str, CellMagic] = {}
        self.async_names: set[str] = set()
        self.hidden: dict[str, object] = {}
        self.pre_execute: list[Callable[[], object]] = []
        self.post_execute: list[Callable[[], object]] = []
        #: Modules loaded with ``%load_ext`` (see ``_extensions``).
        self.loaded_extensions: set[str] = set()
        self._no_expand: set[str] = set()
        self._sites: list[CallSite] = []
        self._helpers: dict[str, Callable[..., object]] = {
            "_loom_magic_": self._helper_magic,
            "_loom_cell_magic_": self._helper_cell_magic,
            "_loom_system_": self._helper_system,
            "_loom_getoutput_": self._helper_getoutput,
            "_loom_help_": self._helper_help,
        }
        self.register_line("lsmagic", self._lsmagic)
        for load in (
            load_timing_magics,
            load_shell_magics,
            load_namespace_magics,
            load_file_magics,
            load_history_magics,
            load_output_magics,
            load_extension_magics,
            load_display_magics,
            load_script_magics,
            load_config_magics,
            load_profile_magics,
            load_debug_magics,
        ):
            load(self)

    # -- registry ----------------------------------------------------------------------------

    def register_line(
        self, name: str, fn: LineMagic, *, expand: bool = True, is_async: bool = False
    ) -> None:
        """Make ``%name args`` call ``fn(args)``, replacing any magic of that name.

        With ``expand=False`` the arguments reach ``fn`` exactly as typed (for magics whose
        argument is Python code, like ``%time``); otherwise ``{expr}`` and ``$name`` are
        expanded first. With ``is_async``, ``fn`` returns an awaitable that the cell awaits:
        the cell then runs as a task on the kernel's loop, so control requests (interrupt,
        shutdown) stay answered and Ctrl-C cancels it, as for a top-level ``await``.
        """
        self.line[name] = fn
        self._set_flags(f"%{name}", expand, is_async)

    def register_cell(
        self, name: str, fn: CellMagic, *, expand: bool = True, is_async: bool = False
    ) -> None:
        """Make a cell starting ``%%name args`` call ``fn(args, body)``.

        ``expand`` applies to ``args`` only; the body is always passed as typed. ``is_async``
        as for :meth:`register_line`.
        """
        self.cell[name] = fn
        self._set_flags(f"%%{name}", expand, is_async)

    def _set_flags(self, key: str, expand: bool, is_async: bool) -> None:
        if expand:
            self._no_expand.discard(key)
        else:
            self._no_expand.add(key)
        if is_async:
            self.async_names.add(key)
        else:
            self.async_names.discard(key)

    def names(self) -> list[str]:
        """Every magic as completion offers it: ``%line`` names, then ``%%cell`` names, sorted."""
        return sorted(f"%{name}" for name in self.line) + sorted(f"%%{name}" for name in self.cell)

    def install(self, ns: dict[str, Any]) -> None:
        """Define the ``_loom_*_`` helpers in ``ns`` and snapshot ``ns`` as :attr:`hidden`.

        Call it again whenever the namespace has been rebuilt.
        """
        ns.update(self._helpers)
        self.hidden = dict(ns)

    def helpers(self) -> dict[str, Callable[..., object]]:
        """The ``_loom_*_`` helpers by name (the same objects every time), for namespaces other
        than the interpreter's that run transformed code (``%run`` of an ``.ipy`` file)."""
        return dict(self._helpers)

    def run_pre_execute(self) -> None:
        """Run the :attr:`pre_execute` callables; the kernel calls this before every cell.

        Exceptions propagate (after the remaining callables have run, the first one is raised).
        """
        _run_callbacks(self.pre_execute)

    def run_post_execute(self) -> None:
        """Run the :attr:`post_execute` callables; the kernel calls this after every cell.

        Exceptions propagate as for :meth:`run_pre_execute`.
        """
        _run_callbacks(self.post_execute)

    # -- running -----------------------------------------------------------------------------

    @property
    def call_site(self) -> CallSite:
        """Where the running magic was called from; the cell's top when called directly."""
        if self._sites:
            return self._sites[-1]
        interp = self.interpreter
        return CallSite(interp.cell_filename(interp.execution_count), 1, interp.user_ns)

    def run_line(self, name: str, args: str, site: CallSite | None = None) -> object:
        """Run ``%name args`` and return its value.

        Raises :class:`UsageError` for an unknown magic; whatever the magic raises propagates.
        """
        fn = self.line.get(name)
        if fn is None:
            raise UsageError(self._line_not_found(name))
        site = site or self.call_site
        args = self._expand(f"%{name}", args, site)
        if f"%{name}" in self.async_names:
            return self._awaited_at(site, lambda: fn(args))
        self._sites.append(site)
        try:
            return fn(args)
        finally:
            self._sites.pop()

    def run_cell_magic(
        self, name: str, args: str, body: str, site: CallSite | None = None
    ) -> object:
        """Run ``%%name args`` + ``body``; return its value. Errors as :meth:`run_line`."""
        fn = self.cell.get(name)
        if fn is None:
            if name in self.line:
                raise UsageError(
                    f"Cell magic `%%{name}` not found (But line magic `%{name}` exists, "
                    "did you mean that instead?)."
                )
            raise UsageError(f"Cell magic `%%{name}` not found.")
        site = site or self.call_site
        args = self._expand(f"%%{name}", args, site)
        if f"%%{name}" in self.async_names:
            return self._awaited_at(site, lambda: fn(args, body))
        self._sites.append(site)
        try:
            return fn(args, body)
        finally:
            self._sites.pop()

    def run_line_now(self, name: str, args: str) -> object:
        """:meth:`run_line` for a caller that cannot await (``run_line_magic``): an async
        magic runs to completion (see :func:`_run_now`)."""
        if f"%{name}" not in self.async_names:
            return self.run_line(name, args)
        return _run_now(f"%{name}", lambda: self.run_line(name, args))

    def run_cell_now(self, name: str, args: str, body: str) -> object:
        """:meth:`run_cell_magic` for a caller that cannot await (``run_cell_magic``)."""
        if f"%%{name}" not in self.async_names:
            return self.run_cell_magic(name, args, body)
        return _run_now(f"%%{name}", lambda: self.run_cell_magic(name, args, body))

    async def _awaited_at(self, site: CallSite, call: Callable[[], object]) -> object:
        """Run an async magic with ``site`` as its call site for as long as it is awaited."""
        self._sites.append(site)
        try:
            result = call()
            return await result if inspect.isawaitable(result) else result
        finally:
            self._sites.pop()

    def _expand(self, key: str, args: str, site: CallSite) -> str:
        if key in self._no_expand:
            return args
        return expand_vars(args, site.globals, site.locals)

    def _line_not_found(self, name: str) -> str:
        if name.startswith("%") and name[1:] in self.cell:
            return f"Cell magic `%{name}` must be on the first line of a cell."
        if name in self.cell:
            return (
                f"Line magic function `%{name}` not found (But cell magic `%%{name}` exists, "
                "did you mean that instead?)."
            )
        return f"Line magic function `%{name}` not found."

    def help_text(self, name: str) -> str | None:
        """The help for ``%name`` or ``%%name`` (``name`` with its percent signs), or None."""
        if name.startswith("%%"):
            fn: object = self.cell.get(name[2:])
        else:
            fn = self.line.get(name.lstrip("%")) or self.cell.get(name.lstrip("%"))
        if fn is None:
            return None
        doc = inspect.getdoc(fn) or "<no docstring>"
        return f"Docstring:\n{doc}"

    # -- helpers called by transformed cells ---------------------------------------------------

    def _helper_magic(self, name: str, args: str) -> object:
        return self.run_line(name, args, CallSite.from_frame(sys._getframe(1)))

    def _helper_cell_magic(self, name: str, args: str, body: str) -> object:
        return self.run_cell_magic(name, args, body, CallSite.from_frame(sys._getframe(1)))

    def _helper_system(self, cmd: str) -> None:
        site = CallSite.from_frame(sys._getframe(1))
        status = system(expand_vars(cmd, site.globals, site.locals))
        self.interpreter.user_ns["_exit_code"] = status

    def _helper_getoutput(self, cmd: str) -> SList:
        site = CallSite.from_frame(sys._getframe(1))
        return getoutput(expand_vars(cmd, site.globals, site.locals))

    def _helper_help(self, expr: str, level: int) -> None:
        site = CallSite.from_frame(sys._getframe(1))
        namespace = site.globals if site.locals is None else {**site.globals, **site.locals}
        text = self._help_for(expr.strip(), namespace, level)
        if text is None:
            print(f"Object `{expr}` not found.")
        else:
            self.interpreter.payload.append(
                {"source": "page", "data": {"text/plain": text}, "start": 0}
            )

    def _help_for(self, expr: str, namespace: dict[str, Any], level: int) -> str | None:
        if not expr:
            return _USAGE
        if expr.startswith("%"):
            return self.help_text(expr)
        if "*" in expr:
            return _search_names(expr, namespace)
        return format_help(expr, namespace, level)

    # -- %lsmagic -------------------------------------------------------------------------------

    def _lsmagic(self, args: str) -> object:
        """List the available magics.

        Usage: ``%lsmagic [-j|--json]``

        The list is the cell's value, a string, as IPython's (9.x) is; with ``--json`` a dict
        ``{"line": {name: class name}, "cell": {...}}``, as IPython's ``--json``.
        """
        options, rest = split_options(args, "j", ("json",))
        if rest:
            raise UsageError(f"%lsmagic: unexpected arguments: {rest}")
        if options.get("j") or options.get("json"):
            return {
                "line": {name: _owner(fn) for name, fn in sorted(self.line.items())},
                "cell": {name: _owner(fn) for name, fn in sorted(self.cell.items())},
            }
        line = "  ".join(f"%{name}" for name in sorted(self.line))
        cell = "  ".join(f"%%{name}" for name in sorted(self.cell))
        # IPython's layout, word for word, so that code parsing it works on both kernels.
        return (
            f"Available line magics:\n{line}\n\nAvailable cell magics:\n{cell}\n\n"
            "Automagic is OFF, % prefix IS needed for line magics."
        )


def _owner(fn: object) -> str:
    """The class a magic is a method of (IPython's ``%lsmagic --json`` names it), or "Other"."""
    owner = getattr(fn, "__self__", None)
    return type(owner).__name__ if owner is not None else "Other"


def _run_now(key: str, start: Callable[[], object]) -> object:
    """Run the async magic ``start()`` returns to completion, with :data:`CANNOT_AWAIT` set.

    The caller's cell holds the kernel's loop, so nothing here can wait on it: the magic
    is stepped once, and one that suspends anyway (it needs the loop) is closed and a
    one-line :class:`UsageError` says to use it in a cell instead.
    """
    token = CANNOT_AWAIT.set(True)
    try:
        started = start()
        if not inspect.iscoroutine(started):
            return started
        try:
            started.send(None)
        except StopIteration as stop:
            return stop.value
        started.close()
        raise UsageError(
            f"{key} waits on the event loop here, so it cannot run from "
            f"run_line_magic/run_cell_magic; use {key} in a cell instead"
        )
    finally:
        CANNOT_AWAIT.reset(token)


def _run_callbacks(callbacks: list[Callable[[], object]]) -> None:
    """Call each of ``callbacks`` (a copy: one may unregister itself); then raise the first
    exception one of them raised, if any."""
    first: BaseException | None = None
    for callback in list(callbacks):
        try:
            callback()
        except Exception as exc:
            first = first or exc
    if first is not None:
        raise first


def _search_names(pattern: str, namespace: dict[str, Any]) -> str | None:
    """Names matching the wildcard ``pattern`` (``a*``, ``os.*path*``), one a line, or None."""
    base, dot, leaf = pattern.rpartition(".")
    if dot:
        found, obj = resolve(base, namespace)
        if not found:
            return None
        try:
            names = dir(obj)
        except Exception:
            return None
        prefix = base + "."
    else:
        names = [*namespace, *vars(builtins)]
        prefix = ""
    show_private = leaf.startswith("_")
    matches = sorted(
        {
            prefix + name
            for name in names
            if fnmatch.fnmatchcase(name, leaf) and (show_private or not name.startswith("_"))
        }
    )
    return "\n".join(matches) if matches else None
