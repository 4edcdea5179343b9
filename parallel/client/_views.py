"""Views: ``DirectView`` (named engines) and ``LoadBalancedView`` (whichever is free).

ipyparallel's surface, same names and semantics. Every call makes an
:class:`~._asyncresult.AsyncResult`; ``block=True`` (or a ``*_sync`` method) only waits
for it. A target given as an int gives single results; anything else gives a list, one
per engine, in target order.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import itertools
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import RemoteError
from ..protocol._engine_traits import labels_from, resources_from

# Imported with the views, not per call (a function-level import was ~3 us a call):
# whoever makes a view sends pickles, and `import parallel` still loads no cloudpickle.
from ..protocol._serialize import PickledOnce, serialize_call, serialize_plain_call
from ._asyncresult import AsyncResult
from ._executor import ViewExecutor
from ._pickles import serialize_apply
from ._remote import call_with_references, has_references, map_chunk, pull_names, pull_one
from ._remote import nothing as _nothing
from ._remote import push as push_on_engines

if TYPE_CHECKING:
    from ._pool_client import Client, Targets

__all__ = ["DirectView", "LoadBalancedView"]


def _serialize(
    fn: Callable[..., object], args: Sequence[object], kwargs: dict[str, Any]
) -> list[bytes]:
    return serialize_call(fn, tuple(args), kwargs)


def _pickled_once(fn: Callable[..., object]) -> object:
    """``fn`` as the tasks of one map carry it: pickled once for all of them."""
    return PickledOnce(fn)


def _serialize_chunk(once: object, chunks: list[list[object]]) -> list[bytes]:
    """One map task's frames: by the standard pickler when its elements are plain values
    (the same pickle, ~6x cheaper), else as any call is."""
    args = [once, *chunks]
    frames = serialize_plain_call(map_chunk, args)
    return frames if frames is not None else _serialize(map_chunk, args, {})


def _check_sequences(call: str, sequences: Sequence[object]) -> None:
    """:class:`TypeError` naming what is not a sequence (``len()`` and slices): the
    views cut sequences into blocks before anything is sent."""
    for index, seq in enumerate(sequences):
        if not (hasattr(seq, "__len__") and hasattr(seq, "__getitem__")) or isinstance(seq, dict):
            raise TypeError(
                f"{call}() needs sequences (with len() and slices, e.g. a list or an array),"
                f" not {type(seq).__name__} (sequence {index + 1})"
            )


def _as_sequence(iterable: Iterable[object]) -> Sequence[object]:
    """A sequence as it is; another iterable (a generator, a set) as a list of it; what
    is not iterable as it is, for ``_check_sequences`` to name."""
    sliceable = hasattr(iterable, "__len__") and hasattr(iterable, "__getitem__")
    if sliceable or not isinstance(iterable, Iterable):
        return iterable  # type: ignore[return-value]
    return list(iterable)


def _name(fn: object) -> str:
    return str(getattr(fn, "__name__", type(fn).__name__))


class _View:
    """What both views share: flags, ``apply*`` and ``map*``."""

    _flag_names: tuple[str, ...] = ("block",)

    def __init__(self, client: Client, targets: Targets) -> None:
        self.client = client
        self.targets = targets
        self.block = False

    def set_flags(self, **flags: Any) -> None:
        """Set view flags (``block``; ``retries``, ``timeout`` on load-balanced views)."""
        for name, value in flags.items():
            if name not in self._flag_names:
                raise KeyError(f"invalid flag {name!r}; valid: {', '.join(self._flag_names)}")
            setattr(self, name, value)

    @contextlib.contextmanager
    def temp_flags(self, **flags: Any) -> Iterator[None]:
        """Set flags for the duration of a ``with`` block."""
        saved = {name: getattr(self, name) for name in flags}
        self.set_flags(**flags)
        try:
            yield
        finally:
            self.set_flags(**saved)

    def __len__(self) -> int:
        """How many engines the view reaches (all registered ones for ``"all"``/None)."""
        targets = self.targets
        return len(self.client.resolve_targets("all" if targets is None else targets))

    @property
    def executor(self) -> ViewExecutor:
        """This view as a ``concurrent.futures.Executor`` (``submit``, ``map``)."""
        return ViewExecutor(self)

    def _finish(self, result: AsyncResult, block: bool | None) -> Any:
        return result.get() if (self.block if block is None else block) else result

    def apply(self, f: Callable[..., object], *args: object, **kwargs: object) -> Any:
        """Call ``f(*args, **kwargs)`` remotely; blocks if ``view.block``."""
        return self._finish(self._apply(f, args, kwargs), None)

    def apply_sync(self, f: Callable[..., object], *args: object, **kwargs: object) -> Any:
        return self._apply(f, args, kwargs).get()

    def apply_async(self, f: Callable[..., object], *args: object, **kwargs: object) -> AsyncResult:
        return self._apply(f, args, kwargs)

    def map(
        self,
        f: Callable[..., object],
        *sequences: Sequence[object],
        block: bool | None = None,
        **flags: Any,
    ) -> Any:
        """``map(f, *sequences)`` on the engines; a list in sequence order."""
        return self._finish(self._map(f, sequences, **flags), block)

    def map_sync(self, f: Callable[..., object], *sequences: Sequence[object], **flags: Any) -> Any:
        return self._map(f, sequences, **flags).get()

    def map_async(
        self, f: Callable[..., object], *sequences: Sequence[object], **flags: Any
    ) -> AsyncResult:
        return self._map(f, sequences, **flags)

    def imap(
        self, f: Callable[..., object], *iterables: Iterable[object], **flags: Any
    ) -> Iterator[Any]:
        """``map_async``'s results one by one, in order, each as soon as it is in (a
        direct view cuts whole sequences into blocks: other iterables are read first)."""
        return iter(self._map(f, [_as_sequence(i) for i in iterables], **flags))

    def remote(
        self, block: bool | None = None
    ) -> Callable[[Callable[..., object]], Callable[..., Any]]:
        """Decorator: calling the function runs it on the view's engines."""

        def decorate(fn: Callable[..., object]) -> Callable[..., Any]:
            @functools.wraps(fn)
            def call(*args: object, **kwargs: object) -> Any:
                return self._finish(self._apply(fn, args, kwargs), block)

            return call

        return decorate

    def parallel(self, block: bool | None = None) -> Callable[[Callable[..., object]], Any]:
        """Decorator: ``f.map(seq)`` maps the function over the engines."""

        def decorate(fn: Callable[..., object]) -> Any:
            @functools.wraps(fn)
            def call(*sequences: Sequence[object]) -> Any:
                return self.map(fn, *sequences, block=block)

            call.map = call  # type: ignore[attr-defined]
            return call

        return decorate

    # -- the client's, for the view (ipyparallel's View has them too) ---------------------

    def wait(self, jobs: Iterable[AsyncResult | str] | None = None, timeout: float = -1) -> bool:
        """Wait for ``jobs`` (default: everything the client has outstanding: a view keeps
        no history of its own); whether all finished (``Client.wait``)."""
        return self.client.wait(jobs, timeout)

    def abort(
        self,
        jobs: Iterable[AsyncResult | str] | AsyncResult | str | None = None,
        targets: Targets = None,
        block: bool | None = None,
    ) -> None:
        """Abort tasks that have not started (``Client.abort``)."""
        self.client.abort(jobs, targets=targets, block=block)

    def get_result(
        self,
        indices_or_msg_ids: str | Sequence[str] | AsyncResult,
        block: bool | None = None,
        owner: bool = False,
    ) -> AsyncResult:
        """Recorded results by msg_id (``Client.get_result``)."""
        return self.client.get_result(indices_or_msg_ids, block=block, owner=owner)

    def queue_status(self, targets: Targets = None, verbose: bool = False) -> dict[Any, Any]:
        """``Client.queue_status`` of the view's engines (or ``targets``)."""
        chosen = self.targets if targets is None else targets
        return self.client.queue_status("all" if chosen is None else chosen, verbose)

    def spin(self) -> None:
        """Read what has arrived (``Client.spin``)."""
        self.client.spin()

    def shutdown(
        self,
        targets: Targets = None,
        restart: bool = False,
        hub: bool = False,
        block: bool | None = None,
        timeout: float = 10.0,
    ) -> None:
        """Stop the view's engines (or ``targets``); ``hub=True`` stops the whole cluster."""
        chosen = self.targets if targets is None else targets
        self.client.shutdown(
            "all" if chosen is None else chosen,
            restart=restart,
            hub=hub,
            block=block,
            timeout=timeout,
        )

    def _apply(
        self, f: Callable[..., object], args: Sequence[object], kwargs: dict[str, Any]
    ) -> AsyncResult:
        raise NotImplementedError

    def _map(
        self, f: Callable[..., object], sequences: Sequence[Sequence[object]], **flags: Any
    ) -> AsyncResult:
        raise NotImplementedError


class DirectView(_View):
    """A view on named engines: each call runs on every target."""

    def __repr__(self) -> str:
        return f"<DirectView {self.targets!r}>"

    def _ids(self, targets: Targets = None) -> list[int]:
        return self.client.resolve_targets(self.targets if targets is None else targets)

    def _single(self, targets: Targets = None) -> bool:
        return isinstance(self.targets if targets is None else targets, int)

    def _apply(
        self,
        f: Callable[..., object],
        args: Sequence[object],
        kwargs: dict[str, Any],
        targets: Targets = None,
    ) -> AsyncResult:
        ids = self._ids(targets)
        fname = _name(f)
        if has_references(args, kwargs):  # names looked up on each engine
            f, args, kwargs = call_with_references, (f, args, kwargs), {}
        # Before sending: unpicklable -> error here. The function's pickle may be kept.
        buffers = serialize_apply(f, args, kwargs)
        # One request for all: large buffers are written to shared memory once (_shm_client).
        msg_ids = self.client.send_requests(ids, "apply_request", {}, buffers)
        result = AsyncResult(self.client, msg_ids, fname=fname, single=self._single(targets))
        return self.client.track(result)

    def _map(
        self, f: Callable[..., object], sequences: Sequence[Sequence[object]], **flags: Any
    ) -> AsyncResult:
        if not sequences:
            raise TypeError("map() needs at least one sequence")
        _check_sequences("map", sequences)
        ids = self._ids()
        length = min(len(seq) for seq in sequences)
        once = _pickled_once(f)
        msg_ids = []
        for index, engine_id in enumerate(ids):
            lo, hi = _block(length, len(ids), index)
            if lo == hi:
                continue
            chunks = [list(seq[lo:hi]) for seq in sequences]
            buffers = _serialize_chunk(once, chunks)
            msg_ids.append(self.client.send_request(engine_id, "apply_request", {}, buffers))
        result = AsyncResult(self.client, msg_ids, fname=_name(f), reducer=_concatenate)
        return self.client.track(result)

    def clear(self, targets: Targets = None, block: bool | None = None) -> Any:
        """Empty the engines' namespaces (``%reset -f`` on each: what the engine itself
        defines, ``display`` and the like, stays)."""
        return self.execute("%reset -f", targets=targets, block=block)

    def activate(self, suffix: str = "") -> None:
        """Register the ``%px`` magics (``%px{suffix}``...) for this view (ipyparallel's);
        ``Client.activate`` makes a new blocking view instead."""
        from ..magics._px_activate import activate_view

        activate_view(self, suffix)

    def execute(
        self, code: str, silent: bool = True, targets: Targets = None, block: bool | None = None
    ) -> Any:
        """Run ``code`` on the engines as a cell (``execute_request``)."""
        if not isinstance(code, str):
            raise TypeError(f"execute() takes code as a str, not {code!r:.80}")
        content = {
            "code": code,
            "silent": silent,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": False,
        }
        ids = self._ids(targets)
        msg_ids = self.client.send_requests(ids, "execute_request", content)
        result = AsyncResult(self.client, msg_ids, fname="execute", single=self._single(targets))
        return self._finish(self.client.track(result), block)

    def setup(self, code_or_function: str | Callable[[], object], block: bool | None = None) -> Any:
        """Run ``code_or_function`` (code, or a function called without arguments) on the
        view's engines now, as ``execute``/``apply`` do, and record it with the controller:
        an engine of this view that is replaced after dying (or, for a view on all
        engines, any engine that joins later) runs every recorded setup, in order, before
        it takes work. Returns the ``AsyncResult`` of the run now."""
        everyone = self.targets is None or self.targets == "all"
        recorded = None if everyone else self._ids()
        ids = self.client.record_setup(code_or_function, recorded)
        if not ids:  # recorded; no engine to run it on now
            return self._finish(self.client.track(AsyncResult(self.client, [])), block)
        # An int view keeps its single result; otherwise the engines the hub named.
        run_on: Targets = self.targets if self._single() else ids
        if isinstance(code_or_function, str):
            return self.execute(code_or_function, silent=False, targets=run_on, block=block)
        return self._finish(self._apply(code_or_function, (), {}, run_on), block)

    def run(self, filename: str, targets: Targets = None, block: bool | None = None) -> Any:
        """Execute the code of file ``filename`` on the engines."""
        return self.execute(
            Path(filename).read_text(encoding="utf-8"), targets=targets, block=block
        )

    def push(
        self,
        ns: dict[str, object],
        targets: Targets = None,
        block: bool | None = None,
        track: bool | None = None,
    ) -> Any:
        """Put the names of ``ns`` in the engines' namespaces. (``track``: accepted for
        ipyparallel's sake; the data is always sent before this returns, see
        ``AsyncResult.sent``.)"""
        if not isinstance(ns, Mapping) or not all(isinstance(k, str) for k in ns):
            raise TypeError(f"push() takes a dict of names (str) to values, not {ns!r:.80}")
        return self._finish(self._apply(push_on_engines, [dict(ns)], {}, targets), block)

    def pull(
        self, names: str | Sequence[str], targets: Targets = None, block: bool | None = None
    ) -> Any:
        """The value of ``names`` (a name, or a list of names) on each engine."""
        if isinstance(names, str):
            return self._finish(self._apply(pull_one, [names], {}, targets), block)
        listed = list(names) if isinstance(names, Iterable) else None
        if listed is None or not all(isinstance(n, str) for n in listed):
            raise TypeError(f"pull() takes a name or a list of names, not {names!r:.80}")
        return self._finish(self._apply(pull_names, [listed], {}, targets), block)

    def scatter(
        self,
        key: str,
        seq: Sequence[object],
        dist: str = "b",
        flatten: bool = False,
        targets: Targets = None,
        block: bool | None = None,
        track: bool | None = None,
    ) -> Any:
        """Partition ``seq`` into contiguous blocks and push block i as ``key`` to engine i.

        ``flatten``: a block of one element is pushed as that element, not a list of one
        (ipyparallel's). ``dist`` is ``"b"`` (blocks), the only distribution there is."""
        if not isinstance(key, str):
            raise TypeError(f"scatter() takes a name (str) first, not {key!r:.80}")
        _check_dist(dist)
        _check_sequences("scatter", [seq])
        ids = self._ids(targets)
        msg_ids = []
        for index, engine_id in enumerate(ids):
            lo, hi = _block(len(seq), len(ids), index)
            # A numpy array's block stays an array (one buffer, not a list of scalars).
            part: object = seq[lo:hi] if _is_array(seq) else list(seq[lo:hi])
            if flatten and hi - lo == 1:
                part = seq[lo]
            buffers = _serialize(push_on_engines, [{key: part}], {})
            msg_ids.append(self.client.send_request(engine_id, "apply_request", {}, buffers))
        return self._finish(
            self.client.track(AsyncResult(self.client, msg_ids, fname="scatter")), block
        )

    def gather(
        self, key: str, dist: str = "b", targets: Targets = None, block: bool | None = None
    ) -> Any:
        """Concatenate ``key`` from each engine, in target order (undoes ``scatter``; an
        engine's value that is not a list or tuple counts as one element)."""
        _check_dist(dist)
        ids = self._ids(targets)
        buffers = _serialize(pull_one, [key], {})
        msg_ids = self.client.send_requests(ids, "apply_request", {}, buffers)
        result = AsyncResult(self.client, msg_ids, fname="gather", reducer=_gathered)
        return self._finish(self.client.track(result), block)

    def update(self, ns: dict[str, object]) -> Any:
        """``push(ns)`` (ipyparallel's alias)."""
        return self.push(ns)

    def get(self, key_s: str | Sequence[str]) -> Any:
        """``pull(key_s, block=True)`` (ipyparallel's alias)."""
        return self.pull(key_s, block=True)

    def use_cloudpickle(self) -> Any:
        """Nothing to switch: Loom always pickles with cloudpickle. Runs a no-op on the
        engines so that the result (blocking or an ``AsyncResult``) is ipyparallel's."""
        return self._finish(self._apply(_nothing, (), {}), None)

    def use_pickle(self) -> Any:
        """As :meth:`use_cloudpickle`: cloudpickle pickles all that ``pickle`` does."""
        return self.use_cloudpickle()

    def use_dill(self) -> Any:
        """As :meth:`use_cloudpickle`: cloudpickle covers what code switches to dill for
        (lambdas, closures, interactively defined classes); what it cannot pickle is
        refused before sending, naming the object."""
        return self.use_cloudpickle()

    def __getitem__(self, key: str) -> Any:
        return self.pull(key, block=True)

    def __setitem__(self, key: str, value: object) -> None:
        self.push({key: value}, block=True)

    @contextlib.contextmanager
    def sync_imports(self, local: bool = True, quiet: bool = False) -> Iterator[None]:
        """Imports inside the ``with`` block run here (if ``local``) and on the engines."""
        imported: list[str] = []
        real_import = builtins.__import__

        def recording(
            name: str, globals_: Any = None, locals_: Any = None, fromlist: Any = (), level: int = 0
        ) -> Any:
            if level == 0:  # absolute imports only: relative ones mean nothing remotely
                names = ", ".join(fromlist or ())
                statement = f"from {name} import {names}" if names else f"import {name}"
                if statement not in imported:
                    imported.append(statement)
            if not local:
                return None
            builtins.__import__ = real_import  # what the module imports is not recorded
            try:
                return real_import(name, globals_, locals_, fromlist, level)
            finally:
                builtins.__import__ = recording  # type: ignore[assignment]

        builtins.__import__ = recording  # type: ignore[assignment]
        try:
            yield
        finally:
            builtins.__import__ = real_import
        for statement in imported:
            if not quiet:
                print(f"importing {statement.split(' ', 1)[1]} on engine(s)")
            self.execute(statement, block=True)


class LoadBalancedView(_View):
    """A view whose tasks each run on one engine, chosen when the task can start."""

    _flag_names = (
        "block",
        "retries",
        "timeout",
        "retry_on",
        "after",
        "max_engine_deaths",
        "labels",
        "resources",
    )

    def __init__(self, client: Client, targets: Targets) -> None:
        super().__init__(client, targets)
        #: Re-runs of a failed task (any failure, or only its engine's death: ``retry_on``).
        self.retries = 0
        self.retry_on = "any"
        #: A task whose engines died this many times is poison: it fails, whatever its
        #: retries (``None``: the balancer's default, 3).
        self.max_engine_deaths: int | None = None
        #: Seconds a task may wait for an engine before it fails with ``TaskTimeout``.
        self.timeout: float | None = None
        #: Load-balanced results (or their msg_ids) that must succeed before tasks start.
        self.after: Any = None
        #: Labels a task's engine must carry, every one; resources (name -> amount) it
        #: must have free, held while the task is there (``parallel.scheduler._fit``).
        self.labels: frozenset[str] = frozenset()
        self.resources: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"<LoadBalancedView {self.targets!r}>"

    def set_flags(self, **flags: Any) -> None:
        """Set view flags: ``block``, ``retries``, ``retry_on`` (``"any"``, the default, or
        ``"engine-death"``), ``max_engine_deaths``, ``timeout``, ``after``, ``labels`` (names
        a task's engine must carry) and ``resources`` (``{"gpu": 1, "mem": "16G"}``: what
        it must have free; held while the task is there)."""
        _check_healing_flags(flags)
        super().set_flags(**_traits_flags(flags))

    def _target_set(self) -> frozenset[int] | None:
        if self.targets is None or self.targets == "all":
            return None
        return frozenset(self.client.resolve_targets(self.targets))

    def _apply(
        self, f: Callable[..., object], args: Sequence[object], kwargs: dict[str, Any]
    ) -> AsyncResult:
        if "labels" in kwargs or "resources" in kwargs:
            # Per call, as dask's submit(resources=): these two keywords are the view's,
            # not f's (docs/parallel.md, "Labels and resources").
            kwargs = dict(kwargs)
            call = {name: kwargs.pop(name) for name in ("labels", "resources") if name in kwargs}
            with self.temp_flags(**call):
                return self._apply(f, args, kwargs)
        fname = _name(f)
        if has_references(args, kwargs):  # names looked up on the engine that runs it
            f, args, kwargs = call_with_references, (f, args, kwargs), {}
        buffers = serialize_apply(f, args, kwargs)  # the function's pickle may be kept
        msg_id = self._submit(buffers, self._target_set(), self._after_ids())
        return self.client.track(AsyncResult(self.client, [msg_id], fname=fname, single=True))

    def _submit(
        self, buffers: list[bytes], targets: frozenset[int] | None, after: frozenset[str] | str
    ) -> str:
        balancer = self.client.balancer
        if isinstance(after, str):  # a dependency that already failed: so does this task
            return balancer.reject(RemoteError("TaskDependencyFailed", after))
        return balancer.submit(
            buffers,
            targets,
            retries=self.retries,
            retry_on=self.retry_on,
            timeout=self.timeout,
            after=after,
            max_engine_deaths=self.max_engine_deaths,
            labels=self.labels,
            resources=self.resources,
        )

    def _after_ids(self) -> frozenset[str] | str:
        """The ``after`` flag as task ids still to wait for, or why the task cannot run.

        Results already finished are not waited for: a success is met, a failure fails
        the new task at once (ipyparallel's default ``success_only``)."""
        deps = self.after
        if deps is None:
            return frozenset()
        items = list(deps) if isinstance(deps, list | tuple | set | frozenset) else [deps]
        balancer, ids = self.client.balancer, set[str]()
        for item in items:
            if isinstance(item, AsyncResult) and item.done():
                if item.exception(0) is not None:
                    return f"a task it depends on ({item.msg_ids[0]}) failed"
                continue
            for msg_id in item.msg_ids if isinstance(item, AsyncResult) else [item]:
                if not isinstance(msg_id, str) or not balancer.knows(msg_id):
                    raise ValueError(
                        f"after={msg_id!r}: not a pending load-balanced task of this client;"
                        " pass the AsyncResult of a load-balanced apply or map"
                    )
                ids.add(msg_id)
        return frozenset(ids)

    def _map(
        self,
        f: Callable[..., object],
        sequences: Sequence[Sequence[object]],
        *,
        chunksize: int = 1,
        ordered: bool = True,
        **flags: Any,
    ) -> AsyncResult:
        if flags:  # map(f, seq, resources={"gpu": 1}): view flags for this map only
            with self.temp_flags(**flags):
                return self._map(f, sequences, chunksize=chunksize, ordered=ordered)
        if not sequences:
            raise TypeError("map() needs at least one sequence")
        _check_sequences("map", sequences)
        if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"chunksize must be an int >= 1, not {chunksize!r}")
        length = min(len(seq) for seq in sequences)
        targets, after = self._target_set(), self._after_ids()
        once = _pickled_once(f)
        msg_ids = []
        for lo in range(0, length, chunksize):
            chunks = [list(seq[lo : lo + chunksize]) for seq in sequences]
            buffers = _serialize_chunk(once, chunks)
            msg_ids.append(self._submit(buffers, targets, after))
        result = AsyncResult(
            self.client, msg_ids, fname=_name(f), reducer=_concatenate, ordered=ordered
        )
        return self.client.track(result)

    def imap(
        self,
        f: Callable[..., object],
        *iterables: Iterable[object],
        ordered: bool = True,
        chunksize: int = 1,
        max_outstanding: int | str = "auto",
        return_exceptions: bool = False,
        **flags: Any,
    ) -> Iterator[Any]:
        """Yield ``f``'s results one by one as its tasks finish: in order, or with
        ``ordered=False`` as soon as any is in (a slow element holds nothing up).

        Lazy, as ipyparallel's: ``iterables`` (generators too, endless ones included) are
        read as tasks are sent, at most ``max_outstanding`` tasks of ``chunksize``
        elements at a time (``"auto"``: one per engine of the view; ``0``: everything at
        once, as ``map_async``). Nothing is read or sent before the first result is
        asked for. ``return_exceptions``: a failed task's error is yielded (once for its
        chunk) instead of raised."""
        if not iterables:
            raise TypeError("imap() needs at least one iterable")
        for index, iterable in enumerate(iterables):
            if not isinstance(iterable, Iterable):
                raise TypeError(
                    f"imap() needs iterables, not {type(iterable).__name__} (argument {index + 1})"
                )
        if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"chunksize must be an int >= 1, not {chunksize!r}")
        if max_outstanding == "auto":
            limit = len(self)
        elif isinstance(max_outstanding, int) and not isinstance(max_outstanding, bool):
            limit = max_outstanding
        else:
            limit = -1
        if limit < 0:
            raise ValueError(
                f"max_outstanding must be 'auto' or an int >= 0, not {max_outstanding!r}"
            )
        if limit == 0 and all(
            hasattr(i, "__len__") and hasattr(i, "__getitem__") for i in iterables
        ):
            result = self._map(f, iterables, chunksize=chunksize, ordered=ordered, **flags)  # type: ignore[arg-type]
            return result._iterate(return_exceptions=return_exceptions)
        return self._imap_lazily(f, iterables, ordered, chunksize, limit, return_exceptions, flags)

    def _imap_lazily(
        self,
        f: Callable[..., object],
        iterables: Sequence[Iterable[object]],
        ordered: bool,
        chunksize: int,
        limit: int,
        return_exceptions: bool,
        flags: dict[str, Any],
    ) -> Iterator[Any]:
        """``imap``'s generator: keep ``limit`` tasks (0: no limit) of ``chunksize``
        elements out, reading the iterables only to replace a task that finished."""
        once, fname = _pickled_once(f), _name(f)
        elements = zip(*iterables, strict=False)
        out: deque[AsyncResult] = deque()
        pump = self.client._pump
        exhausted = False
        while True:
            while not exhausted and (not limit or len(out) < limit):
                chunk = list(itertools.islice(elements, chunksize))
                if not chunk:
                    exhausted = True
                    break
                columns = [list(column) for column in zip(*chunk, strict=True)]
                with self.temp_flags(**flags):
                    msg_id = self._submit(
                        _serialize_chunk(once, columns), self._target_set(), self._after_ids()
                    )
                result = AsyncResult(self.client, [msg_id], fname=fname, reducer=_concatenate)
                out.append(self.client.track(result))
            if not out:
                return
            if not ordered:  # whichever is in first
                pump.pump_until(lambda: any(r.done() for r in out), None)
                out.rotate(-next(i for i, r in enumerate(out) if r.done()))
            yield from out.popleft()._iterate(return_exceptions=return_exceptions)


def _check_dist(dist: str) -> None:
    if dist != "b":
        raise ValueError(f"dist must be 'b' (contiguous blocks, the only one), not {dist!r}")


def _check_healing_flags(flags: dict[str, Any]) -> None:
    """A clear ``ValueError`` for a bad ``retries``, ``retry_on`` or ``max_engine_deaths``:
    the scheduler would refuse the task later, far from the call that set the flag."""
    retries = flags.get("retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an int >= 0, not {retries!r}")
    retry_on = flags.get("retry_on", "any")
    if retry_on not in ("any", "engine-death"):
        raise ValueError(f"retry_on must be 'any' or 'engine-death', not {retry_on!r}")
    deaths = flags.get("max_engine_deaths")
    bad_deaths = isinstance(deaths, bool) or not isinstance(deaths, int) or deaths < 1
    if deaths is not None and bad_deaths:
        raise ValueError(f"max_engine_deaths must be None or an int >= 1, not {deaths!r}")


def _traits_flags(flags: dict[str, Any]) -> dict[str, Any]:
    """``flags`` with ``labels`` as a frozenset and ``resources`` as name -> amount (text
    amounts like ``"16G"`` parsed); a one-line ``ValueError`` for a bad one."""
    if "labels" in flags:
        flags = {**flags, "labels": labels_from(flags["labels"])}
    if "resources" in flags:
        flags = {**flags, "resources": resources_from(flags["resources"])}
    return flags


def _block(length: int, parts: int, index: int) -> tuple[int, int]:
    """Bounds of block ``index`` of ``parts`` nearly equal contiguous blocks of ``length``."""
    size, extra = divmod(length, parts)
    lo = index * size + min(index, extra)
    return lo, lo + size + (1 if index < extra else 0)


def _concatenate(values: list[object]) -> list[object]:
    return [item for value in values for item in value]  # type: ignore[attr-defined]


def _is_array(obj: object) -> bool:
    """A numpy array? Without importing numpy: an array exists only if numpy was imported."""
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(obj, numpy.ndarray)


def _gathered(values: list[object]) -> object:
    """``gather``'s join, as ipyparallel's: numpy arrays concatenated into one array; a
    scattered block (a list or tuple) is its elements; any other value (a flattened
    one-element block, a name pushed whole) is one element."""
    if values and all(_is_array(v) for v in values):
        return sys.modules["numpy"].concatenate(values)
    out: list[object] = []
    for value in values:
        if isinstance(value, list | tuple):
            out.extend(value)
        else:
            out.append(value)
    return out
