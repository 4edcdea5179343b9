"""``ViewExecutor``: a view as a ``concurrent.futures.Executor`` (ipyparallel's).

``submit`` is the view's ``apply_async`` and its futures are the views' results, which
are ``concurrent.futures.Future`` already; ``map`` yields results as the view's ``imap``
does. Code written for ``ThreadPoolExecutor`` or ``ProcessPoolExecutor`` runs on the
engines unchanged: ``with rc.executor() as pool: pool.map(f, xs)``. No thread either:
waiting pumps the client's sockets, as every wait does.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._asyncresult import AsyncResult
    from ._views import _View

__all__ = ["ViewExecutor"]


class ViewExecutor(Executor):
    """A PEP 3148 executor on a view (``view.executor``, ``rc.executor()``)."""

    def __init__(self, view: _View) -> None:
        self.view = view
        self._shut = False
        #: What ``submit`` gave and the caller still holds (``shutdown(cancel_futures=)``).
        self._submitted: weakref.WeakSet[AsyncResult] = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"<ViewExecutor on {self.view!r}>"

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> AsyncResult:
        """``view.apply_async(fn, *args, **kwargs)``: a future of its result."""
        if self._shut:
            raise RuntimeError("cannot submit to a ViewExecutor after shutdown()")
        result: AsyncResult = self.view.apply_async(fn, *args, **kwargs)
        self._submitted.add(result)
        return result

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        """The results of ``fn`` over ``iterables``, in order, each as soon as it is in:
        the view's ``imap`` (on a load-balanced view lazy, one task of ``chunksize``
        elements per engine out at a time). ``timeout`` is not supported (as in
        ipyparallel): it warns and is ignored."""
        if self._shut:
            raise RuntimeError("cannot map on a ViewExecutor after shutdown()")
        if timeout is not None:
            warnings.warn("timeout is not supported by ViewExecutor.map", UserWarning, stacklevel=2)
        return self.view.imap(fn, *iterables, chunksize=chunksize)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new work; with ``wait``, wait for the view's outstanding tasks. The
        engines keep running (they are the cluster's, not the executor's).
        ``cancel_futures``: abort the submitted tasks that have not started (the
        executor's own; other work of the client is left alone)."""
        self._shut = True
        if cancel_futures:
            pending = [r for r in self._submitted if not r.done()]
            if pending:
                self.view.abort(pending)
        if wait:
            self.view.wait()
