"""``get_ipython()`` on Loom's kernel: the part of IPython's shell that libraries use.

Code written for Jupyter calls IPython's API: ``IPython.display.display`` and friends,
``get_ipython().events.register(...)`` (matplotlib does when IPython is imported),
``get_ipython().run_line_magic(...)`` (scripts exported from notebooks). IPython finds "the
shell" through ``InteractiveShell.instance()`` once ``InteractiveShell.initialized()``; with no
shell its ``display()`` falls back to ``print``. So once user code imports IPython, Loom makes
a :class:`ShellAPI` the ``InteractiveShell`` instance (a subclass built then, whose
``__init__`` builds nothing of IPython's machinery): ``display()`` then publishes through the
kernel, with Loom's formatting (the same bundles as ipykernel's).

Honest about the rest: the shell's other public attributes (``history_manager``,
``run_cell``...) raise ``AttributeError`` saying Loom's kernel does not provide them, so
``hasattr`` answers truly and ``getattr(ip, name, default)`` works. ``get_ipython()`` in the
user namespace returns the same shell (a plain :class:`ShellAPI` when IPython is not imported).

IPython is never imported here: :func:`install` asks ``_import_hooks`` to install the shell
once user code has imported ``IPython.core.interactiveshell``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType, SimpleNamespace
from typing import TYPE_CHECKING, Any

from kernel.server.magics._system import getoutput, system

from ._display import call_ipython_display, format_object
from ._import_hooks import after_import
from ._ipython_formatters import ipython_formatters

if TYPE_CHECKING:
    from ._interpreter import Interpreter

__all__ = ["ShellAPI", "current_shell", "install"]

_SHELL_MODULE = "IPython.core.interactiveshell"
#: Events as IPython names them; the ``*_run_cell`` callbacks take one argument.
_EVENTS = ("pre_execute", "post_execute", "pre_run_cell", "post_run_cell", "shell_initialized")


class _State:
    interpreter: Interpreter | None = None
    plain: ShellAPI | None = None
    ipython: ShellAPI | None = None
    #: (event, callback) -> the zero-argument callable registered on the magics.
    wrappers: dict[tuple[str, Callable[..., object]], Callable[[], object]] = {}


def install(interpreter: Interpreter) -> None:
    """Serve ``get_ipython()`` from ``interpreter``: now if IPython's shell module is already
    imported, else as soon as user code imports it. Replaces any earlier interpreter."""
    _State.interpreter, _State.plain, _State.ipython = interpreter, None, None
    _State.wrappers = {}
    after_import(_SHELL_MODULE, _install_into)


def current_shell() -> ShellAPI:
    """The shell ``get_ipython()`` returns: IPython's instance if IPython is imported.

    Raises ``RuntimeError`` before :func:`install`.
    """
    if _State.ipython is not None:
        return _State.ipython
    if _State.interpreter is None:
        raise RuntimeError("no Loom interpreter is running")
    if _State.plain is None:
        _State.plain = ShellAPI(_State.interpreter)
    return _State.plain


class ShellEvents:
    """``get_ipython().events``: callbacks run before and after every cell."""

    def __init__(self, interpreter: Interpreter) -> None:
        self._interpreter = interpreter

    def register(self, event: str, function: Callable[..., object]) -> None:
        """Call ``function`` on ``event`` (``pre_execute``, ``post_execute``: no argument;
        ``pre_run_cell``: an info with ``raw_cell``; ``post_run_cell``: a result with
        ``success``, ``result``, ``error_in_exec``). Raises ``KeyError`` for other events."""
        hooks = self._hooks(event)
        key = (event, function)
        if key not in _State.wrappers:
            _State.wrappers[key] = self._wrap(event, function)
            hooks.append(_State.wrappers[key])

    def unregister(self, event: str, function: Callable[..., object]) -> None:
        """Stop calling ``function``; raises ``ValueError`` if it is not registered."""
        hooks = self._hooks(event)
        wrapper = _State.wrappers.pop((event, function), None)
        if wrapper is None or wrapper not in hooks:
            raise ValueError(f"Function {function!r} is not registered as a {event} callback")
        hooks.remove(wrapper)

    def trigger(self, event: str, *args: object) -> None:
        """Call the callbacks of ``event`` now."""
        self._hooks(event)
        for (name, function), _ in list(_State.wrappers.items()):
            if name == event:
                function(*args)

    def _hooks(self, event: str) -> list[Callable[[], object]]:
        if event not in _EVENTS:
            raise KeyError(f"Unknown event type: {event!r}")
        magics = self._interpreter.magics
        return magics.pre_execute if event.startswith("pre_") else magics.post_execute

    def _wrap(self, event: str, function: Callable[..., object]) -> Callable[[], object]:
        interp = self._interpreter
        if event == "pre_run_cell":
            return lambda: function(SimpleNamespace(raw_cell=interp.cell_source, cell_id=None))
        if event == "post_run_cell":
            return lambda: function(
                SimpleNamespace(
                    execution_count=interp.execution_count - 1,
                    error_before_exec=None,
                    error_in_exec=interp.cell_error,
                    result=interp.cell_result,
                    success=interp.cell_error is None,
                    info=SimpleNamespace(raw_cell=interp.cell_source, cell_id=None),
                )
            )
        if event == "shell_initialized":
            return lambda: None  # the shell is initialized before any callback can register
        return function


class _DisplayPublisher:
    """``get_ipython().display_pub``: what ``IPython.display.display`` publishes through."""

    def __init__(self, interpreter: Interpreter) -> None:
        self._display = interpreter.display

    def publish(
        self,
        data: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        source: object = None,
        *,
        transient: dict[str, Any] | None = None,
        update: bool = False,
        **kwargs: object,
    ) -> None:
        """Publish ``display_data`` (``update_display_data`` with ``update``)."""
        if update:
            display_id = str((transient or {}).get("display_id", ""))
            self._display.update_display(
                data, display_id=display_id, raw=True, metadata=metadata, transient=transient
            )
        else:
            self._display.display(data, raw=True, metadata=metadata, transient=transient)

    def clear_output(self, wait: bool = False) -> None:
        self._display.clear_output(wait)


class _DisplayFormatter:
    """``get_ipython().display_formatter``: Loom's formatting (``format_object``)."""

    def format(
        self, obj: object, include: Any = None, exclude: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(data, metadata)`` for ``obj``; ``({}, {})`` if it displayed itself."""
        if call_ipython_display(obj):
            return {}, {}
        return format_object(obj, include=include, exclude=exclude)

    @property
    def formatters(self) -> dict[str, Any]:
        """IPython's per-MIME formatters (``for_type`` registrations are honoured)."""
        return ipython_formatters()


class ShellAPI:
    """What ``get_ipython()`` offers on Loom's kernel (see the module docstring)."""

    def __init__(self, interpreter: Interpreter) -> None:
        self._interpreter = interpreter
        self._events = ShellEvents(interpreter)
        self._display_pub = _DisplayPublisher(interpreter)
        self._display_formatter = _DisplayFormatter()

    # Properties, not attributes: on IPython's class these names are traits, which would
    # refuse objects that are not IPython's own classes.
    @property
    def events(self) -> ShellEvents:
        return self._events

    @property
    def display_pub(self) -> _DisplayPublisher:
        return self._display_pub

    @property
    def display_formatter(self) -> _DisplayFormatter:
        return self._display_formatter

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__qualname__} of Loom's kernel>"

    @property
    def user_ns(self) -> dict[str, Any]:
        return self._interpreter.user_ns

    @property
    def user_global_ns(self) -> dict[str, Any]:
        return self._interpreter.user_ns

    @property
    def execution_count(self) -> int:
        return self._interpreter.execution_count

    def get_ipython(self) -> ShellAPI:
        return self

    def run_line_magic(self, magic_name: str, line: str, _stack_depth: int = 1) -> object:
        """``%magic_name line``; its value (an async magic runs to completion)."""
        return self._interpreter.magics.run_line_now(magic_name, line)

    def run_cell_magic(self, magic_name: str, line: str, cell: str) -> object:
        """``%%magic_name line`` with ``cell`` as the body; its value (an async magic runs
        to completion)."""
        return self._interpreter.magics.run_cell_now(magic_name, line, cell)

    def register_magic_function(
        self, func: Callable[..., object], magic_kind: str = "line", magic_name: str | None = None
    ) -> None:
        """Make ``func`` a magic (IPython's ``@register_line_magic`` and friends call this)."""
        name = magic_name or func.__name__
        magics = self._interpreter.magics
        if magic_kind in ("line", "line_cell"):
            magics.register_line(name, func)
        if magic_kind in ("cell", "line_cell"):
            magics.register_cell(name, func)
        if magic_kind not in ("line", "cell", "line_cell"):
            raise ValueError(f"magic_kind must be line, cell or line_cell, not {magic_kind!r}")

    def push(self, variables: dict[str, Any] | str, interactive: bool = True) -> None:
        """Put ``variables`` (a dict, or names of the caller's variables) in the namespace."""
        if isinstance(variables, str):
            frame = sys._getframe(1)
            names = variables.split()
            variables = {name: eval(name, frame.f_globals, frame.f_locals) for name in names}
        self._interpreter.user_ns.update(variables)

    def ev(self, expr: str) -> Any:
        """Evaluate ``expr`` in the user namespace."""
        return eval(expr, self._interpreter.user_ns)

    def ex(self, cmd: str) -> None:
        """Execute ``cmd`` in the user namespace."""
        exec(cmd, self._interpreter.user_ns)

    def system(self, cmd: str) -> None:
        """Run a shell command, its output streaming (``!cmd``); sets ``_exit_code``."""
        self._interpreter.user_ns["_exit_code"] = system(cmd)

    def getoutput(self, cmd: str) -> list[str]:
        """Run a shell command; its output lines (``!!cmd``)."""
        return getoutput(cmd)

    def set_next_input(self, text: str, replace: bool = False) -> None:
        """Ask the front end to put ``text`` in the next input."""
        self._interpreter.payload.append(
            {"source": "set_next_input", "text": text, "replace": replace}
        )

    def showtraceback(self, *args: object, **kwargs: object) -> None:
        """Report the exception being handled as an error output."""
        exc = sys.exc_info()[1]
        if exc is not None:
            self._interpreter.report_error(exc)

    def enable_gui(self, gui: str | None = None) -> None:
        """Only ``None`` and ``"inline"`` exist: Loom's kernel runs no GUI event loop."""
        if gui not in (None, "inline"):
            raise NotImplementedError(f"Loom's kernel has no {gui!r} GUI event loop integration")

    def enable_matplotlib(self, gui: str | None = None) -> tuple[str, str]:
        """``%matplotlib inline``; returns ``("inline", backend)``."""
        self.enable_gui(gui)
        self.run_line_magic("matplotlib", "inline")
        from ._inline_figures import BACKEND

        return "inline", BACKEND


# -- IPython's InteractiveShell ---------------------------------------------------------------


def _install_into(module: ModuleType) -> None:
    """Make a :class:`ShellAPI` subclass of ``module.InteractiveShell`` its instance."""
    base = module.InteractiveShell
    interpreter = _State.interpreter
    if interpreter is None:
        return
    absent = frozenset(n for n in vars(base) if not n.startswith("_")) - frozenset(dir(ShellAPI))

    def __getattribute__(self: object, name: str) -> Any:
        if name in absent:
            raise AttributeError(
                f"Loom's kernel is not IPython's shell: get_ipython().{name} is not available"
            )
        return object.__getattribute__(self, name)

    namespace = {"__module__": __name__, "__getattribute__": __getattribute__}
    shell_class: Any = type("LoomShell", (ShellAPI, base), namespace)
    shell = shell_class(interpreter)
    for cls in shell_class._walk_mro():
        cls._instance = shell
    _State.ipython = shell
