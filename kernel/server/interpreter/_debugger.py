"""pdb at the prompt: ``%debug``, ``%pdb on`` and ``breakpoint()`` over the stdin channel.

pdb reads its commands with ``input()``, which in a running cell asks the front end
(``input_request``/``input_reply`` on stdin); pdb's output goes to ``sys.stdout``, the
cell's stream. :class:`KernelPdb` adds what a kernel needs on top:

- *Completion names.* While pdb waits for a command the kernel's main thread is blocked
  in the stdin wait, so no ``complete_request`` on shell can be answered, and the I/O
  thread must not touch the paused frame (evaluating ``obj.attr`` runs user code). So each
  ``input_request`` pdb sends carries, in its metadata under :data:`METADATA_KEY`, the
  names of the current frame (locals, globals, builtins) and pdb's commands; the Loom
  console completes from those with no round trip (docs/architecture.md, "Debugger").
- *The kernel's own frames are not the user's.* ``where``/``up``/``down`` see the
  stack from the first user frame on, without the kernel's frames (the interpreter's
  ``hidden_prefixes``); ``breakpoint()`` traces only user frames, and stepping off the
  end of the outermost one ends the session instead of stepping into the kernel.
- *SIGINT stays the kernel's.* ``nosigint``: pdb's own handler would replace the
  interpreter's. Ctrl-C at the prompt raises ``KeyboardInterrupt`` from ``input()``,
  which pdb answers with ``--KeyboardInterrupt--`` and a new prompt.
- *No front end to ask.* With ``allow_stdin`` false (nbclient, ``loom run``) pdb is not
  started: one line says so and the cell goes on (``breakpoint()``) or ends.

This module imports pdb: the interpreter imports it only when a debugger starts.
"""

from __future__ import annotations

import builtins
import pdb
import sys
import sysconfig
from collections.abc import Callable, Sequence
from types import CodeType, FrameType, TracebackType
from typing import Any

__all__ = ["METADATA_KEY", "KernelPdb", "post_mortem", "run_code", "set_trace"]

#: The ``input_request`` metadata key under which pdb's completion names travel.
METADATA_KEY = "loom_debugger"
#: At most this many names are sent with one prompt (locals first, then globals, builtins).
MAX_NAMES = 5000
_STDLIB = sysconfig.get_paths()["stdlib"]
#: Names the kernel puts in a namespace for its own use: never offered.
_OWN_PREFIXES = ("_loom_", "__loom_")
NO_FRONT_END = "the debugger needs a front end that answers input() (allow_stdin); "


class KernelPdb(pdb.Pdb):
    """pdb for a kernel cell (see the module docstring)."""

    def __init__(self, hidden_prefixes: Sequence[str]) -> None:
        super().__init__(nosigint=True)
        self.use_rawinput = True
        self._hidden = tuple(hidden_prefixes)

    # -- the prompt ------------------------------------------------------------------

    def interaction(self, frame: FrameType | None, traceback: TracebackType | None) -> None:
        frontend = builtins.input
        ask: Callable[[str, Any], str] | None = getattr(frontend, "ask", None)
        if ask is None or getattr(frontend, "allowed", False) is not True:
            # No request's front end to ask (allow_stdin false, or no cell is running: an
            # engine's task, a thread after its cell). The process's own stdin is no
            # answer: /dev/null ends pdb at once, an ssh pipe would wait forever.
            self.message("*** " + NO_FRONT_END + "not started")
            if frame is not None:
                self.set_continue()
                sys.settrace(None)
            return
        # cmd.Cmd calls input(self.prompt): the same question, with the names.
        builtins.input = _AskWithNames(ask, self.completion_metadata)
        try:
            super().interaction(frame, traceback)
        finally:
            builtins.input = frontend

    def completion_metadata(self) -> dict[str, Any]:
        """The ``input_request`` metadata: names of the current frame and pdb's commands."""
        frame: FrameType | None = getattr(self, "curframe", None)
        names: list[str] = []
        if frame is not None:
            local_ns = getattr(self, "curframe_locals", None) or frame.f_locals
            names = _names(local_ns, frame.f_globals, vars(builtins))
        commands = sorted({name[3:] for name in dir(self) if name.startswith("do_")})
        return {METADATA_KEY: {"names": names, "commands": commands}}

    # -- which frames are the user's -----------------------------------------------------

    def _is_kernel(self, frame: FrameType) -> bool:
        return frame.f_code.co_filename.startswith(self._hidden)

    def get_stack(
        self, f: FrameType | None, t: TracebackType | None
    ) -> tuple[list[tuple[FrameType, int]], int]:
        stack, index = super().get_stack(f, t)
        kept = _user_frames([frame for frame, _ in stack], self._is_kernel)
        if not kept:
            return stack, index
        new_index = max((n for n, i in enumerate(kept) if i <= index), default=0)
        return [stack[i] for i in kept], new_index

    def set_trace(self, frame: FrameType | None = None) -> None:
        """Bdb's ``set_trace``, but the kernel's frames below ``frame`` are not traced."""
        if frame is None:
            frame = sys._getframe().f_back
        self.reset()
        walk = frame
        while walk is not None and not self._is_kernel(walk):
            walk.f_trace = self.trace_dispatch
            self.botframe = walk
            walk = walk.f_back
        self.set_step()
        sys.settrace(self.trace_dispatch)

    def stop_here(self, frame: FrameType) -> bool:
        return not self._is_kernel(frame) and bool(super().stop_here(frame))

    def dispatch_return(self, frame: FrameType, arg: Any) -> Any:
        result = super().dispatch_return(frame, arg)
        if frame is self.botframe:
            # The outermost user frame returns into the kernel: the session is over.
            self.set_continue()
            sys.settrace(None)
            return None
        return result


class _AskWithNames:
    """``builtins.input`` while pdb runs: the front end's question, with pdb's names."""

    allowed = True

    def __init__(
        self, ask: Callable[[str, Any], str], metadata: Callable[[], dict[str, Any]]
    ) -> None:
        self.ask = ask
        self._metadata = metadata

    def __call__(self, prompt: object = "") -> str:
        return self.ask(str(prompt), self._metadata())


def _user_frames(frames: list[FrameType], is_kernel: Callable[[FrameType], bool]) -> list[int]:
    """Indices of the frames the user sees: from the first that is neither the kernel's nor
    the standard library's (the start-up path, asyncio) on, without the kernel's frames."""
    start = next(
        (
            i
            for i, frame in enumerate(frames)
            if not is_kernel(frame) and not _is_infrastructure(frame.f_code)
        ),
        None,
    )
    if start is None:
        return []
    return [i for i in range(start, len(frames)) if not is_kernel(frames[i])]


def _is_infrastructure(code: CodeType) -> bool:
    filename = code.co_filename
    return filename.startswith(("<frozen ", _STDLIB))


def _names(*namespaces: dict[str, Any]) -> list[str]:
    """Identifiers of ``namespaces`` (first ones first), without the kernel's own, capped."""
    seen: dict[str, None] = {}
    for namespace in namespaces:
        for name in namespace:
            if isinstance(name, str) and name.isidentifier() and not name.startswith(_OWN_PREFIXES):
                seen.setdefault(name, None)
            if len(seen) >= MAX_NAMES:
                return sorted(seen)
    return sorted(seen)


def post_mortem(traceback: TracebackType, hidden_prefixes: Sequence[str]) -> None:
    """Debug ``traceback`` at the prompt (``%debug``, ``%pdb on``), at its innermost frame."""
    debugger = KernelPdb(hidden_prefixes)
    debugger.reset()
    debugger.interaction(None, traceback)


def set_trace(frame: FrameType, hidden_prefixes: Sequence[str]) -> None:
    """Stop in ``frame`` (``breakpoint()``)."""
    KernelPdb(hidden_prefixes).set_trace(frame)


def run_code(
    code: CodeType,
    globals_ns: dict[str, Any],
    locals_ns: dict[str, Any] | None,
    hidden_prefixes: Sequence[str],
) -> None:
    """Run ``code`` under the debugger, stopping at its first line (``%debug stmt``)."""
    debugger = KernelPdb(hidden_prefixes)
    if getattr(builtins.input, "allowed", False) is not True:
        debugger.message("*** " + NO_FRONT_END + "the code runs without it")
        exec(code, globals_ns, locals_ns)
        return
    debugger.run(code, globals_ns, locals_ns)
