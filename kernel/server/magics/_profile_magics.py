"""``%prun`` and ``%%prun``: run code under :mod:`cProfile` and page the statistics, as IPython."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from kernel.server.interpreter._compile import compile_body

from ._args import split_options

if TYPE_CHECKING:
    import pstats

    from ._registry import CallSite, Magics

__all__ = ["load_profile_magics"]

_OPTIONS = "D:T:l:rs:q"


def load_profile_magics(magics: Magics) -> None:
    """Register ``%prun`` and ``%%prun`` on ``magics``."""
    profile = _ProfileMagics(magics)
    magics.register_line("prun", profile.prun, expand=False)
    magics.register_cell("prun", profile.prun_cell, expand=False)


class _ProfileMagics:
    def __init__(self, magics: Magics) -> None:
        self._magics = magics

    def prun(self, line: str) -> pstats.Stats | None:
        """Run a statement under the profiler and show the statistics in the pager.

        Usage: ``%prun [-s KEY] [-l LIMIT] [-r] [-q] [-D FILE] [-T FILE] statement``, or as
        the first line of a cell, ``%%prun [options]`` (profiles the cell).

        Options, as IPython's:
          -s KEY    sort by KEY (``time``, the default; ``cumulative``, ``calls``, ``name``...)
          -l LIMIT  show only that many lines (an int), that fraction (a float), or the lines
                    matching that regular expression
          -r        return the ``pstats.Stats`` object
          -q        do not page the statistics
          -D FILE   dump the raw statistics to FILE (``pstats`` format)
          -T FILE   write the statistics text to FILE
        """
        options, statement = split_options(line, _OPTIONS)
        site = self._magics.call_site
        return self._profile(options, statement, site, site.lineno)

    def prun_cell(self, line: str, body: str) -> pstats.Stats | None:
        """Profile the whole cell; options as ``%prun?``."""
        options, _ = split_options(line, _OPTIONS)
        site = self._magics.call_site
        return self._profile(options, body, site, site.lineno + 1)

    def _profile(
        self, options: dict[str, str | bool], source: str, site: CallSite, first_line: int
    ) -> pstats.Stats | None:
        import cProfile  # here: the kernel's start-up does not pay for the profiler
        import pstats

        code = compile_body(source, site.filename, first_line, want_value=False)
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            code.run(site.globals, site.locals)
        finally:
            profiler.disable()
        stream = io.StringIO()
        stats = pstats.Stats(profiler, stream=stream).strip_dirs()
        stats.sort_stats(str(options.get("s") or "time"))
        limit = options.get("l")
        stats.print_stats(*([] if not isinstance(limit, str) else [_limit(limit)]))
        text = stream.getvalue().rstrip()
        if isinstance(options.get("D"), str):
            stats.dump_stats(str(options["D"]))
        if isinstance(options.get("T"), str):
            with open(str(options["T"]), "w", encoding="utf-8") as file:
                file.write(text + "\n")
        if not options.get("q"):
            self._magics.interpreter.payload.append(
                {"source": "page", "data": {"text/plain": text}, "start": 0}
            )
        return stats if options.get("r") else None


def _limit(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text
