"""The debugger: ``%debug`` (post-mortem, or a statement under pdb), ``%%debug``, ``%pdb``.

pdb runs at the front end's prompt over the stdin channel (see
``kernel.server.interpreter._debugger``); these magics only choose what it debugs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel.server.interpreter._compile import compile_body

from ._args import UsageError

if TYPE_CHECKING:
    from ._registry import CallSite, Magics

__all__ = ["load_debug_magics"]

_ON = ("on", "1", "true")
_OFF = ("off", "0", "false")


def load_debug_magics(magics: Magics) -> None:
    debug = _DebugMagics(magics)
    magics.register_line("debug", debug.debug, expand=False)
    magics.register_cell("debug", debug.debug_cell, expand=False)
    magics.register_line("pdb", debug.pdb)


class _DebugMagics:
    def __init__(self, magics: Magics) -> None:
        self._magics = magics

    def debug(self, line: str) -> None:
        """Activate the interactive debugger.

        Usage: ``%debug`` debugs the last error, post-mortem: pdb starts in the frame
        where it was raised (``up``/``down`` move, ``p x`` prints, ``q`` quits).
        ``%debug statement`` runs the statement under pdb, stopped at its first line.

        pdb asks for its commands at the front end's prompt (the Loom console completes
        the current frame's names with Tab). ``%pdb on`` debugs every error automatically.
        """
        statement = line.strip()
        if statement.startswith("-"):
            raise UsageError(f"%debug: options are not supported: {statement.split()[0]}")
        if statement:
            self._run(statement, self._magics.call_site, self._magics.call_site.lineno)
            return
        interp = self._magics.interpreter
        if interp.last_traceback is None:
            print("No traceback has been produced, nothing to debug.")
            return
        interp.debug_post_mortem(interp.last_traceback)

    def debug_cell(self, line: str, body: str) -> None:
        """Run the cell under pdb, stopped at its first line; see ``%debug?``."""
        if line.strip():
            raise UsageError(f"%%debug: options are not supported: {line.strip()}")
        site = self._magics.call_site
        self._run(body, site, site.lineno + 1)

    def _run(self, source: str, site: CallSite, first_line: int) -> None:
        from kernel.server.interpreter._debugger import run_code

        code = compile_body(source, site.filename, first_line, want_value=False)
        run_code(
            code.statements,
            site.globals,
            site.locals,
            self._magics.interpreter.hidden_prefixes,
        )

    def pdb(self, line: str) -> None:
        """Control the automatic calling of the pdb interactive debugger.

        Usage: ``%pdb on`` (or ``1``) debugs every error of a cell post-mortem as soon as
        its traceback is shown; ``%pdb off`` (or ``0``) stops it; ``%pdb`` toggles.
        """
        word = line.strip().lower()
        interp = self._magics.interpreter
        if word in _ON:
            interp.call_pdb = True
        elif word in _OFF:
            interp.call_pdb = False
        elif not word:
            interp.call_pdb = not interp.call_pdb
        else:
            raise UsageError(f"%pdb: expected on or off, not {line.strip()!r}")
        print(f"Automatic pdb calling has been turned {'ON' if interp.call_pdb else 'OFF'}")
