"""How ``%px`` shows what engines produced: pure functions from per-engine records to outputs.

The policy, in ipyparallel's notation:

- streams are labelled by stream and engine, ``[stdout:2] text``; a label is written only
  when the source changes, so one engine's lines stay together under one label;
- a displayed value is ``Out[2:5]: 42`` (engine 2, its cell 5); rich values (HTML...) keep
  their other MIME types and get the label in ``text/plain``;
- ``display()`` output of an engine is ``[output:2]`` followed by the display;
- finished output is grouped by ``engine`` (each engine's streams, displays and result
  together: the default), by ``type`` (all stdout, all stderr, all displays, all results)
  or in ``order`` (as ``type``, with the n-th display of every engine together);
- errors are grouped: engines that raised the same exception (same name, message and
  traceback once colours and cell numbers are set aside) give one
  ``ZeroDivisionError on engines 0-3`` and one traceback; engines that died give one
  ``engines 1, 3 lost (...)`` line.

Nothing here does I/O: a host (Loom's kernel, IPython) writes :class:`PxText` to the
named stream and publishes :class:`PxRich` as ``display_data``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from kernel.protocol import JSONDict

from .._errors import CompositeError, EngineError, RemoteError

__all__ = [
    "EngineOutput",
    "ErrorGroup",
    "PxError",
    "PxOutput",
    "PxProgress",
    "PxRich",
    "PxText",
    "StreamLabeller",
    "display_output",
    "format_engines",
    "group_errors",
    "progress_bundle",
    "progress_text",
    "render_errors",
    "render_outputs",
    "result_output",
]


@dataclass(frozen=True, slots=True)
class PxText:
    """Text to write as is to ``stream`` (``"stdout"`` or ``"stderr"``)."""

    stream: str
    text: str


@dataclass(frozen=True, slots=True)
class PxRich:
    """A MIME bundle to publish as ``display_data``; ``text/plain`` carries the label."""

    data: JSONDict
    metadata: JSONDict


@dataclass(frozen=True, slots=True)
class PxProgress:
    """How far a blocking ``%px`` is; ``final`` once every engine has answered (or the
    wait was abandoned)."""

    done: int
    total: int
    elapsed: float
    final: bool = False
    #: True from ``--progress-after`` seconds: a progress line for every front end.
    bar: bool = False


PxOutput = PxText | PxRich | PxProgress


@dataclass(slots=True)
class EngineOutput:
    """Everything one engine produced for one ``%px``."""

    engine: int
    stdout: str = ""
    stderr: str = ""
    #: ``display_data`` contents (``data``, ``metadata``), in order.
    displays: list[JSONDict] = field(default_factory=list)
    #: The ``execute_result`` content (``execution_count``, ``data``...), if a value was shown.
    result: JSONDict | None = None
    error: RemoteError | None = None


class StreamLabeller:
    """Labels stream text by source, across calls (streamed output arrives in pieces)."""

    def __init__(self) -> None:
        self._source: dict[str, int | None] = {}
        self._at_line_start: dict[str, bool] = {}

    def label(self, stream: str, engine: int, text: str) -> PxText | None:
        """``text`` of ``engine`` on ``stream``, labelled if the source changed; None if empty."""
        if not text:
            return None
        prefix = ""
        if self._source.get(stream) != engine:
            prefix = self._newline(stream) + f"[{stream}:{engine}] "
            self._source[stream] = engine
        self._at_line_start[stream] = text.endswith("\n")
        return PxText(stream, prefix + text)

    def break_line(self, stream: str) -> PxText | None:
        """End the stream's current line (before other output); the next text is labelled."""
        self._source[stream] = None
        text = self._newline(stream)
        self._at_line_start[stream] = True
        return PxText(stream, text) if text else None

    def _newline(self, stream: str) -> str:
        return "" if self._at_line_start.get(stream, True) else "\n"


def _bundle_output(label: str, data: JSONDict, metadata: JSONDict, engine: int) -> PxOutput:
    """``label`` + the bundle's text; plain text only becomes :class:`PxText` on stdout."""
    text = str(data.get("text/plain", ""))
    labelled = f"{label}\n{text}" if "\n" in text.rstrip("\n") else f"{label} {text}"
    if set(data) <= {"text/plain"}:
        return PxText("stdout", labelled.rstrip("\n") + "\n")
    return PxRich({**data, "text/plain": labelled}, {**metadata, "engine": engine})


def result_output(engine: int, content: JSONDict) -> PxOutput:
    """An engine's ``execute_result`` as ``Out[engine:count]: value``."""
    label = f"Out[{engine}:{content.get('execution_count', '?')}]:"
    return _bundle_output(label, dict(content.get("data", {})), _md(content), engine)


def display_output(engine: int, content: JSONDict) -> PxOutput:
    """An engine's ``display_data`` as ``[output:engine] ...``."""
    return _bundle_output(f"[output:{engine}]", dict(content.get("data", {})), _md(content), engine)


def _md(content: JSONDict) -> JSONDict:
    metadata = content.get("metadata")
    return dict(metadata) if isinstance(metadata, dict) else {}


def render_outputs(
    records: Sequence[EngineOutput],
    groupby: str = "engine",
    labeller: StreamLabeller | None = None,
    *,
    streamed: bool = False,
) -> list[PxOutput]:
    """Everything ``records`` hold but their errors, grouped by ``groupby``.

    With ``streamed``, streams and displays were shown as they arrived: only results are
    rendered (after ending the labeller's open lines). Raises ``ValueError`` for an
    unknown ``groupby``.
    """
    labeller = labeller or StreamLabeller()
    if streamed:
        return [*_breaks(labeller), *_results(records)]
    if groupby == "engine":
        out: list[PxOutput | None] = []
        for record in records:
            out += _streams([record], labeller)
            out += _breaks(labeller)
            out += [display_output(record.engine, d) for d in record.displays]
            out += _results([record])
        return [item for item in out if item is not None]
    if groupby not in ("type", "order"):
        raise ValueError(f"groupby must be engine, order or type, not {groupby!r}")
    items: list[PxOutput | None] = [*_streams(records, labeller), *_breaks(labeller)]
    if groupby == "type":
        items += [display_output(r.engine, d) for r in records for d in r.displays]
    else:
        depth = max((len(r.displays) for r in records), default=0)
        items += [
            display_output(r.engine, r.displays[i])
            for i in range(depth)
            for r in records
            if i < len(r.displays)
        ]
    return [item for item in [*items, *_results(records)] if item is not None]


def _streams(records: Iterable[EngineOutput], labeller: StreamLabeller) -> list[PxOutput | None]:
    records = list(records)
    out: list[PxOutput | None] = [labeller.label("stdout", r.engine, r.stdout) for r in records]
    out += [labeller.label("stderr", r.engine, r.stderr) for r in records]
    return out


def _breaks(labeller: StreamLabeller) -> list[PxOutput]:
    return [t for t in (labeller.break_line("stdout"), labeller.break_line("stderr")) if t]


def _results(records: Iterable[EngineOutput]) -> list[PxOutput]:
    return [result_output(r.engine, r.result) for r in records if r.result is not None]


# -- errors ------------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CELL_NUMBER = re.compile(r"In ?\[\d+\]")


@dataclass(frozen=True, slots=True)
class ErrorGroup:
    """Engines that failed the same way; ``lost``: their engines died (no traceback)."""

    engines: tuple[int, ...]
    ename: str
    evalue: str
    traceback: str
    lost: bool = False

    @property
    def headline(self) -> str:
        """``ZeroDivisionError on engines 0-3``, or ``engines 1, 3 lost (reason)``."""
        if self.lost:
            return f"{format_engines(self.engines)} lost ({self.evalue})"
        return f"{self.ename} on {format_engines(self.engines)}"


def group_errors(records: Iterable[EngineOutput]) -> list[ErrorGroup]:
    """The failures of ``records`` as groups, in order of each group's first engine."""
    groups: dict[tuple[object, ...], list[tuple[int, RemoteError]]] = {}
    for record in records:
        error = record.error
        if error is None:
            continue
        if isinstance(error, EngineError):
            reason = re.sub(r"^engine \d+ ", "", error.evalue)
            key: tuple[object, ...] = ("lost", reason)
        else:
            tb = _CELL_NUMBER.sub("In[]", _ANSI.sub("", error.traceback))
            key = ("raised", error.ename, error.evalue, tb)
        groups.setdefault(key, []).append((record.engine, error))
    result = []
    for key, members in groups.items():
        first = members[0][1]
        engines = tuple(engine for engine, _ in members)
        if key[0] == "lost":
            result.append(ErrorGroup(engines, "EngineError", str(key[1]), "", lost=True))
        else:
            result.append(ErrorGroup(engines, first.ename, first.evalue, first.traceback))
    return sorted(result, key=lambda group: group.engines[0])


def render_errors(groups: Sequence[ErrorGroup]) -> list[str]:
    """Traceback lines for ``groups``: each headline, then its one traceback."""
    lines: list[str] = []
    for group in groups:
        if lines:
            lines.append("")
        if group.lost:
            lines.append(group.headline)
            continue
        lines.append(f"{group.headline}:")
        lines.extend(group.traceback.splitlines() or [f"{group.ename}: {group.evalue}"])
    return lines


class PxError(CompositeError):
    """``%px`` code raised (or lost its engine) on one or more engines.

    A :class:`CompositeError`, so ``except CompositeError`` works as with ipyparallel;
    ``elist`` holds each engine's error and ``groups`` the grouped view. IPython shows
    :meth:`render_traceback` (the grouped tracebacks) in place of a local traceback.
    """

    def __init__(self, groups: Sequence[ErrorGroup], elist: Sequence[RemoteError]) -> None:
        super().__init__("; ".join(group.headline for group in groups), elist)
        self.groups = list(groups)

    def __str__(self) -> str:
        return str(self.evalue)

    def render_traceback(self) -> list[str]:
        return render_errors(self.groups)

    def _render_traceback_(self) -> list[str]:
        return self.render_traceback()


def format_engines(engines: Iterable[int]) -> str:
    """``engine 2``, ``engines 0, 2``, ``engines 0-3``, ``engines 0-2, 5``."""
    ids = sorted(set(engines))
    if len(ids) == 1:
        return f"engine {ids[0]}"
    parts: list[str] = []
    start = 0
    for index in range(1, len(ids) + 1):
        if index == len(ids) or ids[index] != ids[index - 1] + 1:
            run = ids[start:index]
            parts += [f"{run[0]}-{run[-1]}"] if len(run) >= 3 else [str(i) for i in run]
            start = index
    return "engines " + ", ".join(parts)


def progress_text(progress: PxProgress) -> str:
    """``3/4 engines finished after 5 s``."""
    return f"{progress.done}/{progress.total} engines finished after {progress.elapsed:.0f} s"


def progress_bundle(progress: PxProgress) -> JSONDict:
    """The display bundle of a progress report (see ``_px_status``)."""
    from ._px_status import status_bundle

    return status_bundle(
        progress.done,
        progress.total,
        progress.elapsed,
        bar=progress.bar,
        final=progress.final,
        text=progress_text(progress),
    )
