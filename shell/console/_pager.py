"""Showing long text (``obj?`` pages, F2 inspection): print it, or page it.

Text taller than the terminal goes through ``$PAGER`` (default ``less -R``,
which keeps the kernel's colours), run synchronously with
``subprocess.run``: the pager owns the terminal until it exits, so blocking
the event loop meanwhile is what we want, and no thread or asyncio child
watcher is involved. The kernel's liveness survives it: the heartbeat's
echoes queue up in libzmq meanwhile and are counted on resume, so a pager
held open is never a kernel "not responding" (``kernel.client._heartbeat_monitor``).
Callers make sure no prompt is live (they are between cells, or inside
prompt_toolkit's ``in_terminal``). ``LOOM_PAGER=none`` (or a missing pager
program) prints everything instead.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from typing import TextIO

from shell.render._output import ANSI_RE

__all__ = ["page", "page_text"]


def page_text(data: dict[str, object]) -> str:
    """The text of a ``page`` payload's (or inspect reply's) MIME bundle."""
    text = data.get("text/plain")
    if isinstance(text, str):
        return text
    from shell.render._output import format_bundle

    return format_bundle(dict(data), "file")[0]


def page(text: str, stream: TextIO, *, interactive: bool) -> None:
    """Show ``text`` on ``stream``, through a pager if it is too tall for the terminal."""
    if not interactive:
        text = ANSI_RE.sub("", text)
    if interactive and _too_tall(text):
        argv = _pager_argv()
        if argv is not None:
            env = dict(os.environ)
            env.setdefault("LESS", "-R")
            try:
                subprocess.run(argv, input=text, text=True, env=env, check=False)
                return
            except OSError:
                pass  # fall back to printing
    stream.write(text if text.endswith("\n") else text + "\n")
    stream.flush()


def _too_tall(text: str) -> bool:
    return text.count("\n") + 1 > shutil.get_terminal_size().lines - 2


def _pager_argv() -> list[str] | None:
    choice = os.environ.get("LOOM_PAGER") or os.environ.get("PAGER") or "less -R"
    if choice.lower() == "none":
        return None
    argv = shlex.split(choice)
    if not argv or shutil.which(argv[0]) is None:
        return None
    return argv
