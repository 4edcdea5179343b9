"""Pasted code without the prompts it was copied with (``%paste``, ``%cpaste``).

Code copied from a Python session or a doctest carries ``>>> ``/``... ``
prompts; from IPython, ``In [N]: ``/``   ...: ``. IPython removes them the
way :func:`strip_prompts` does (``IPython.core.inputtransformer2``'s
``classic_prompt`` and ``ipython_prompt``): only when the first line starts
with a prompt, or the second line with a continuation one, so code that
merely contains ``...`` (an Ellipsis) is left alone. This is done in the
console, so pasting works the same on every kernel, Loom's included.
"""

from __future__ import annotations

import re

__all__ = ["strip_prompts"]

#: (any line's prompt, what the first line must start with for it to count)
_STYLES = (
    (re.compile(r"^(>>>|\.\.\.)( |$)"), re.compile(r"^>>>( |$)")),  # the Python REPL
    (re.compile(r"^(In \[\d+\]: |\s*\.{3,}: ?)"), re.compile(r"^(In \[\d+\]: |\s*\.{3,}: ?)")),
)


def strip_prompts(lines: list[str]) -> list[str]:
    """``lines`` with a Python or IPython prompt removed from the start of each."""
    for prompt, initial in _STYLES:
        if lines and (initial.match(lines[0]) or (len(lines) > 1 and prompt.match(lines[1]))):
            return [prompt.sub("", line, count=1) for line in lines]
    return lines
