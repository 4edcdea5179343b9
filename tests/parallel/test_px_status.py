"""What ``%px`` tells front ends besides its output: progress reports, lost engines, the
autopx state, and the wire format the console reads (pure parts, no processes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from parallel._errors import EngineError, RemoteError
from parallel.magics._px_output import PxProgress, PxText, progress_bundle
from parallel.magics._px_run import STATUS_AFTER, _LostWatch, _Progress
from parallel.magics._px_status import (
    AUTOPX_MIME,
    STATUS_MIME,
    autopx_bundle,
    read_autopx,
    read_status,
    status_bundle,
)


@dataclass
class FakeTask:
    done: bool = False
    error: RemoteError | None = None


@dataclass
class FakeResult:
    """The few things of an ``AsyncResult`` the progress and lost watches read."""

    tasks: int = 4
    elapsed: float = 0.0
    finished: int = 0
    _tasks: dict[str, FakeTask] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._tasks = {f"m{i}": FakeTask() for i in range(self.tasks)}

    @property
    def msg_ids(self) -> list[str]:
        return list(self._tasks)

    @property
    def progress(self) -> int:
        return self.finished

    def done(self) -> bool:
        return self.finished == self.tasks


def test_quick_runs_report_nothing() -> None:
    result = FakeResult()
    progress = _Progress(result, 2.0)  # type: ignore[arg-type]
    assert progress.next_timeout() == STATUS_AFTER
    result.elapsed, result.finished = 0.1, 4
    assert progress.update() == []


def test_reports_start_after_a_moment_then_follow_engines_and_seconds() -> None:
    result = FakeResult()
    progress = _Progress(result, 2.0)  # type: ignore[arg-type]
    result.elapsed = 0.3
    assert progress.update() == [PxProgress(0, 4, 0.3, final=False, bar=False)]
    assert progress.update() == []  # nothing changed
    assert progress.next_timeout() == 0.7  # the next whole second
    result.finished = 1
    assert progress.changed()
    assert progress.update() == [PxProgress(1, 4, 0.3, final=False, bar=False)]
    result.elapsed = 1.2
    assert progress.update()[0].elapsed == 1.2  # a new second: elapsed time moves on
    result.elapsed = 2.1
    assert progress.update() == [PxProgress(1, 4, 2.1, final=False, bar=True)]  # the bar
    result.finished, result.elapsed = 4, 2.5
    assert progress.update() == [PxProgress(4, 4, 2.5, final=True, bar=True)]
    assert progress.update() == []  # the final report was the last
    assert progress.next_timeout() is None


def test_an_early_progress_after_comes_first_and_negative_means_no_bar() -> None:
    result = FakeResult()
    assert _Progress(result, 0.1).next_timeout() == 0.1  # type: ignore[arg-type]
    never = _Progress(result, -1)  # type: ignore[arg-type]
    result.elapsed = 100.0
    assert never.update()[0].bar is False


def test_an_interrupted_run_ends_its_report() -> None:
    result = FakeResult()
    progress = _Progress(result, 2.0)  # type: ignore[arg-type]
    assert progress.stop() == []  # nothing was shown: nothing to end
    result.elapsed = 0.5
    progress.update()
    (last,) = progress.stop()
    assert last.final
    assert progress.update() == []


def test_lost_engines_are_named_once_as_they_are_lost() -> None:
    result = FakeResult()
    watch = _LostWatch(result, [0, 1, 2, 3])  # type: ignore[arg-type]
    assert watch.take() == []
    tasks = list(result._tasks.values())
    for index in (1, 3):
        tasks[index].done = True
        tasks[index].error = EngineError(f"engine {index} its process was killed by SIGKILL")
    tasks[2].done = True  # finished well: not lost
    assert watch.take() == [
        PxText("stderr", "engines 1, 3 lost (its process was killed by SIGKILL)\n")
    ]
    assert watch.take() == []


def test_the_wire_format_round_trips_and_bad_data_reads_as_none() -> None:
    bundle = progress_bundle(PxProgress(3, 4, 5.2, bar=True))
    assert read_status(bundle) == {
        "done": 3,
        "total": 4,
        "elapsed": 5.2,
        "bar": True,
        "final": False,
    }
    assert bundle["text/plain"] == "3/4 engines finished after 5 s"
    quiet = status_bundle(1, 4, 0.3, bar=False, final=False, text="x")
    assert set(quiet) == {STATUS_MIME}  # no text: other front ends show nothing
    assert read_autopx(autopx_bundle(True, "0")) == (True, "0")
    assert set(autopx_bundle(False, "")) == {AUTOPX_MIME}
    for bad in (None, [], {}, {STATUS_MIME: "x"}, {STATUS_MIME: {"done": "a", "total": 1}}):
        assert read_status(bad) is None
    assert read_autopx({"text/plain": "x"}) is None
