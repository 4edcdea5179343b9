"""What the ``bench_*.py`` scripts share: set-up, child processes and the report.

Not a benchmark itself (``run_all.py`` runs only ``bench_*.py``). A script imports it
after putting its own folder on ``sys.path`` (so that it is found from any working
directory, also under ``python -P``); importing it puts the repository on ``sys.path``,
so the script then imports Loom (``kernel``, ``shell``) without an install or
``PYTHONPATH``.

- set-up: :func:`start_run` (``--quick``, the first line), :func:`child_env`
  (Loom importable, bytecode cached in the run's temporary directory),
  :func:`alternating`, :func:`startup_rounds`;
- processes, killed by PID (Linux): :func:`spawn`, :func:`kill`, :func:`kill_all_left`,
  :func:`sigkill_group`, :func:`exited_within`; for what the processes a benchmark starts
  start in turn: :func:`become_subreaper`, :func:`descendants`, :func:`wait_gone`;
- report: :class:`Metric`, :func:`summarize` (medians, ratio loom/peer, target, met),
  :func:`table_lines` (``MISSED`` where a target is missed), :func:`print_bench_json`,
  :func:`unwrap`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import platform
import select
import signal
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

#: The repository root: the folder that holds the ``kernel`` and ``shell`` packages.
REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # runnable without installing Loom or setting PYTHONPATH
    sys.path.insert(0, str(REPO))

import _machine_state as machine_state  # noqa: E402 - beside this file, found the same way

T = TypeVar("T")
S = TypeVar("S")  # the samples of one contender (loom or its peer)

# -- set-up ------------------------------------------------------------------------------


def start_run(name: str, doc: str | None, quick: T, full: T) -> tuple[bool, T]:
    """Parse the command line (``[--quick]``) and print the run's first line.

    Returns whether the run is quick, and its settings: ``quick`` (few iterations, for a
    smoke run) or ``full``. The first line names the benchmark (``name``), the machine
    and its load, the second how fast the machine is now (``_machine_state``), so that
    results can be judged; ``doc``'s first line describes the benchmark in ``--help``.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--quick", action="store_true", help="few iterations (CI smoke run)")
    is_quick: bool = parser.parse_args().quick
    settings = quick if is_quick else full
    print(
        f"{name}: Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
        f"{'quick' if is_quick else 'full'} run, {settings}",
        flush=True,
    )
    print(machine_state.measure().line(), flush=True)
    return is_quick, settings


#: Set by what runs several benchmarks in a row (``run_all.py``, the smoke tests): one
#: bytecode cache for the whole series (:func:`child_env`).
PYCACHE_ENV = "LOOM_BENCH_PYCACHE"


def child_env(workdir: Path) -> dict[str, str]:
    """The environment for what a benchmark starts: this one, with Loom importable.

    ``PYTHONSTARTUP`` is dropped; ``PYTHONPYCACHEPREFIX`` points into ``workdir`` (and
    ``PYTHONDONTWRITEBYTECODE`` is dropped), so that Loom's uninstalled sources are
    compiled once, like an installed package's, and nothing is written into the source
    tree (see ``bench_kernel.py``'s docstring). With a prefix, Python ignores every
    ``__pycache__``, the installed packages' too, so each new prefix compiles all that the
    children import (ipyparallel, IPython, zmq, ...: seconds of CPU per process, several
    processes at once): ``$LOOM_BENCH_PYCACHE``, where set, is used instead, so a series of
    runs compiles each source once (a stale file is recompiled: its source's mtime is in
    the ``.pyc``).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.pop("PYTHONSTARTUP", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = os.environ.get(PYCACHE_ENV) or str(workdir / "pycache")
    return env


def alternating(items: Sequence[T], count: int) -> Iterator[T]:
    """``count`` rounds over ``items``, the order reversed every other round."""
    for round_no in range(count):
        yield from items if round_no % 2 == 0 else items[::-1]


def startup_rounds(names: Sequence[str], trials: int) -> Iterator[tuple[str, bool]]:
    """``(name, record)`` for ``trials`` interleaved startup rounds after a warm-up round.

    Round 0 is the discarded warm-up (``record`` is False), in the reverse order of
    ``names``; the order alternates from round to round.
    """
    for round_no in range(1 + trials):
        for name in names if round_no % 2 else names[::-1]:
            yield name, round_no > 0


# -- processes ---------------------------------------------------------------------------

#: Every process :func:`spawn` started and :func:`kill` has not reaped yet, by PID.
_LIVE: dict[int, subprocess.Popen[bytes]] = {}


def spawn(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a session of its own, no stdio; remembered for :func:`kill_all_left`."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _LIVE[proc.pid] = proc
    return proc


def sigkill_group(pid: int) -> None:
    """SIGKILL ``pid`` and, if it leads a process group, the whole group."""
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``proc`` (and the process group it leads) unless it has exited; reap it."""
    if proc.poll() is None:
        sigkill_group(proc.pid)
    proc.wait(timeout=10)  # a SIGKILLed child is reapable at once
    _LIVE.pop(proc.pid, None)


def kill_all_left() -> None:
    """Last safety net: :func:`kill` whatever :func:`spawn` started and is not reaped yet."""
    for proc in list(_LIVE.values()):
        kill(proc)


async def exited_within(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait (pidfd: no thread, no polling) until ``proc`` exits; ``False`` on timeout."""
    if proc.poll() is not None:
        return True
    try:
        fd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return True
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:  # a pidfd turns readable once the process has exited
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(fd, on_exit)
    try:
        async with asyncio.timeout(timeout):
            await exited
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
        os.close(fd)


PR_SET_CHILD_SUBREAPER = 36


def cpu_seconds(pid: int) -> float:
    """CPU time process ``pid`` has used so far, all its threads (Linux: the scheduler's
    nanoseconds in ``/proc/PID/schedstat`` when there, else ``stat``'s clock ticks)."""
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        return sum(int((task / "schedstat").read_text().split()[0]) for task in tasks) / 1e9
    except (OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def become_subreaper() -> None:
    """Orphans of what this process starts (an engine whose parent died) become its children.

    So :func:`descendants` of this process finds everything it started that still lives,
    however the processes in between have ended.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def descendants(pid: int) -> list[int]:
    """PIDs of all living descendants of ``pid``, from the parent links in ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue  # exited meanwhile
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait until each of ``pids`` has exited, reaping those that are this process's
    children (a subreaper's orphans included); the PIDs still alive after ``timeout`` s."""
    survivors: list[int] = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue  # already exited and reaped
        try:  # a pidfd turns readable once the process has exited
            exited = select.select([fd], [], [], timeout)[0]
        finally:
            os.close(fd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # ours if it was orphaned (we are a subreaper)
        if not exited:
            survivors.append(pid)
    return survivors


# -- report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric(Generic[S]):
    """One row of a table: how to get it from the samples, and its target."""

    key: str  # in BENCH_JSON
    label: str  # in the table
    unit: str
    scale: float  # displayed value = raw median * scale
    target: float | None  # on the ratio loom/peer; None: informative, no target
    pick: Callable[[S], list[float]]
    higher_is_better: bool = False  # the target is then a lower bound on the ratio


def summarize(
    metrics: Iterable[Metric[S]], samples: Mapping[str, S], peer: str
) -> dict[str, dict[str, Any]]:
    """Per metric: unit, both medians (keys ``loom`` and ``peer``), ratio, target, met, n.

    ``target`` and ``met`` are ``None`` for a metric without a target.
    """
    result: dict[str, dict[str, Any]] = {}
    for m in metrics:
        loom = statistics.median(m.pick(samples["loom"])) * m.scale
        other = statistics.median(m.pick(samples[peer])) * m.scale
        ratio = loom / other
        target: str | None = None
        met: bool | None = None
        if m.target is not None:
            target = f"{'>=' if m.higher_is_better else '<='} {m.target}x"
            met = ratio >= m.target if m.higher_is_better else ratio <= m.target
        result[m.key] = {
            "unit": m.unit,
            "loom": loom,
            peer: other,
            "ratio": ratio,
            "target": target,
            "met": met,
            "n": len(m.pick(samples["loom"])),
        }
    return result


def fmt_value(value: float) -> str:
    """A median as a table shows it: 4 significant digits, whole numbers from 1000 on."""
    return f"{value:,.0f}" if value >= 1000 else f"{value:.4g}"


@dataclass(frozen=True)
class Columns:
    """The widths of a table's columns (those of ``metric`` and ``ratio`` are fixed)."""

    n: int
    value: int
    unit: int


def table_lines(
    metrics: Iterable[Metric[S]],
    summary: Mapping[str, Mapping[str, Any]],
    peer: str,
    peer_label: str,
    columns: Columns,
) -> Iterator[str]:
    """The table of a :func:`summarize` result: a head, a rule and a row per metric.

    A row ends with its target (``(informative)`` if none) and ``MISSED`` if missed.
    """
    n, v, u = columns.n, columns.value, columns.unit
    head = (
        f"{'metric':<34} {'n':>{n}} {'loom':>{v}} {peer_label:>{v}} {'unit':<{u}} "
        f"{'ratio':>7}  target"
    )
    yield head
    yield "-" * (len(head) + 8)
    for m in metrics:
        r = summary[m.key]
        target = "(informative)" if r["target"] is None else r["target"]
        verdict = "  MISSED" if r["met"] is False else ""
        yield (
            f"{m.label:<34} {r['n']:>{n}} {fmt_value(r['loom']):>{v}} {fmt_value(r[peer]):>{v}} "
            f"{m.unit:<{u}} {r['ratio']:>6.3f}x  {target}{verdict}"
        )


def print_bench_json(report: Mapping[str, Any]) -> None:
    """The last line of a run: ``BENCH_JSON`` and the report as one line of JSON."""
    print("BENCH_JSON " + json.dumps(report), flush=True)


def unwrap(exc: BaseException) -> BaseException:
    """The one exception inside (nested) groups of one, as task groups wrap what failed."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
