"""``loom run``: run a script or notebook on a kernel, non-interactively.

The command line front of the batch runner. The work is split across:

``_batch_source``    SOURCE -> cells (``# %%`` scripts, notebooks, stdin)
``_batch_kernel``    start a kernel by name or attach to ``--existing``; learn of its death
``_batch_runner``    execute cells in order, racing death and ``--timeout``; answer input()
``_batch_render``    live text output or ``--json`` records
``_batch_notebook``  outputs into a notebook for ``-o`` / ``--inplace``

Exit status: 0 every cell ran without error; 1 a cell raised or timed out;
2 the kernel died or could not be started or reached, or the input or options
were unusable (as argparse does for usage errors); 130 on Ctrl-C.

Everything runs on one asyncio loop in the main thread (``asyncio.run`` in
:func:`run_batch`); no Python thread is started. ``python -m shell.batch._run`` is
the same command without the ``loom`` front (used by the tests).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kernel.client import DEFAULT_KERNEL_NAME

from ._cell_names import CellNames
from ._notebook import NotebookRecorder
from ._report import OutputWriter, RunSummary, make_renderer
from ._source import BatchInputError, Document, is_notebook_path, load_document

if TYPE_CHECKING:
    from ._kernel_target import BatchKernel

__all__ = ["BatchOptions", "add_run_arguments", "main", "run_batch"]


def _seconds(text: str) -> float:
    """argparse type for ``--timeout``: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``loom run`` to ``parser`` (the ``run`` subcommand's)."""
    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="a script (split into cells at '# %%%%' lines), a notebook (.ipynb), "
        "or - to read a script from stdin",
    )
    kernel = parser.add_mutually_exclusive_group()
    kernel.add_argument(
        "--kernel",
        metavar="NAME",
        default=None,
        help=f"kernelspec to start (default: {DEFAULT_KERNEL_NAME}); it is shut down at the end",
    )
    kernel.add_argument(
        "--existing",
        metavar="FILE",
        default=None,
        help="run on a running kernel given by its connection file: a path, or a name or "
        "part of one in the Jupyter runtime dir ('' for the newest); it is left running",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "-o",
        "--output",
        metavar="OUT.ipynb",
        default=None,
        help="write the cells and their outputs to this notebook",
    )
    output.add_argument(
        "--inplace",
        action="store_true",
        help="write the outputs back into the SOURCE notebook",
    )
    parser.add_argument(
        "--no-split",
        action="store_true",
        help="run a script as a single cell, ignoring '# %%%%' markers",
    )
    parser.add_argument(
        "--allow-errors",
        action="store_true",
        help="keep running after a cell fails (the exit status is still 1)",
    )
    parser.add_argument(
        "--timeout",
        metavar="S",
        type=_seconds,
        default=None,
        help="per-cell time limit in seconds: the kernel is interrupted and the run fails",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON record per output, and a final summary record, to stdout",
    )


@dataclass(frozen=True, slots=True)
class BatchOptions:
    """The validated options of one run."""

    source: str
    kernel_name: str = DEFAULT_KERNEL_NAME
    existing: str | None = None
    output: Path | None = None
    split: bool = True
    allow_errors: bool = False
    timeout: float | None = None
    json_lines: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BatchOptions:
        """Check what argparse cannot; raises :class:`BatchInputError`."""
        source = str(args.source)
        output: Path | None = Path(args.output) if args.output else None
        if args.inplace:
            if not is_notebook_path(source):
                raise BatchInputError("--inplace needs a notebook (.ipynb) as SOURCE")
            output = Path(source)
        if output is not None and not output.resolve().parent.is_dir():
            raise BatchInputError(f"cannot write {output}: its directory does not exist")
        return cls(
            source=source,
            kernel_name=args.kernel or DEFAULT_KERNEL_NAME,
            existing=args.existing,
            output=output,
            split=not args.no_split,
            allow_errors=bool(args.allow_errors),
            timeout=args.timeout,
            json_lines=bool(args.json),
        )


def run_batch(args: argparse.Namespace) -> int:
    """Run ``loom run`` with parsed ``args``; returns the exit status (see the module doc)."""
    writer = OutputWriter()
    try:
        options = BatchOptions.from_args(args)
        document = load_document(options.source, split=options.split)
        recorder = NotebookRecorder.for_document(document) if options.output else None
    except BatchInputError as exc:
        writer.err(f"loom run: error: {exc}\n")
        return 2
    try:
        return asyncio.run(_run(options, document, recorder, writer))
    except KeyboardInterrupt:
        writer.note("interrupted")
        return 130


async def _run(
    options: BatchOptions,
    document: Document,
    recorder: NotebookRecorder | None,
    writer: OutputWriter,
) -> int:
    # Imported here so that building the command line (add_run_arguments) stays light.
    from ._kernel_target import KernelTarget, KernelUnavailable, run_on_kernel
    from ._runner import CellRunner, RunSettings

    names = CellNames(document.label)
    renderer = make_renderer(options.json_lines, writer, names)
    settings = RunSettings(
        allow_errors=options.allow_errors,
        timeout=options.timeout,
        stdin_is_source=options.source == "-",
    )

    async def body(kernel: BatchKernel) -> RunSummary:
        if recorder is not None:
            recorder.set_kernel_metadata(kernel.language_info, kernel.kernelspec)
        runner = CellRunner(kernel, document, settings, renderer, writer, recorder, names)
        return await runner.run_all()

    try:
        target = KernelTarget(options.kernel_name, options.existing)
        summary = await run_on_kernel(target, body, notice=writer.note)
    except KernelUnavailable as exc:
        verb = "start" if options.existing is None else "connect to"
        summary = RunSummary(status="kernel_died", message=f"cannot {verb} the kernel: {exc}")
        writer.note(summary.message or "")
        renderer.finished(summary)
        return summary.exit_code()
    status = summary.exit_code()
    if not _write_notebook(recorder, options.output, writer):
        status = 2
    renderer.finished(summary)
    return status


def _write_notebook(
    recorder: NotebookRecorder | None, output: Path | None, writer: OutputWriter
) -> bool:
    """Write the recorded notebook, if one is asked for; False if that failed (said why)."""
    if recorder is None or output is None:
        return True
    try:
        recorder.write(output)
    except BatchInputError as exc:
        writer.note(str(exc))
        return False
    return True


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loom run",
        description="Run a script or notebook on a Jupyter kernel, printing its output.",
    )
    add_run_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m shell.batch._run ARGS``: ``loom run`` without the ``loom`` front."""
    return run_batch(_parser().parse_args(argv))
