"""A pool to break on purpose: engines started by the test, killed, stopped, topped up.

``Pool`` wraps a running cluster. Besides the cluster's own engines it starts
standalone engines (``python -P -m parallel.engine -f CLUSTER``, each in its own process
group) whenever fewer than the wanted number are live, so tests do not depend on the
controller replacing dead engines (it may, or may not). Every process started here is
killed by PID at the end, stopped ones too (SIGCONT first, so SIGKILL is delivered).

``Chaos`` is the seeded monkey: its ``rng`` decides what dies and when, so a failure
can be replayed with ``LOOM_CHAOS_SEED=<seed>``; the seed is attached to any exception
that leaves its ``with`` block (``add_note``: pytest prints it).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from _cluster_support import _kill

from parallel import Client, Cluster


@dataclass
class Pool:
    """A cluster, its client, and the engine processes this test started."""

    cluster: Cluster
    client: Client
    started: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    stopped: set[int] = field(default_factory=set)
    #: pids of started engines that registered at some point.
    registered: set[int] = field(default_factory=set)
    #: Other processes a test started (a restored controller): killed at the end.
    extra_pids: set[int] = field(default_factory=set)

    def pid_of(self, engine: int) -> int:
        self.client._pump.drain()
        return self.client._records[engine].pid

    def live(self) -> list[int]:
        return self.client.ids

    def top_up(self, count: int, timeout: float = 60.0) -> list[int]:
        """Start engines until ``count`` are live; the live ids.

        Re-checked every second: an engine listed live may be reported lost meanwhile
        (killed just before), and one that is starting may die before it registers."""
        deadline = time.monotonic() + timeout
        while True:
            self.client._pump.drain()
            self.registered |= {record.pid for record in self.client._records.values()}
            starting = [
                pid
                for pid, process in self.started.items()
                if process.poll() is None and pid not in self.registered
            ]
            for _ in range(count - len(self.client._links) - len(starting)):
                self._start_engine()
            remaining = deadline - time.monotonic()
            if self.client.pump_until_engines(count, min(1.0, max(remaining, 0.0))):
                return self.live()
            if remaining <= 0:
                break
        error = TimeoutError(f"{len(self.client._links)} of {count} engines after {timeout} s")
        for path in sorted(self.log_dir.glob("engine-*.log")):  # say why
            error.add_note(f"{path.name}: {path.read_text()[-2000:]}")
        process = self.cluster._process
        if process is not None:
            error.add_note(f"controller alive: {process.is_alive()}")
            error.add_note(process.output_tail(3000))
        raise error

    def _start_engine(self) -> None:
        argv = [sys.executable, "-P", "-m", "parallel.engine", "-f", str(self.cluster_file)]
        log = self.log_dir / f"engine-{len(self.started)}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                argv, start_new_session=True, stdout=out, stderr=subprocess.STDOUT
            )
        self.started[process.pid] = process

    @property
    def log_dir(self) -> Path:
        assert self.cluster.cluster_file is not None
        return self.cluster.cluster_file.parent

    @property
    def cluster_file(self) -> str:
        assert self.cluster.cluster_file is not None
        return str(self.cluster.cluster_file)

    def kill(self, engine: int, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` to ``engine``'s process; its pid."""
        pid = self.pid_of(engine)
        os.kill(pid, sig)
        if sig == signal.SIGSTOP:
            self.stopped.add(pid)
        elif sig == signal.SIGCONT:
            self.stopped.discard(pid)
        return pid

    def wait_lost(self, engine: int, timeout: float) -> float:
        """Pump until the client no longer lists ``engine``; seconds it took."""
        start = time.monotonic()
        gone = self.client._pump.pump_until(lambda: engine not in self.client._links, timeout)
        assert gone, f"engine {engine} was not reported lost within {timeout} s"
        return time.monotonic() - start

    def close(self) -> None:
        for pid in self.extra_pids:
            _kill(pid)
        for pid in self.stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        for pid, process in self.started.items():
            _kill(pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)


class Chaos:
    """A seeded random source of faults; see the module docstring."""

    def __init__(self, seed: int | None = None) -> None:
        env = os.environ.get("LOOM_CHAOS_SEED")
        self.seed = seed if seed is not None else int(env) if env else random.randrange(2**32)
        self.rng = random.Random(self.seed)

    def __enter__(self) -> Chaos:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            exc.add_note(f"chaos seed {self.seed}: replay with LOOM_CHAOS_SEED={self.seed}")

    def next_kill_after(self, mean: float) -> float:
        """Seconds to the next kill: kills form a Poisson process of mean interval ``mean``."""
        return self.rng.expovariate(1.0 / mean)


@contextlib.contextmanager
def kills_at_random(
    pool: Pool, chaos: Chaos, mean: float, keep: int
) -> Iterator[Callable[..., int]]:
    """A ``step()`` that SIGKILLs a random live engine whenever the Poisson clock says so
    (and tops the pool up to ``keep`` live engines); ``step`` returns the kills so far.
    ``step(force=True)`` kills one now whatever the clock says (a run that would end
    before the clock's first kill still sees one)."""
    kills = 0
    due = time.monotonic() + chaos.next_kill_after(mean)

    def step(force: bool = False) -> int:
        nonlocal kills, due
        now = time.monotonic()
        if force or now >= due:
            live = pool.live()
            if live:
                victim = chaos.rng.choice(live)
                with contextlib.suppress(ProcessLookupError, KeyError):
                    pool.kill(victim)
                    kills += 1
            due = now + chaos.next_kill_after(mean)
        if len(pool.live()) < keep:
            pool.top_up(keep)
        return kills

    yield step
