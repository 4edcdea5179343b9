"""Front-end commands: inputs the console handles itself, never sent to the kernel.

``exit``/``quit`` (also ``%exit``, ``exit()``...), ``%restart``,
``%connect_info``, ``%paste``, ``%cpaste`` and ``%edit [FILE]``. This module
recognises them and does the blocking parts (reading the clipboard, running
``$EDITOR``); the console decides what to do with the results. Blocking is
fine here: the editor owns the terminal while it runs, and the console calls
these from inside prompt_toolkit's ``in_terminal`` or with no prompt live. (Nor
does it make the kernel look silent: the heartbeat counts the echoes that came
meanwhile, see ``kernel.client._heartbeat_monitor``.)
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kernel.protocol import ConnectionInfo

__all__ = [
    "COMMANDS",
    "EXIT_WORDS",
    "Command",
    "CommandError",
    "connect_info_text",
    "edit_text",
    "is_exit",
    "parse_command",
    "read_clipboard",
]

COMMANDS = ("exit", "restart", "connect_info", "paste", "cpaste", "edit")
#: Inputs that leave the console, in interactive and plain mode alike.
EXIT_WORDS = frozenset({"exit", "quit", "exit()", "quit()", "%exit", "%quit"})
#: Clipboard readers tried in order (X11, X11, Wayland, macOS).
_CLIPBOARD = (
    ["xclip", "-selection", "clipboard", "-o"],
    ["xsel", "--clipboard", "--output"],
    ["wl-paste", "--no-newline"],
    ["pbpaste"],
)


class CommandError(Exception):
    """A front-end command could not do its job; the message says why."""


@dataclass(frozen=True, slots=True)
class Command:
    name: str  # one of COMMANDS
    arg: str = ""


def parse_command(code: str) -> Command | None:
    """The front-end command ``code`` is, or None for code meant for the kernel.

    Only a single-line input can be a command, so ``exit = 3`` or a cell
    that merely mentions ``%edit`` reaches the kernel unchanged.
    """
    text = code.strip()
    if "\n" in text or not text:
        return None
    if is_exit(text):
        return Command("exit")
    if not text.startswith("%"):
        return None
    name, _, arg = text[1:].partition(" ")
    if name in ("restart", "connect_info", "paste", "cpaste", "edit"):
        return Command(name, arg.strip())
    return None


def is_exit(code: str) -> bool:
    """True when ``code`` is one of :data:`EXIT_WORDS` (surrounding blanks ignored)."""
    return code.strip() in EXIT_WORDS


def read_clipboard() -> str:
    """The clipboard's text, from the first clipboard tool that is installed.

    Raises :class:`CommandError` if none is, or the tool fails.
    """
    for argv in _CLIPBOARD:
        if shutil.which(argv[0]) is None:
            continue
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CommandError(f"{argv[0]} failed: {exc}") from exc
        if done.returncode != 0:
            detail = done.stderr.strip() or f"exit status {done.returncode}"
            raise CommandError(f"{argv[0]} could not read the clipboard: {detail}")
        return done.stdout
    tools = ", ".join(argv[0] for argv in _CLIPBOARD)
    raise CommandError(f"no clipboard tool found (tried {tools}); use %cpaste instead")


def edit_text(initial: str = "", filename: str | None = None) -> str:
    """Open ``$VISUAL``/``$EDITOR`` (else ``vi``) on a file; return its text afterwards.

    Without ``filename`` a temporary ``.py`` file holding ``initial`` is used
    and removed. Blocks until the editor exits. Raises :class:`CommandError`
    if the editor cannot be run or fails.
    """
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    if filename:
        path = Path(filename).expanduser()
        cleanup = False
    else:
        fd, name = tempfile.mkstemp(prefix="loom-edit-", suffix=".py")
        with os.fdopen(fd, "w") as fh:
            fh.write(initial)
        path, cleanup = Path(name), True
    try:
        try:
            done = subprocess.run([*shlex.split(editor), str(path)], check=False)
        except OSError as exc:
            raise CommandError(f"cannot run editor {editor!r}: {exc}") from exc
        if done.returncode != 0:
            raise CommandError(f"editor {editor!r} exited with status {done.returncode}")
        try:
            return path.read_text()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
    finally:
        if cleanup:
            path.unlink(missing_ok=True)


def connect_info_text(info: ConnectionInfo, path: Path | None) -> str:
    """What ``%connect_info`` prints: the connection JSON and how to attach."""
    data = info.to_dict()
    text = json.dumps(data, indent=2)
    if path is not None:
        text += f"\n\nConnection file: {path}\nAttach another console with:\n"
        text += f"    loom --existing {path}"
    return text
