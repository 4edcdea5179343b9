"""How ``loom run`` shows a run: plain text for people, JSON lines for programs.

Both renderers write through :class:`OutputWriter`, which flushes after every
write (so stdout and stderr interleave in the order the kernel produced them
and output appears while a cell is still running) and survives a reader that
went away (``loom run x.py | head``).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Literal, Protocol, TextIO

from kernel.protocol import JSONDict, Message
from shell.render._mime import ANSI_RE, error_text, format_bundle, with_newline

from ._cell_names import CellNames
from ._notebook import display_id_of

__all__ = [
    "JsonRenderer",
    "OutputWriter",
    "Renderer",
    "RunSummary",
    "TextRenderer",
    "make_renderer",
]

Status = Literal["ok", "error", "kernel_died"]


@dataclass(slots=True)
class RunSummary:
    """The result of a run: cells attempted, cells that failed, and why it stopped."""

    cells: int = 0
    failed: list[int] = field(default_factory=list)
    timed_out: list[int] = field(default_factory=list)
    status: Status = "ok"
    message: str | None = None

    @property
    def errors(self) -> int:
        return len(self.failed)

    def exit_code(self) -> int:
        """0 all ran fine, 1 a cell failed or timed out, 2 the kernel died or never started."""
        if self.status == "kernel_died":
            return 2
        return 1 if self.failed or self.status == "error" else 0


class OutputWriter:
    """Writes text to stdout or stderr and flushes at once.

    A broken stdout (the reader exited) sets :attr:`broken` instead of raising;
    fd 1 is then pointed at /dev/null so the interpreter's final flush is quiet.
    """

    def __init__(self, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.broken = False

    def out(self, text: str) -> None:
        if self.broken:
            return
        try:
            self.stdout.write(text)
            self.stdout.flush()
        except BrokenPipeError:
            self.broken = True
            _silence_fd(self.stdout)

    def err(self, text: str) -> None:
        try:
            self.stderr.write(text)
            self.stderr.flush()
        except BrokenPipeError:
            _silence_fd(self.stderr)

    def note(self, text: str) -> None:
        """A message from ``loom run`` itself (never from the kernel): always on stderr."""
        self.err(f"loom run: {text}\n")


def _silence_fd(stream: TextIO) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def wants_color(stream: TextIO) -> bool:
    """Keep the kernel's ANSI colours only on a terminal, and not under ``NO_COLOR``."""
    try:
        return stream.isatty() and not os.environ.get("NO_COLOR")
    except ValueError:  # closed
        return False


class Renderer(Protocol):
    """Shows the outputs of a run as they arrive."""

    def output(self, cell: int, message: Message) -> None:
        """One iopub message of the request running ``cell`` (non-outputs are ignored)."""

    def input_requested(self, cell: int, prompt: str, password: bool) -> None:
        """The kernel called ``input()``; shown before stdin is read."""

    def finished(self, summary: RunSummary) -> None:
        """The run is over (called once, also when the kernel died)."""


class TextRenderer:
    """Outputs as a terminal would show them: streams as written, results as text.

    A result's or display's text, and an error's, are the console's
    (:mod:`shell.render._mime`). The differences are deliberate, for a log
    that may be a file or a pipe:

    - no ``Out[N]:`` prompt;
    - images are neither drawn nor saved: the text beside them is shown
      (``<Figure size …>``), or ``[output of type image/png]`` if there is none;
    - nothing is redrawn: ``update_display_data`` is printed anew and
      ``clear_output`` is ignored, so the log keeps every version;
    - what the cell printed (streams, results) keeps its escape codes, as
      ``python script.py | cat`` would; only the colours the kernel adds to
      tracebacks are stripped, unless stderr is a terminal without ``NO_COLOR``
      (the console's plain mode strips every escape: it is not a log).
    """

    def __init__(self, writer: OutputWriter, names: CellNames | None = None) -> None:
        self.writer = writer
        self.color = wants_color(writer.stderr)
        self.names = names  # tracebacks name cells as the run's messages do

    def output(self, cell: int, message: Message) -> None:
        content = message.content
        match message.msg_type:
            case "stream":
                write = self.writer.err if content.get("name") == "stderr" else self.writer.out
                write(str(content.get("text", "")))
            case "execute_result" | "display_data" | "update_display_data":
                data = content.get("data")
                if _px_signal_only(data):
                    return  # %px's progress or autopx state, for consoles: nothing to log
                text, _ = format_bundle(data if data is not None else {}, None)
                self.writer.out(with_newline(text))
            case "error":
                text = error_text(content)
                if self.names is not None:
                    text = self.names.rename(text)
                self.writer.err(with_newline(text if self.color else ANSI_RE.sub("", text)))

    def input_requested(self, cell: int, prompt: str, password: bool) -> None:
        # As Python's input() does when stdin is not a terminal: the prompt, no newline.
        self.writer.out(prompt)

    def finished(self, summary: RunSummary) -> None:
        pass


#: The MIME types the ``%px`` magics use to tell a console their progress and the
#: ``%autopx`` state (``parallel.magics._px_status``); a bundle with only these has no text.
_PX_SIGNAL_PREFIX = "application/vnd.loom.px-"


def _px_signal_only(data: object) -> bool:
    return (
        isinstance(data, dict)
        and bool(data)
        and all(str(key).startswith(_PX_SIGNAL_PREFIX) for key in data)
    )


class JsonRenderer:
    """One JSON object per line on stdout per output, then a ``summary`` record."""

    def __init__(self, writer: OutputWriter) -> None:
        self.writer = writer

    def _emit(self, record: JSONDict) -> None:
        self.writer.out(json.dumps(record, ensure_ascii=False) + "\n")

    def output(self, cell: int, message: Message) -> None:
        record = json_record(cell, message)
        if record is not None:
            self._emit(record)

    def input_requested(self, cell: int, prompt: str, password: bool) -> None:
        self._emit({"cell": cell, "type": "input_request", "prompt": prompt, "password": password})

    def finished(self, summary: RunSummary) -> None:
        record: JSONDict = {
            "type": "summary",
            "cells": summary.cells,
            "errors": summary.errors,
            "status": summary.status,
            "failed": summary.failed,
            "timed_out": summary.timed_out,
        }
        if summary.message is not None:
            record["message"] = summary.message
        self._emit(record)


def json_record(cell: int, message: Message) -> JSONDict | None:
    """The ``--json`` record of one iopub message, or None for non-outputs."""
    content, kind = message.content, message.msg_type
    record: JSONDict = {"cell": cell, "type": kind}
    match kind:
        case "stream":
            record.update(name=content.get("name", "stdout"), text=content.get("text", ""))
        case "execute_result" | "display_data" | "update_display_data":
            record.update(data=content.get("data", {}), metadata=content.get("metadata", {}))
            if kind == "execute_result":
                record["execution_count"] = content.get("execution_count")
            display_id = display_id_of(message)
            if display_id is not None:
                record["display_id"] = display_id
        case "error":
            record.update(
                ename=content.get("ename", ""),
                evalue=content.get("evalue", ""),
                traceback=content.get("traceback", []),
            )
        case "clear_output":
            record["wait"] = bool(content.get("wait", False))
        case _:
            return None
    return record


def make_renderer(
    json_lines: bool, writer: OutputWriter, names: CellNames | None = None
) -> Renderer:
    return JsonRenderer(writer) if json_lines else TextRenderer(writer, names)
