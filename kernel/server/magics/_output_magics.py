"""Output: ``%%capture`` a cell's output, ``%matplotlib inline`` figures."""

from __future__ import annotations

import importlib.util
import io
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kernel.server.interpreter._compile import compile_body

from ._args import UsageError, split_options

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from ._registry import Magics

__all__ = ["CapturedIO", "RichOutput", "captured_io", "load_output_magics"]


@dataclass(slots=True)
class RichOutput:
    """One captured ``display_data``: displaying it shows the same output again."""

    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    transient: dict[str, Any] = field(default_factory=dict)

    def _repr_mimebundle_(
        self, include: Collection[str] | None = None, exclude: Collection[str] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.data, self.metadata


class CapturedIO:
    """What ``%%capture`` caught: ``stdout`` and ``stderr`` text, and rich ``outputs``.

    ``show()`` (or calling the object) replays all of it into the current output.
    """

    def __init__(
        self,
        stdout: str,
        stderr: str,
        outputs: list[RichOutput],
        publish: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.outputs = outputs
        self._publish = publish

    def show(self) -> None:
        """Write the captured text to ``sys.stdout``/``sys.stderr``, re-publish the outputs."""
        if self.stdout:
            sys.stdout.write(self.stdout)
            sys.stdout.flush()
        if self.stderr:
            sys.stderr.write(self.stderr)
            sys.stderr.flush()
        for output in self.outputs:
            content = {
                "data": output.data,
                "metadata": output.metadata,
                "transient": output.transient,
            }
            self._publish("display_data", content)

    __call__ = show

    def __str__(self) -> str:
        return self.stdout

    def __repr__(self) -> str:
        return f"<CapturedIO: {len(self.stdout)} chars stdout, {len(self.outputs)} outputs>"


def captured_io(
    stdout: str,
    stderr: str,
    outputs: list[RichOutput],
    publish: Callable[[str, dict[str, Any]], None],
) -> object:
    """What ``%%capture NAME`` stores: IPython's own ``CapturedIO`` when IPython is
    installed, else Loom's :class:`CapturedIO` (the same attributes and ``show()``).

    IPython's type, not a look-alike: code written for IPython may check it, and its repr
    is what notebooks show (``<IPython.utils.capture.CapturedIO at 0x...>``). That imports
    IPython the first time a named capture runs (about 0.3 s, once per kernel; never at
    start-up); its ``show()`` then displays through ``get_ipython()``, which is Loom's
    shell as soon as IPython is imported (``interpreter/_ipython_shell.py``).
    """
    if importlib.util.find_spec("IPython") is not None:
        try:
            from IPython.utils.capture import CapturedIO as IPythonCapturedIO
        except Exception:  # a broken IPython install: Loom's own will do
            pass
        else:
            rich = [
                {"data": o.data, "metadata": o.metadata, "transient": o.transient} for o in outputs
            ]
            # Typed through a Callable: some IPython releases annotate CapturedIO, some do not.
            make_captured: Callable[..., object] = IPythonCapturedIO
            return make_captured(io.StringIO(stdout), io.StringIO(stderr), rich)
    return CapturedIO(stdout, stderr, outputs, publish)


def load_output_magics(magics: Magics) -> None:
    """Register ``%%capture`` and ``%matplotlib`` on ``magics``."""
    output = _OutputMagics(magics)
    magics.register_cell("capture", output.capture)
    magics.register_line("matplotlib", output.matplotlib)


class _OutputMagics:
    def __init__(self, magics: Magics) -> None:
        self._magics = magics

    def capture(self, line: str, body: str) -> None:
        """Run the cell, capturing its stdout, stderr and rich output instead of showing it.

        Usage: ``%%capture [--no-stdout] [--no-stderr] [--no-display] [NAME]``

        With NAME, a ``CapturedIO`` is stored under that name (even if the cell raises):
        ``NAME.stdout``, ``NAME.stderr``, ``NAME.outputs``, and ``NAME.show()`` to replay.
        The ``--no-*`` options let that kind of output through instead.
        """
        flags = ("no-stdout", "no-stderr", "no-display")
        options, rest = split_options(line, "", flags)
        # The options may also follow the name, as IPython's argparse takes them.
        name, _, after = rest.partition(" ")
        more, extra = split_options(after, "", flags)
        options.update(more)
        if extra:
            raise UsageError(f"%%capture: unexpected arguments: {extra}")
        if name and not name.isidentifier():
            raise UsageError(f"%%capture: {name!r} is not a valid variable name")
        interp = self._magics.interpreter
        site = self._magics.call_site
        code = compile_body(body, site.filename, site.lineno + 1, want_value=True)
        stdout, stderr = io.StringIO(), io.StringIO()
        outputs: list[RichOutput] = []
        publish = interp.publish

        def capturing_publish(msg_type: str, content: dict[str, Any]) -> None:
            if msg_type == "display_data" and not options.get("no-display"):
                outputs.append(
                    RichOutput(
                        dict(content.get("data", {})),
                        dict(content.get("metadata", {})),
                        dict(content.get("transient", {})),
                    )
                )
            else:
                publish(msg_type, content)

        saved = sys.stdout, sys.stderr
        if not options.get("no-stdout"):
            sys.stdout = stdout
        if not options.get("no-stderr"):
            sys.stderr = stderr
        interp.publish = capturing_publish
        try:
            value = code.run(site.globals, site.locals)
            if value is not None:
                interp.display.display(value)
            self._magics.run_post_execute()  # e.g. the cell's figures, as IPython captures them
        finally:
            interp.publish = publish
            sys.stdout, sys.stderr = saved
            if name:
                site.globals[name] = captured_io(
                    stdout.getvalue(),
                    stderr.getvalue(),
                    outputs,
                    lambda msg_type, content: interp.publish(msg_type, content),
                )

    def matplotlib(self, line: str) -> None:
        """Choose how matplotlib figures are shown.

        Usage: ``%matplotlib [inline|notebook|widget]`` or ``%matplotlib --list``; without a
        backend, ``inline``, named as it is chosen.

        - ``inline`` (already the default unless ``MPLBACKEND`` says otherwise): ``plt.show()``
          and the end of every cell render the open figures (PNG, or the formats of ``%config
          InlineBackend.figure_formats``) and close them.
        - ``notebook`` (``nbagg``): matplotlib's interactive nbagg figures (needs IPython and
          ipykernel installed: matplotlib's backend imports ``ipykernel.comm``).
        - ``widget`` (``ipympl``): ipympl's interactive figures, ipywidgets (needs ipympl).
        """
        options, gui = split_options(line, "l", ("list",))
        if options.get("l") or options.get("list"):
            print(f"Available matplotlib backends: {list(_BACKENDS)}")
            return
        if gui not in ("", *_BACKENDS, *_ALIASES):
            choices = ", ".join(repr(name) for name in _BACKENDS)
            raise UsageError(
                f"%matplotlib {gui}: Loom's kernel provides {choices} (it runs no GUI event loop)"
            )
        gui = _ALIASES.get(gui, gui) or "inline"
        missing = [name for name in _BACKENDS[gui] if importlib.util.find_spec(name) is None]
        if missing:
            needs = " and ".join(missing)
            why = _WHY.get(gui, "")
            raise UsageError(
                f"%matplotlib {gui} needs {needs}, not installed in the kernel's environment"
                f"{why}; %pip install {' '.join(missing)}"
            )
        import matplotlib  # type: ignore[import-not-found, unused-ignore]
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]

        from kernel.server.interpreter import _inline_figures

        if gui != "inline":
            # As IPython's %matplotlib: interactive mode, so that a new figure shows itself
            # and the end of the cell redraws it. The inline flush stays registered: it
            # only acts while the inline backend is matplotlib's.
            matplotlib.interactive(True)
            plt.switch_backend(_interactive_backend(gui))
            return
        _inline_figures.activate(self._magics.interpreter.display)
        matplotlib.use(_inline_figures.BACKEND)
        # As IPython's %matplotlib: pyplot switched now, not at its first figure, and
        # ``matplotlib.backends.backend`` (matplotlib's compatibility global, which
        # published notebooks print) names the backend as the user did.
        plt.switch_backend(_inline_figures.BACKEND)
        matplotlib.backends.backend = "inline"  # type: ignore[attr-defined, unused-ignore]
        if _inline_figures.flush_figures not in self._magics.post_execute:
            self._magics.post_execute.append(_inline_figures.flush_figures)
        if not line.strip():
            # As IPython: the backend chosen for the user is named; one they named is not.
            print(f"Using matplotlib backend: {_inline_figures.BACKEND}")


#: ``%matplotlib`` backend -> the modules it needs besides matplotlib.
_BACKENDS: dict[str, tuple[str, ...]] = {
    "inline": ("matplotlib",),
    "notebook": ("matplotlib", "IPython", "ipykernel"),
    "widget": ("matplotlib", "ipympl"),
}
_ALIASES = {"nbagg": "notebook", "ipympl": "widget"}
_WHY = {
    "notebook": " (matplotlib's nbagg backend imports IPython.display and ipykernel.comm)",
    "widget": " (ipympl's figures are ipywidgets)",
}


def _interactive_backend(gui: str) -> str:
    """The matplotlib backend for ``%matplotlib notebook`` or ``widget``."""
    if gui == "widget":
        return "module://ipympl.backend_nbagg"
    from kernel.server.interpreter._mpl_nbagg import BACKEND

    return BACKEND
