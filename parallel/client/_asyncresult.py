"""``AsyncResult``: the pending result of one request to one or more engines.

Theory of operation
-------------------
A request (an ``apply``, an ``execute``, a ``map``) becomes one message per task,
identified by ``msg_ids``. The client feeds each task's outputs and its finish into the
result as it reads them from the engines (``_output``, ``_finish``, ``_fail``); once every
task is finished the result settles, exactly once: its value (one per task, or one for a
single target, or the tasks' values combined by ``reducer`` for a ``map``), or its error
(the task's :class:`RemoteError` for a single task, a :class:`CompositeError` naming each
failure otherwise).

Nothing reads sockets behind the caller's back (the client has no thread): ``get``,
``wait``, ``result`` and iteration pump the client's sockets until the answer is in or
the timeout passes, and ``await ar`` waits on the caller's loop. An ``AsyncResult`` is a
``concurrent.futures.Future``: callbacks, ``done()`` and ``exception()`` work as usual.
The standard library's ``concurrent.futures.wait()`` and ``as_completed()`` work too:
they pump while they block (``_stdlib_waits``). The client holds results weakly: a
dropped result's late replies are discarded, so memory stays bounded.
"""

from __future__ import annotations

import datetime
import sys
import time
import warnings
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, Future
from concurrent.futures._base import CANCELLED as _CANCELLED
from concurrent.futures._base import CANCELLED_AND_NOTIFIED as _CANCELLED_AND_NOTIFIED
from concurrent.futures._base import FINISHED as _FINISHED
from concurrent.futures._base import RUNNING as _RUNNING
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kernel.protocol import JSONDict, Message

from .._errors import CompositeError, RemoteError, TimeoutError
from ._stdlib_waits import Waiters

if TYPE_CHECKING:
    from ._pool_client import Client

__all__ = ["AsyncResult", "ExecuteReply"]

#: The lock ``Future``'s methods take, one for every result: a result is used on its
#: client's thread only (the client has no thread of its own, and its waits pump instead
#: of sleeping on this), so one lock is as good as one each, and a ``Condition`` per
#: result was a sixth of a finished task's memory (about 760 bytes). Taken from a Future
#: so that this module needs no ``threading`` (only the kernel's channels room imports it).
_SHARED_CONDITION = Future()._condition
#: The states in which ``Future.done()`` is true.
_DONE = frozenset({_CANCELLED, _CANCELLED_AND_NOTIFIED, _FINISHED})
#: ipyparallel's keys of a task's metadata (``ar.metadata``, ``ar["started"]``,
#: ``ar.started``).
METADATA_KEYS = (
    "msg_id", "engine_id", "engine_uuid", "status", "submitted", "started", "completed",
    "received", "stdout", "stderr", "outputs", "error",
)  # fmt: skip
#: What the controller's records add to them (the times the client cannot know).
_RECORD_KEYS = ["msg_id", "engine_uuid", "status", "submitted", "started", "completed"]


@dataclass(slots=True)
class ExecuteReply:
    """What ``execute`` gives per engine: the cell's number and its displayed result."""

    execution_count: int
    #: The ``execute_result`` MIME bundle, ``{}`` when the code displayed no value.
    data: JSONDict = field(default_factory=dict)
    metadata: JSONDict = field(default_factory=dict)

    def __repr__(self) -> str:
        text = self.data.get("text/plain")
        return (
            f"<ExecuteReply[{self.execution_count}]: {text}>"
            if text
            else (f"<ExecuteReply[{self.execution_count}]>")
        )


#: What an output-less task holds as its output lists: one shared empty tuple rather than
#: three lists per task (a map's or 100,000 single tasks' worth); a task's own lists are
#: made at its first output.
_NONE: tuple[()] = ()


@dataclass(slots=True)
class _Task:
    engine: int | None = None
    done: bool = False
    value: object = None
    error: RemoteError | None = None
    stdout: list[str] | tuple[()] = _NONE
    stderr: list[str] | tuple[()] = _NONE
    outputs: list[JSONDict] | tuple[()] = _NONE
    #: When the reply arrived here (``time.time()``): metadata's ``received``.
    received: float | None = None


class AsyncResult(Future[Any]):  # no thread: its waits pump (module docstring)
    """The pending result of a request to engines; see the module docstring."""

    def __init__(
        self,
        client: Client,
        msg_ids: Sequence[str],
        *,
        fname: str = "unknown",
        single: bool = False,
        reducer: Callable[[list[object]], object] | None = None,
        ordered: bool = True,
    ) -> None:
        # Future.__init__, without the Condition it would make only to be replaced by the
        # shared one, and already RUNNING (set_running_or_notify_cancel, without its lock):
        # the same attributes (tests/parallel/test_stdlib_waits.py checks them).
        self._condition = _SHARED_CONDITION
        self._state = _RUNNING
        self._result = None
        self._exception = None
        # The standard library's wait()/as_completed() block on these waiters' events:
        # ours pump the client's sockets meanwhile (see _stdlib_waits).
        self._waiters = Waiters(client._pump)
        self._done_callbacks: list[Callable[[Future[Any]], object]] = []
        self._client = client
        self.msg_ids = list(msg_ids)
        self._tasks = {msg_id: _Task() for msg_id in self.msg_ids}
        self._unfinished = len(self._tasks)  # a count: a map's 5,000 tasks are not rescanned
        self._single = single
        self._reducer = reducer
        #: Iteration order: the tasks' (``ordered``) or the order they finish in, which
        #: ``_finished_order`` records (a map's ``ordered=False``).
        self._finished_order: list[str] | None = None if ordered else []
        self._fname = fname
        self._submitted = time.monotonic()
        self._completed: float | None = None
        #: ``metadata``, once asked for after the result was in (it changes no more).
        self._metadata: list[dict[str, Any]] | None = None
        if not self.msg_ids:  # nothing to wait for (a map over an empty sequence)
            self._settle()

    def __repr__(self) -> str:
        state = "finished" if self.done() else "pending"
        return f"<AsyncResult({self._fname}): {state}>"

    # -- fed by the client ------------------------------------------------------------

    def _output(self, msg_id: str, engine: int, message: Message) -> None:
        task = self._tasks[msg_id]
        task.engine = engine
        content = message.content
        if message.msg_type == "stream":
            text = str(content.get("text", ""))
            if content.get("name") == "stderr":
                if isinstance(task.stderr, list):
                    task.stderr.append(text)
                else:
                    task.stderr = [text]
            elif isinstance(task.stdout, list):
                task.stdout.append(text)
            else:
                task.stdout = [text]
        elif message.msg_type in ("display_data", "execute_result", "update_display_data"):
            output = {"msg_type": message.msg_type, **content}
            if isinstance(task.outputs, list):
                task.outputs.append(output)
            else:
                task.outputs = [output]

    def _finish(self, msg_id: str, engine: int, value: object, error: RemoteError | None) -> None:
        task = self._tasks.get(msg_id)
        if task is None or task.done:
            return
        task.engine, task.value, task.error, task.done = engine, value, error, True
        task.received = time.time()
        if self._finished_order is not None:
            self._finished_order.append(msg_id)
        self._unfinished -= 1
        if not self._unfinished:
            self._settle()

    def _settle(self) -> None:
        self._completed = time.monotonic()
        errors = [t.error for t in self._tasks.values() if t.error is not None]
        if errors:
            if self._single and len(errors) == 1:
                self.set_exception(errors[0])
            else:
                self.set_exception(CompositeError(f"{len(errors)} of {len(self._tasks)}", errors))
            return
        values = [t.value for t in self._tasks.values()]
        if self._reducer is not None:
            self.set_result(self._reducer(values))
        else:
            self.set_result(values[0] if self._single else values)

    # -- waiting ----------------------------------------------------------------------

    def done(self) -> bool:
        """Finished (or cancelled)? ``Future.done`` without taking the lock: every wait
        asks it after each wake (``Pump.pump_until``), and the lock (a ``Condition``,
        entered and left in Python) cost more than the question. A result changes state on
        its client's thread only, and one attribute read is atomic anyway."""
        return self._state in _DONE

    def wait(self, timeout: float | None = -1) -> bool:
        """Pump until finished or ``timeout`` seconds (negative or None: no limit); done()?"""
        limit = None if timeout is None or timeout < 0 else timeout
        return self._client._pump.pump_until(self.done, limit)

    def get(
        self,
        timeout: float | None = -1,
        return_exceptions: bool = False,
        return_when: str | None = None,
    ) -> Any:
        """The result, waiting up to ``timeout`` seconds (negative or None: no limit).

        Raises :class:`TimeoutError` if it is not in by then, and the remote error
        (:class:`RemoteError`, :class:`CompositeError`, :class:`EngineError`) if a task failed.
        ``return_exceptions=True``: each failed task's error takes its place in the
        result instead (a failed chunk of a map: one error for its elements).
        ``return_when=FIRST_EXCEPTION`` (``concurrent.futures``'): raise, or return, the
        first task's error as soon as it is in, without waiting for the others.
        """
        if return_when == FIRST_COMPLETED:  # as ipyparallel: not supported, said so
            warnings.warn(
                "AsyncResult.get(return_when=FIRST_COMPLETED) is not supported: waiting for"
                " all tasks (ALL_COMPLETED)",
                UserWarning,
                stacklevel=2,
            )
        elif return_when not in (None, ALL_COMPLETED, FIRST_EXCEPTION):
            raise ValueError(
                f"return_when must be None, ALL_COMPLETED or FIRST_EXCEPTION, not {return_when!r}"
            )
        limit = None if timeout is None or timeout < 0 else timeout
        if return_when == FIRST_EXCEPTION:
            self._client._pump.pump_until(
                lambda: self.done() or self._first_error() is not None, limit
            )
            first = self._first_error()
            if first is not None and not self.done():
                if return_exceptions:
                    return first
                raise first
        if not self.wait(timeout):
            raise TimeoutError(f"Result not ready after {timeout} s: {self._progress_text()}")
        if return_exceptions and super().exception(0) is not None:
            return self._with_errors()
        return super().result(0)

    def _first_error(self) -> RemoteError | None:
        return next((t.error for t in self._tasks.values() if t.error is not None), None)

    def _with_errors(self) -> Any:
        """The result with each failed task's error in its place (``return_exceptions``)."""
        values = [t.error if t.error is not None else t.value for t in self._tasks.values()]
        if self._single:
            return values[0]
        if self._reducer is None:
            return values
        flat: list[object] = []
        for value in values:  # a failed chunk's elements are unknown: its error, once
            if isinstance(value, BaseException):
                flat.append(value)
            else:
                flat.extend(value)  # type: ignore[arg-type]
        return flat

    @property
    def r(self) -> Any:
        """``get()`` (ipyparallel's shorthand)."""
        return self.get()

    @property
    def result_dict(self) -> dict[int, Any]:
        """``get_dict()`` (ipyparallel's shorthand)."""
        return self.get_dict()

    def result(self, timeout: float | None = None) -> Any:
        """As :meth:`get` (``concurrent.futures.Future.result``'s signature)."""
        return self.get(-1 if timeout is None else timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if not self.wait(-1 if timeout is None else timeout):
            raise TimeoutError(f"Result not ready after {timeout} s")
        return super().exception(0)

    def wait_for_output(self, timeout: float | None = -1) -> bool:
        """Wait until every task's output is in: here that is when the result is (a task
        finishes only once every output its reply counts is in). True if in."""
        return self.wait(timeout)

    def ready(self) -> bool:
        """Finished? Reads what has arrived so far, never blocks."""
        self._client._pump.drain()
        return self.done()

    def successful(self) -> bool:
        """Finished without error. Raises ``AssertionError`` if not finished yet."""
        if not self.ready():  # ipyparallel's contract, kept under python -O too
            raise AssertionError("the result is not ready yet")
        return super().exception(0) is None

    def __await__(self) -> Generator[Any, None, Any]:
        return self._await().__await__()

    async def _await(self) -> Any:
        await self._client._pump.wait_until(self.done)
        return super().result(0)

    def __iter__(self) -> Iterator[Any]:
        """Each value as soon as it is in: a map's elements (unchunked) or each engine's
        value, in order, or in the order their tasks finish for a map made with
        ``ordered=False``. A failed task raises its error when its turn comes; a single
        result's value is iterated as a whole (ipyparallel semantics)."""
        return self._iterate(return_exceptions=False)

    def _iterate(self, *, return_exceptions: bool) -> Iterator[Any]:
        """``__iter__``; ``return_exceptions``: a failed task's error is yielded, not raised
        (a map's failed chunk: once)."""
        if self._single:
            self.get()
            value = super().result(0)
            yield from (value if isinstance(value, list) else [value])
            return
        pump, finished = self._client._pump, self._finished_order
        for index, msg_id in enumerate(self.msg_ids):
            if finished is None:
                task = self._tasks[msg_id]
                pump.pump_until(lambda: task.done, None)  # noqa: B023 - called at once
            else:
                pump.pump_until(lambda: len(finished) > index, None)  # noqa: B023
                task = self._tasks[finished[index]]
            if task.error is not None:
                if not return_exceptions:
                    raise task.error
                yield task.error
                continue
            if self._reducer is not None:  # a map's task holds a chunk of elements
                yield from task.value  # type: ignore[misc]
            else:
                yield task.value

    def __len__(self) -> int:
        return len(self.msg_ids)

    # -- what the tasks produced ------------------------------------------------------

    @property
    def progress(self) -> int:
        """How many tasks have finished."""
        return sum(t.done for t in self._tasks.values())

    @property
    def elapsed(self) -> float:
        """Seconds since submission, until completion once finished."""
        end = self._completed if self._completed is not None else time.monotonic()
        return end - self._submitted

    @property
    def engine_id(self) -> Any:
        return self._per_task(lambda t: t.engine)

    @property
    def stdout(self) -> Any:
        """What each task printed to stdout (a string for a single task)."""
        return self._per_task(lambda t: "".join(t.stdout))

    @property
    def stderr(self) -> Any:
        """What each task printed to stderr (a string for a single task)."""
        return self._per_task(lambda t: "".join(t.stderr))

    @property
    def outputs(self) -> Any:
        """Each task's displayed outputs (``display_data``/``execute_result`` contents)."""
        return self._per_task(lambda t: list(t.outputs))

    def get_dict(self, timeout: float | None = -1) -> dict[int, Any]:
        """The results keyed by engine id (ipyparallel's), waiting as :meth:`get` does.
        :class:`ValueError` if an engine ran more than one of the tasks (a map's chunks, a
        load-balanced batch): their results would not fit one key."""
        value = self.get(timeout)
        if self._reducer is not None:
            raise ValueError("a map's result has no one value per engine: use get()")
        engines = [task.engine for task in self._tasks.values()]
        repeated = sorted({e for e in engines if e is not None and engines.count(e) > 1})
        if repeated:
            raise ValueError(
                f"cannot key the results by engine: engine(s) {repeated} ran more than one task"
            )
        values = [value] if self._single else value
        return {int(engine): v for engine, v in zip(engines, values, strict=True)}  # type: ignore[arg-type]

    @property
    def wall_time(self) -> float:
        """Seconds from submission to the last task's end (:attr:`elapsed` once finished;
        ipyparallel's, which takes the engines' clocks, reads a little less)."""
        return self.elapsed

    @property
    def sent(self) -> bool:
        """Always True: the requests are sent before the result is returned (no thread
        sends them later, as in ipyparallel)."""
        return True

    def wait_for_send(self, timeout: float | None = -1) -> None:
        """Returns at once: see :attr:`sent`."""

    # -- metadata (ipyparallel's) ------------------------------------------------------

    @property
    def metadata(self) -> Any:
        """Each task's metadata, a dict (one for a single task, else a list), with
        ipyparallel's keys: ``msg_id``, ``engine_id``, ``engine_uuid``, ``status``,
        ``submitted``, ``started``, ``completed``, ``received`` (``datetime``, UTC:
        ``started``/``completed`` by the engine's clock, ``received`` by this one's),
        ``stdout``, ``stderr``, ``outputs`` and ``error``.

        The engine's times come from the controller's records (one request, asked when
        the metadata is: per task, the client keeps only when its reply arrived, so
        100,000 results cost ~3 MB more, not ipyparallel's dict each): what a task has
        not reached yet is ``None``. Once the result is in, the metadata is fetched once
        and kept with the result.
        """
        metadata = self._metadata
        if metadata is None:
            self._client._pump.drain()
            done = self.done()
            metadata = self._fetch_metadata(wait=done)
            if done:
                self._metadata = metadata
        return metadata[0] if self._single else metadata

    def _fetch_metadata(self, *, wait: bool) -> list[dict[str, Any]]:
        records = self._client._controller.task_records(self.msg_ids, _RECORD_KEYS, finished=wait)
        out = []
        for msg_id, task in self._tasks.items():
            record = records.get(msg_id, {})
            status: str | None
            if task.done:
                status = "ok" if task.error is None else "error"
                if task.error is not None and task.error.ename == "TaskAborted":
                    status = "aborted"
            else:
                status = record.get("status")
            received = task.received
            out.append(
                {
                    "msg_id": msg_id,
                    "engine_id": task.engine,
                    "engine_uuid": record.get("engine_uuid"),
                    "status": status,
                    "submitted": record.get("submitted"),
                    "started": record.get("started"),
                    "completed": record.get("completed"),
                    "received": (
                        None
                        if received is None
                        else datetime.datetime.fromtimestamp(received, datetime.UTC)
                    ),
                    "stdout": "".join(task.stdout),
                    "stderr": "".join(task.stderr),
                    "outputs": list(task.outputs),
                    "error": task.error,
                }
            )
        return out

    def __getitem__(self, key: int | slice | str) -> Any:
        """A metadata key (``ar["started"]``: each task's, or the single task's), or,
        with an int or a slice, the finished result's items (ipyparallel's)."""
        if isinstance(key, str):
            if key not in METADATA_KEYS:
                known = ", ".join(METADATA_KEYS)
                raise KeyError(f"{key!r} is not a metadata key; they are: {known}")
            metadata = self.metadata
            return metadata[key] if self._single else [md[key] for md in metadata]
        if not self.ready():
            raise TimeoutError(f"Result not ready: {self._progress_text()}")
        return self.get()[key]

    def __getattr__(self, name: str) -> Any:
        # Only for names no attribute has: ``ar.started``, ``ar.completed``... as in
        # ipyparallel; any other name is the usual AttributeError.
        if name in METADATA_KEYS:
            return self[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def serial_time(self) -> float:
        """Seconds the tasks ran, summed (each one's ``completed - started``, by its
        engine's clock). :class:`TimeoutError` if the result is not in yet."""
        if not self.ready():
            raise TimeoutError(f"Result not ready: {self._progress_text()}")
        metadata = self.metadata
        total = 0.0
        for md in [metadata] if self._single else metadata:
            started, completed = md["started"], md["completed"]
            if isinstance(started, datetime.datetime) and isinstance(completed, datetime.datetime):
                total += (completed - started).total_seconds()
        return total

    @staticmethod
    def timedelta(
        start: datetime.datetime | Sequence[datetime.datetime],
        end: datetime.datetime | Sequence[datetime.datetime],
        start_key: Callable[[Sequence[datetime.datetime]], datetime.datetime] = min,
        end_key: Callable[[Sequence[datetime.datetime]], datetime.datetime] = max,
    ) -> float:
        """Seconds between two times or sets of times (``ar.timedelta(ar.submitted,
        ar.received)``): by default the earliest of ``start`` to the latest of ``end``."""
        first = start if isinstance(start, datetime.datetime) else start_key(start)
        last = end if isinstance(end, datetime.datetime) else end_key(end)
        return (last - first).total_seconds()

    def _per_task(self, get: Callable[[_Task], Any]) -> Any:
        values = [get(t) for t in self._tasks.values()]
        return values[0] if self._single else values  # one task's, or a list per task

    def display_outputs(self, groupby: str = "type", result_only: bool = False) -> None:
        """Print the tasks' stdout, stderr and displayed text, each headed by its engine
        (``[stdout:0] ...``), as ipyparallel does. ``groupby="type"``: all stdout, then
        all stderr, then the displayed outputs; ``"engine"``: everything of one task
        before the next; ``"order"``: as ``"type"``, with the tasks' first displayed
        outputs together, then their second ones... ``result_only``: only the displayed
        results (``execute_result``), not the streams nor other displays. A single
        task's streams are printed without headings."""
        if groupby not in ("type", "engine", "order"):
            raise ValueError(f"groupby must be 'type', 'engine' or 'order', not {groupby!r}")
        tasks = [(t.engine if t.engine is not None else "?", t) for t in self._tasks.values()]

        def stream(label: object, task: _Task, name: str) -> None:
            text = "".join(task.stderr if name == "stderr" else task.stdout)
            if not text or result_only:
                return
            # As ipyparallel prints them: several lines start below their heading.
            multiline = text.count("\n") > int(text.endswith("\n"))
            heading = f"[{name}:{label}] " + ("\n" if multiline else "")
            if self._single:  # one task: its text as it was printed
                heading = ""
            end = "" if text.endswith("\n") else "\n"
            print(heading + text, end=end, file=sys.stderr if name == "stderr" else sys.stdout)

        def shown(label: object, output: JSONDict) -> None:
            if result_only and output.get("msg_type") != "execute_result":
                return
            text = output.get("data", {}).get("text/plain")
            if text:
                print(f"[output:{label}] {text}")

        if groupby == "engine":
            for label, task in tasks:
                stream(label, task, "stdout")
                stream(label, task, "stderr")
                for output in task.outputs:
                    shown(label, output)
            return
        for name in ("stdout", "stderr"):
            for label, task in tasks:
                stream(label, task, name)
        if groupby == "type":
            for label, task in tasks:
                for output in task.outputs:
                    shown(label, output)
            return
        for index in range(max((len(t.outputs) for _, t in tasks), default=0)):
            for label, task in tasks:
                if index < len(task.outputs):
                    shown(label, task.outputs[index])

    def wait_interactive(self, interval: float = 0.1, timeout: float = -1) -> None:
        """Wait, showing ``done/total tasks finished after N s`` until finished."""
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        while not self.done():
            if deadline is not None and time.monotonic() >= deadline:
                break
            self._client._pump.pump_until(self.done, interval)
            print(f"\r{self._progress_text()}", end="", flush=True)
        print(f"\r{self._progress_text()}")

    def _progress_text(self) -> str:
        return f"{self.progress}/{len(self.msg_ids)} tasks finished after {self.elapsed:.0f} s"

    def abort(self) -> None:
        """Abort the tasks that have not started (``Client.abort``)."""
        self._client.abort(self.msg_ids)
