"""Tab completion at pdb's prompt, which the kernel asks for with ``input_request``.

While pdb waits for a command the kernel's shell loop is blocked in that wait, so a
``complete_request`` would be answered only after the debugger ends. Loom's kernel sends
the names of the paused frame (locals, globals, builtins) and pdb's commands with each
pdb prompt, in the ``input_request``'s metadata (``loom_debugger``); this completer
completes from them, locally and at once. Another kernel's debugger (ipykernel's
``ipdb>``) sends none: its prompt is recognised and pdb's command names are completed.

The rules are pure (:func:`pdb_completions`): the first word completes to a command or
a name (pdb runs a bare expression); after it, the identifier under the cursor completes
to a name. Attributes (``obj.at``) are not completed: that would evaluate ``obj`` in the
paused frame, which only a round trip to the kernel could do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

__all__ = ["PdbCompleter", "PdbWords", "completer_for", "pdb_completions"]

METADATA_KEY = "loom_debugger"
#: The prompts of pdb, ipdb and IPython's debugger, as the kernel asks for a command.
PDB_PROMPTS = re.compile(r"^\s*(\(Pdb\+*\)|ipdb>|\(ipdb\))\s*$")
#: pdb's commands (Python 3.11), for a debugger that sends no names of its own.
PDB_COMMANDS = (
    "EOF",
    "a",
    "alias",
    "args",
    "b",
    "break",
    "bt",
    "c",
    "cl",
    "clear",
    "commands",
    "condition",
    "cont",
    "continue",
    "d",
    "debug",
    "disable",
    "display",
    "down",
    "enable",
    "exit",
    "h",
    "help",
    "ignore",
    "interact",
    "j",
    "jump",
    "l",
    "list",
    "ll",
    "longlist",
    "n",
    "next",
    "p",
    "pp",
    "q",
    "quit",
    "r",
    "restart",
    "retval",
    "run",
    "rv",
    "s",
    "source",
    "step",
    "tbreak",
    "u",
    "unalias",
    "undisplay",
    "unt",
    "until",
    "up",
    "w",
    "whatis",
    "where",
)
_IDENTIFIER_END = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class PdbWords:
    """What can be completed at one pdb prompt."""

    commands: tuple[str, ...]
    names: tuple[str, ...] = ()


def completer_for(prompt: str, metadata: object) -> PdbCompleter | None:
    """A completer for an ``input_request`` with ``prompt`` and ``metadata``, if it is pdb's."""
    sent = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    if isinstance(sent, dict):
        commands = _strings(sent.get("commands")) or PDB_COMMANDS
        return PdbCompleter(PdbWords(commands, _strings(sent.get("names"))))
    if PDB_PROMPTS.match(prompt):
        return PdbCompleter(PdbWords(tuple(PDB_COMMANDS)))
    return None


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(item for item in value if isinstance(item, str))


def pdb_completions(text: str, words: PdbWords) -> tuple[int, list[str]]:
    """``(start, candidates)``: the candidates replace ``text[start:]`` (text before the cursor)."""
    match = _IDENTIFIER_END.search(text)
    if match is None:
        return len(text), []
    start = match.start()
    prefix = match.group()
    before = text[:start]
    if before.rstrip().endswith(".") and not before.endswith(" "):
        return start, []  # an attribute: not known here (module docstring)
    # The first word may be a command or a name; after it, only names make sense.
    pool: Sequence[str] = words.names if before.strip() else [*words.commands, *words.names]
    found = sorted({word for word in pool if word.startswith(prefix)})
    if not prefix.startswith("_"):
        found = [word for word in found if not word.startswith("_")]
    return start, found


class PdbCompleter(Completer):
    """Completes pdb commands and the paused frame's names (see :func:`pdb_completions`)."""

    def __init__(self, words: PdbWords) -> None:
        self.words = words

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        text = document.text_before_cursor
        start, found = pdb_completions(text, self.words)
        for word in found:
            yield Completion(word, start_position=start - len(text))
