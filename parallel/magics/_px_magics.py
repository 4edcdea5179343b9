"""The ``%px`` family, whatever the host: ``%px``, ``%%px``, ``%pxresult``, ``%pxconfig``,
``%autopx``.

A :class:`PxMagics` is one set of these magics (one suffix: ``%px0`` is another set) on
one host. The host (Loom's kernel, IPython; see ``_px_loom`` and ``_px_ipython``)
registers its methods under their names, turns :class:`PxUsageError` into its own usage
error, and provides what the magics need of it (:class:`PxHost`): where output goes, the
user namespace, running code locally, and the %autopx hook. The magics are coroutines:
Loom awaits them on its loop, IPython runs them with ``run_blocking`` (its waits pump in
place and never suspend).

Which engines: a set made by ``rc.activate()`` uses that client; the default set
(``%load_ext parallel``) uses the session's :class:`~._px_cluster.ClusterLink` (the
cluster ``%cluster start`` started, else the newest running one).
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ._px_complete import EngineCode, complete_on_engine, locate
from ._px_output import PxOutput, PxRich
from ._px_parse import PxArgs, PxUsageError, Targets, parse_px
from ._px_run import (
    Emit,
    PxSettings,
    Shown,
    Waiter,
    announce,
    finish_px,
    follow_px,
    stream_in_background,
    submit_px,
    wait_blocking,
    wait_on_loop,
    wait_then_loop,
)
from ._px_status import autopx_bundle

if TYPE_CHECKING:
    from ..client._asyncresult import AsyncResult
    from ..client._pool_client import Client
    from ..client._views import DirectView
    from ._px_cluster import ClusterLink

__all__ = ["NO_LAST_RESULT", "PxConfig", "PxHost", "PxMagics", "PxSession"]

NO_LAST_RESULT = "%pxresult shows the last non-blocking %px result; there is none yet"


class PxHost(Protocol):
    """What the magics need of the program they run in."""

    @property
    def blocking(self) -> bool:
        """True when waits must block in place (IPython; Loom's kernel when the caller
        cannot await); False: they await the loop (Loom)."""
        ...

    @property
    def user_ns(self) -> dict[str, Any]: ...

    def emit(self, item: PxOutput) -> None:
        """Show one output (text on its stream, a display, progress)."""
        ...

    def run_local(self, code: str) -> None:
        """Run ``code`` in the user namespace (``%%px --local``)."""
        ...

    def set_autopx(self, magics: PxMagics | None) -> None:
        """Send every following cell through ``magics``' ``%%px`` (None: stop doing so)."""
        ...

    def background(
        self, run: Callable[[Emit], Coroutine[Any, Any, None]]
    ) -> asyncio.Task[None] | None:
        """Start ``run(emit)`` on the running loop, to go on after the cell ends, with an
        ``emit`` whose output belongs to the current cell; None when there is no loop
        (terminal IPython): nothing runs between cells there."""
        ...


#: The options ``%pxconfig`` sets, named as in both :class:`PxArgs` and :class:`PxSettings`.
_SETTINGS = ("targets", "block", "stream", "groupby", "verbose", "signal", "progress_after")


@dataclass(slots=True)
class PxConfig:
    """The defaults ``%pxconfig`` changes; ``targets`` None means the view's targets."""

    targets: Targets | None = None
    block: bool = True
    stream: bool = True
    groupby: str = "engine"
    verbose: bool = False
    signal: int = int(signal.SIGINT)
    progress_after: float = 2.0

    def update(self, args: PxArgs) -> None:
        """Make the options given in ``args`` the new defaults."""
        for name in _SETTINGS:
            value = getattr(args, name)
            if value is not None:
                setattr(self, name, value)

    def resolve(self, args: PxArgs) -> PxSettings:
        """The settings of one run: ``args`` where given, these defaults elsewhere."""
        values = {}
        for name in _SETTINGS:
            given = getattr(args, name)
            values[name] = getattr(self, name) if given is None else given
        return PxSettings(**values)


class PxMagics:
    """One set of ``%px`` magics (``suffix``: ``%px0``...) on a host; see the module doc."""

    def __init__(
        self, host: PxHost, link: ClusterLink, suffix: str = "", view: DirectView | None = None
    ) -> None:
        self.host = host
        self.link = link
        self.suffix = suffix
        #: The view ``rc.activate()`` gave; None: the link's cluster, every engine.
        self.view = view
        self.config = PxConfig()
        #: The last ``%px`` result (what ``%pxresult`` shows).
        self.last_result: AsyncResult | None = None
        self._last_ids: list[int] = []
        #: ``--noblock`` runs streaming in the background: what each showed, and its task,
        #: by the run's first msg_id. Each runs until its run is done, or ``%pxresult``
        #: takes over (only the last run's), or the magics close.
        self._followers: dict[str, tuple[Shown, asyncio.Task[None]]] = {}
        self.autopx_on = False

    @property
    def _wait(self) -> Waiter:
        return wait_blocking if self.host.blocking else wait_then_loop

    def current_view(self) -> DirectView:
        """The view the magics run on (connecting to the newest cluster if none is set).

        Raises :class:`PxUsageError` when no cluster runs.
        """
        if self.view is not None and not _closed(self.view.client):
            return self.view
        self.view = None
        return self.link.client().direct_view("all")

    def connected_view(self) -> DirectView | None:
        """The view, if the magics are connected already (never connects: completion must
        not wait for a cluster)."""
        if self.view is not None and not _closed(self.view.client):
            return self.view
        client = self.link._client
        if client is None or _closed(client):
            return None
        return client.direct_view("all")

    def first_target(self, view: DirectView) -> int | None:
        """The first engine of the targets (``%pxconfig``'s, else the view's); None if none."""
        targets = view.targets if self.config.targets is None else self.config.targets
        try:
            ids = view.client.resolve_targets(targets)
        except (IndexError, TypeError, ValueError):
            return None
        return ids[0] if ids else None

    async def complete(self, found: EngineCode) -> dict[str, Any] | None:
        """Completions for engine-bound code, from the first target's namespace (None: no
        connected cluster, or no answer in time)."""
        view = self.connected_view()
        engine = None if view is None else self.first_target(view)
        if view is None or engine is None:
            return None
        return await complete_on_engine(view, engine, found, self._wait)

    # -- the magics ---------------------------------------------------------------------

    async def px(self, line: str) -> AsyncResult | None:
        """Run one line of code on the engines: ``%px [options] code``.

        Options (the same as ``%%px``'s, before the code): ``-t/--targets``,
        ``--block/--noblock``, ``--stream/--no-stream``, ``--group-outputs=engine|order|type``,
        ``-o/--out NAME``, ``--verbose``, ``--signal-on-interrupt SIG``,
        ``--progress-after S``, ``--setup`` (also record the code as setup: an engine that
        replaces a dead one runs it first). Put ``--`` before code that starts with ``-``.
        Blocking (the default), output shows per engine (``[stdout:0] ...``,
        ``Out[0:3]: 42``) and errors are grouped; ``--noblock`` returns the AsyncResult.
        """
        args = parse_px(line, "px")
        return await self._execute(args, args.code)

    async def px_cell(self, line: str, body: str) -> AsyncResult | None:
        """Run the cell on the engines: ``%%px [options]``.

        Options as ``%px``, plus ``--local``: run the cell here too, after sending it.
        """
        args = parse_px(line, "cell")
        return await self._execute(args, body)

    async def _execute(self, args: PxArgs, code: str) -> AsyncResult | None:
        settings = self.config.resolve(args)
        view = self.current_view()
        result, ids = submit_px(view, settings.targets, code, setup=args.setup)
        self.last_result, self._last_ids = result, ids
        for key, (_, task) in list(self._followers.items()):
            if task.done():  # a finished run's: %pxresult can no longer ask for it
                del self._followers[key]
        if args.save_name:
            self.host.user_ns[args.save_name] = result
        announce(ids, settings, self.host.emit)
        if args.local:
            self.host.run_local(code)
        if not settings.block:
            if settings.stream:
                self._follow(Shown(result, ids))
            return result
        await follow_px(result, ids, settings, self.host.emit, self._wait)
        return None

    def _follow(self, shown: Shown) -> None:
        """Stream a ``--noblock`` run's output as it comes, after this cell ends."""

        async def run(emit: Emit) -> None:
            await stream_in_background(shown, emit, wait_on_loop)

        task = self.host.background(run)
        if task is None or not shown.result.msg_ids:
            return
        key = shown.result.msg_ids[0]
        self._followers[key] = (shown, task)
        task.add_done_callback(lambda _: self._forget_follower(key, task))

    def _forget_follower(self, key: str, task: asyncio.Task[None]) -> None:
        """A follower ended: forget it, unless ``%pxresult`` may still want what it showed."""
        found = self._followers.get(key)
        last = self.last_result
        if found is not None and found[1] is task and (last is None or key not in last.msg_ids):
            del self._followers[key]

    def _stop_following(self, result: AsyncResult) -> Shown | None:
        """Stop the background follower of ``result`` (``%pxresult`` takes over); what it
        showed (None: no follower ran for it)."""
        key = result.msg_ids[0] if result.msg_ids else ""
        found = self._followers.pop(key, None)
        if found is None:
            return None
        shown, task = found
        if not task.done():
            task.cancel()
        return shown

    def close(self) -> None:
        """Stop following ``--noblock`` runs in the background."""
        followers, self._followers = self._followers, {}
        for _, task in followers.values():
            task.cancel()

    async def pxresult(self, line: str = "") -> None:
        """Show the result of the last ``%px``: ``%pxresult [-o NAME] [--group-outputs=...]``.

        Waits for it if it is still running; raises its errors, grouped, as ``%px`` does.
        """
        args = parse_px(line, "result")
        result = self.last_result
        if result is None:
            raise PxUsageError(NO_LAST_RESULT)
        if args.save_name:
            self.host.user_ns[args.save_name] = result
            return
        shown = self._stop_following(result)
        groupby = args.groupby or self.config.groupby
        if shown is None or not shown.streamed:
            await self._wait(result._client, result.done, None)
            finish_px(result, self._last_ids, groupby, self.host.emit)
            return
        # The follower showed streams already: the rest streams here, then the values.
        settings = PxSettings(groupby=groupby, progress_after=-1, signal=self.config.signal)
        await follow_px(result, self._last_ids, settings, self.host.emit, self._wait, shown)

    def pxconfig(self, line: str = "") -> None:
        """Set the defaults of ``%px``: ``%pxconfig [-t T] [--block|--noblock] [--stream|...]``.

        ``-t/--targets``, ``--block/--noblock``, ``--stream/--no-stream``,
        ``--verbose/--no-verbose``, ``--signal-on-interrupt SIG``, ``--progress-after S``,
        ``--group-outputs=engine|order|type``. With no options, shows the defaults.
        """
        args = parse_px(line, "config")
        if args == PxArgs():
            print(self.describe())
            return
        self.config.update(args)

    def describe(self) -> str:
        """The current defaults, one line."""
        c = self.config
        targets = "the view's" if c.targets is None else repr(c.targets)
        try:
            sig = signal.Signals(c.signal).name
        except ValueError:
            sig = str(c.signal)
        return (
            f"%px{self.suffix}: targets={targets} block={c.block} stream={c.stream} "
            f"group-outputs={c.groupby} verbose={c.verbose} signal-on-interrupt={sig} "
            f"progress-after={c.progress_after:g}"
        )

    def autopx(self, line: str = "") -> None:
        """Toggle sending every following cell to the engines (as ``%%px``); ``%autopx``
        again stops it."""
        if line.strip():
            raise PxUsageError(f"%autopx{self.suffix} takes no arguments")
        if self.autopx_on:
            self.host.set_autopx(None)
            self.autopx_on = False
            print(f"%autopx{self.suffix} disabled")
            self.host.emit(PxRich(autopx_bundle(False, self.suffix), {}))
            return
        self.current_view()  # fail now, not on the next cell, if there is no cluster
        self.host.set_autopx(self)
        self.autopx_on = True
        print(f"%autopx{self.suffix} enabled")
        self.host.emit(PxRich(autopx_bundle(True, self.suffix), {}))

    def with_view(self, view: DirectView) -> PxMagics:
        """These magics, now on ``view`` (``rc.activate()`` again), defaults kept."""
        self.view = view
        self.config.targets = None
        return self


def autopx_transform(original: Callable[[str], str], suffix: str) -> Callable[[str], str]:
    """The cell transform ``%autopx`` installs in a host: every cell runs as ``%%px``
    (with the magics' ``suffix``), but a blank one and the ``%autopx`` that turns it off."""
    toggle = re.compile(rf"\s*%autopx{re.escape(suffix)}\b")

    def transform(raw: str) -> str:
        first = next((line for line in raw.splitlines() if line.strip()), "")
        if not first or toggle.match(first):
            return original(raw)
        return original(f"%%px{suffix}\n{raw}")

    return transform


def _closed(client: Client) -> bool:
    return bool(getattr(client, "_closed", False))


class PxSession:
    """Everything ``%px`` keeps for one host: its cluster link and its magic sets by suffix."""

    def __init__(self, host: PxHost) -> None:
        from ._px_cluster import ClusterLink

        self.host = host
        self.link = ClusterLink()
        self.sets: dict[str, PxMagics] = {}

    def magics(self, suffix: str, view: DirectView | None = None) -> tuple[PxMagics, bool]:
        """The set for ``suffix`` (on ``view`` if given), and whether it is new."""
        existing = self.sets.get(suffix)
        if existing is not None:
            return (existing.with_view(view) if view is not None else existing), False
        created = PxMagics(self.host, self.link, suffix, view)
        self.sets[suffix] = created
        return created, True

    async def complete(self, code: str, cursor: int) -> dict[str, Any] | None:
        """A ``complete_reply`` content from an engine when the cursor is in engine-bound
        code (see ``_px_complete``); None: complete locally."""
        autopx = next((s for s, m in self.sets.items() if m.autopx_on), None)
        found = locate(code, cursor, self.sets, autopx)
        if found is None:
            return None
        return await self.sets[found.suffix].complete(found)

    async def cluster(self, line: str) -> None:
        """``%cluster start [-n N] | stop | list``: see ``ClusterLink.cluster_magic``.

        After ``start``, plain ``%px`` runs on the new cluster (even after ``rc.activate()``).
        """
        await self.link.cluster_magic(line, blocking=self.host.blocking)
        default = self.sets.get("")
        if line.split()[:1] == ["start"] and default is not None:
            default.view = None

    def close(self) -> None:
        """Turn %autopx off, forget every set, stop a cluster started here."""
        for magics in self.sets.values():
            magics.close()
            if magics.autopx_on:
                self.host.set_autopx(None)
                magics.autopx_on = False
        self.sets.clear()
        self.link.close()
