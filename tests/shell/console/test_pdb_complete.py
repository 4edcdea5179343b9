"""Tab completion at pdb's prompt (``shell.console._pdb_complete``): pure rules."""

from __future__ import annotations

from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from shell.console._pdb_complete import (
    PDB_COMMANDS,
    PdbCompleter,
    PdbWords,
    completer_for,
    pdb_completions,
)

WORDS = PdbWords(("p", "pp", "up", "where"), ("x", "xs", "y", "_hidden", "print"))


def test_the_first_word_completes_commands_and_names() -> None:
    assert pdb_completions("u", WORDS) == (0, ["up"])
    assert pdb_completions("p", WORDS) == (0, ["p", "pp", "print"])
    assert pdb_completions("x", WORDS) == (0, ["x", "xs"])


def test_after_the_command_only_names_complete() -> None:
    assert pdb_completions("p x", WORDS) == (2, ["x", "xs"])
    assert pdb_completions("p x + y", WORDS) == (6, ["y"])
    assert pdb_completions("!x", WORDS) == (1, ["x", "xs"])
    assert pdb_completions("pp u", WORDS) == (3, [])  # a command is no name


def test_private_names_only_when_asked_and_no_attributes() -> None:
    assert pdb_completions("p _", WORDS) == (2, ["_hidden"])
    assert pdb_completions("p obj.x", WORDS) == (6, [])
    assert pdb_completions("", WORDS) == (0, [])
    assert pdb_completions("p (", WORDS) == (3, [])


def test_the_kernels_names_or_pdbs_prompt_choose_the_completer() -> None:
    sent = {"loom_debugger": {"names": ["zz_local", 3], "commands": ["p", "up"]}}
    completer = completer_for("(Pdb) ", sent)
    assert completer is not None
    assert completer.words == PdbWords(("p", "up"), ("zz_local",))  # non-strings dropped
    ipdb = completer_for("ipdb> ", {})
    assert ipdb is not None
    assert ipdb.words == PdbWords(PDB_COMMANDS)
    assert completer_for("your name? ", {}) is None  # input(): no completion
    assert completer_for("(Pdb) ", None) is not None
    assert completer_for("x", {"loom_debugger": "bad"}) is None


def test_the_completer_replaces_the_word_before_the_cursor() -> None:
    completer = PdbCompleter(WORDS)
    found = list(completer.get_completions(Document("p x"), CompleteEvent()))
    assert [(c.text, c.start_position) for c in found] == [("x", -1), ("xs", -1)]
