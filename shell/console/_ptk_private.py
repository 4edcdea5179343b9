"""Every use of prompt_toolkit's internals, in one place, and what it mirrors.

The console reaches below prompt_toolkit's public API in the places below:
for speed (the key-binding lookup, cursor position reports) and to merge
history that arrives while a prompt is up. Each hook first checks that the
internals it touches are there and otherwise does nothing, so an upgrade that
renames them costs the improvement in the last column, never the console.
``tests/shell/console/test_ptk_private.py`` is the canary: on the installed
prompt_toolkit it asserts that every hook is active. ``pyproject.toml`` pins
``prompt_toolkit>=3.0.40,<3.1`` for them. When the canary fails after an
upgrade, re-read the lines named here, then update the hook and this table.

Written against prompt_toolkit 3.0.53 (paths under ``prompt_toolkit/``):

=========================  ===================================  ===============================
hook (caller)              touches / mirrors                    if it breaks
=========================  ===================================  ===============================
install_focus_cached_      replaces ``KeyProcessor._bindings``  not installed: prompt_toolkit's
bindings                   (key_binding/key_processor.py:94),   own lookup, which walks the
(``_prompt._tune``)        a ``_CombinedRegistry``              whole layout twice per key
                           (application/application.py:325,     (~0.1 ms a key)
                           :1426-1519), whose ``_key_bindings``
                           it reads; reads each merged
                           registry's ``_version`` (key_binding/
                           key_bindings.py:514) on ``on_reset``;
                           reads ``_AndList.filters`` (filters/
                           base.py:92) and the identity of
                           ``vi_mode``/``emacs_mode`` (filters/
                           app.py:221, :363)
is_editing_newest_line     reads ``Buffer._working_lines``      False: the kernel's history is
(``ConsoleUI.              (buffer.py:367; ``reset`` at :305,   searchable from the next prompt
reload_history``)          reloaded by layout/controls.py:734)  instead of the live one
add_older_history          reads ``History._loaded``, extends   nothing added once the file is
(``ConsoleHistory.         ``History._loaded_strings``          loaded: the kernel's entries
add_kernel_entries``)      (history.py:39-65)                   miss this session's Up/Ctrl-R
report_cursor_row          a copy of the CPR handler            (public calls only) if upstream's
(``_keys``, CPR binding)   (key_binding/bindings/cpr.py:18-28)  handler does more, ours does not:
                           returning ``NotImplemented`` (no     the canary checks the names its
                           redraw, key_bindings.py:122-137)     code uses; the toolbar's filter
                           unless the last drawing was made     (shortcuts/prompt.py:600) is
                           before the height was known          checked by a test
Terminal._drain_above_     ``in_terminal`` waits for CPR        (not moved here) a finished
prompt (``_terminal.py``)  replies, then erases the prompt      input line wiped by output that
                           even if Enter finished it            arrives just after Enter
                           (application/run_in_terminal.py:
                           87-97): waits for them first
type-ahead after Enter     keys fed back after                  keys typed while the kernel
(``_keys._decide``)        ``validate_and_handle`` are stored   decides are lost (tested by
                           as type-ahead when the app exits     test_console_keys.py::test_keys_
                           (application/application.py:781)     typed_while_the_kernel_decides…)
install_redraw_guard       wraps the instance's ``_redraw`` and not installed: a cell typed in
(``_prompt._tune``)        ``invalidate`` (application.py:439,  one go (a paste, a script) is
                           :497); reads ``render_counter``,     drawn once more before its
                           ``is_done``, ``renderer.             finished drawing, and often the
                           _last_screen`` (renderer.py:383)     next prompt twice (~1.5 ms each)
install_slim_layout         wraps the instance's ``Renderer.     not installed: every drawing
(``_prompt._tune``)        render`` (renderer.py:591, which     walks the whole layout (floats,
                           reads only ``layout.container``);    five hidden toolbars), ~0.4 ms
                           finds its parts in ``PromptSession.  more per drawing
                           _create_layout`` (shortcuts/prompt.
                           py:550-737) and ``_RPrompt`` (:190)
install_invalidate_events_ wraps ``Application._update_         not installed: every drawing
once (``_prompt._tune``)   invalidate_events`` (application.    walks the layout's controls
                           py:555; its list is emptied at exit, again (~0.15 ms a drawing)
                           :766-768)
=========================  ===================================  ===============================
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prompt_toolkit.auto_suggest import AutoSuggest
from prompt_toolkit.key_binding import KeyBindingsBase

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.application import Application
    from prompt_toolkit.auto_suggest import Suggestion
    from prompt_toolkit.buffer import Buffer
    from prompt_toolkit.document import Document
    from prompt_toolkit.enums import EditingMode
    from prompt_toolkit.filters import Filter
    from prompt_toolkit.history import History
    from prompt_toolkit.key_binding import KeyPressEvent
    from prompt_toolkit.key_binding.key_bindings import Binding, KeysTuple, NotImplementedOrNone
    from prompt_toolkit.layout import Layout
    from prompt_toolkit.layout.containers import Container, Window

__all__ = [
    "FocusCachedBindings",
    "add_older_history",
    "has_focus_cached_bindings",
    "install_content_once_per_drawing",
    "install_focus_cached_bindings",
    "install_invalidate_events_once",
    "install_one_write_when_done",
    "install_parents_once",
    "install_redraw_guard",
    "install_slim_layout",
    "install_suggest_after_burst",
    "is_editing_newest_line",
    "report_cursor_row",
]

#: The class prompt_toolkit's key processor is built with (application.py:325).
_REGISTRY_CLASS = "_CombinedRegistry"


class FocusCachedBindings(KeyBindingsBase):
    """prompt_toolkit's merged key bindings, looked up by the focused window only.

    For every key press prompt_toolkit builds a cache key from the focused
    window *and the set of all controls in the layout*, walking the whole
    layout to find them (twice per key): with ``PromptSession``'s layout that
    is about 0.1 ms per key, 4 ms for a 40-character line typed ahead (or sent
    by a script). A ``PromptSession`` layout is fixed (its parts are shown and
    hidden by filters, never added or removed), so the merged bindings depend
    on the focused window alone; they are computed by prompt_toolkit as
    before, once per window.

    The lookups themselves are kept too. prompt_toolkit's merged registry
    caches them already, but checks on every lookup that no registry it
    merges has changed, a walk of ~20 nested registries (twice per key,
    a quarter of a key press's cost). Which bindings match a key sequence
    changes only when bindings are added or removed (their filters are
    evaluated by the key processor at each press, as before), so the check
    is made once per prompt, when the application resets at its start
    (:meth:`revalidate`): a binding added while a prompt is up takes effect
    at the next prompt. The console adds none after start-up.

    A kept lookup leaves out the bindings of the other editing mode: those whose
    filter is ``vi_mode`` or ``emacs_mode``, or an ``&`` of filters with one of them,
    while the prompt is in the other mode (the mode is part of the lookup's key). The
    key processor evaluates every matching binding's filter at each press, and a
    printable key matched ten bindings in Emacs mode, seven of them vi's.
    """

    def __init__(self, app: Application[Any], registry: Any) -> None:
        self._app = app
        self._registry = registry
        self._by_window: dict[object, KeyBindingsBase] = {}
        self._found: dict[tuple[object, KeysTuple, bool, EditingMode], list[Binding]] = {}
        self._versions: tuple[object, ...] = ()

    def _merged(self) -> KeyBindingsBase:
        window = self._app.layout.current_window
        merged = self._by_window.get(window)
        if merged is None:
            merged = self._by_window[window] = self._registry._key_bindings
        return merged

    def revalidate(self) -> None:
        """Forget the lookups if any registry changed since the last check."""
        versions = tuple(merged._version for merged in self._by_window.values())
        if versions != self._versions:
            self._found.clear()
            self._versions = versions

    def _lookup(self, keys: KeysTuple, prefix: bool) -> list[Binding]:
        app = self._app
        mode = app.editing_mode
        key = (app.layout.current_window, keys, prefix, mode)
        found = self._found.get(key)
        if found is None:
            merged = self._merged()
            if prefix:
                found = merged.get_bindings_starting_with_keys(keys)
            else:
                found = merged.get_bindings_for_keys(keys)
            found = [binding for binding in found if not _off_in(mode, binding.filter)]
            self._found[key] = found
        return found

    def get_bindings_for_keys(self, keys: KeysTuple) -> list[Binding]:
        return self._lookup(keys, False)

    def get_bindings_starting_with_keys(self, keys: KeysTuple) -> list[Binding]:
        return self._lookup(keys, True)

    @property
    def _version(self) -> Any:
        raise NotImplementedError  # as prompt_toolkit's registry: never wrapped again

    @property
    def bindings(self) -> list[Binding]:
        raise NotImplementedError


def _off_in(mode: EditingMode, condition: Filter) -> bool:
    """Whether ``condition`` is false whenever the editing mode is ``mode``: it is
    ``vi_mode`` or ``emacs_mode`` (which test the editing mode alone) for the other mode,
    or an ``&`` with such a part (``_AndList``, prompt_toolkit's ``a & b``)."""
    from prompt_toolkit.enums import EditingMode
    from prompt_toolkit.filters import emacs_mode, vi_mode
    from prompt_toolkit.filters.base import _AndList

    if condition is vi_mode:
        return mode is not EditingMode.VI
    if condition is emacs_mode:
        return mode is not EditingMode.EMACS
    if isinstance(condition, _AndList):
        return any(_off_in(mode, part) for part in condition.filters)
    return False


def install_focus_cached_bindings(app: Application[Any]) -> bool:
    """Make ``app``'s key processor look bindings up by focused window (see
    :class:`FocusCachedBindings`); return whether it was installed.

    Installed only on a fixed layout (a ``PromptSession``'s) whose key processor
    holds the registry this was written against; otherwise nothing changes.
    """
    processor = app.key_processor
    registry = getattr(processor, "_bindings", None)
    if type(registry).__name__ != _REGISTRY_CLASS or not hasattr(registry, "_key_bindings"):
        return False
    cached = FocusCachedBindings(app, registry)
    processor._bindings = cached
    app.on_reset += lambda _: cached.revalidate()  # at the start of every prompt
    return True


def has_focus_cached_bindings(app: Application[Any]) -> bool:
    """Whether :func:`install_focus_cached_bindings` is in effect on ``app``."""
    return isinstance(getattr(app.key_processor, "_bindings", None), FocusCachedBindings)


class RedrawGuard:
    """Skips redraws that would draw what is on screen already.

    ``invalidate()`` schedules one redraw and swallows further calls until it runs, and
    it runs late on purpose: prompt_toolkit postpones it while the loop has other work
    (up to ``max_render_postpone_time``). Meanwhile the prompt may be drawn anyway: as
    finished, when Enter came in the same read as the text (a paste, a script, a fast
    typist), or as the next prompt's first drawing. The postponed redraw then draws the
    typed text once more just before the finished drawing, or the fresh prompt a second
    time, each a full layout pass (~1.5 ms). So every ``invalidate()`` call is counted,
    swallowed ones too, and a redraw is skipped when nothing was invalidated since the
    last drawing began, or the prompt is finishing (its finished drawing follows). A
    drawing after the renderer was reset (a prompt's first, after output above it,
    after a resize) always happens.
    """

    def __init__(self, app: Application[Any]) -> None:
        self._app = app
        self._redraw = app._redraw
        self._invalidate = app.invalidate
        self.invalidations = 0
        self._drawn_at = -1  # invalidations counted when the last drawing began
        self.skipped = 0

    def invalidate(self) -> None:
        self.invalidations += 1
        self._invalidate()

    def redraw(self, render_as_done: bool = False) -> None:
        app = self._app
        drawn = app.renderer._last_screen is not None  # None: reset, the screen is unknown
        if not render_as_done and drawn and (app.is_done or self._drawn_at == self.invalidations):
            self.skipped += 1
            return
        self._drawn_at = self.invalidations
        self._redraw(render_as_done)


def install_redraw_guard(app: Application[Any]) -> RedrawGuard | None:
    """Skip ``app``'s redundant redraws (see :class:`RedrawGuard`); the guard, or None
    when ``app`` lacks what it wraps and reads."""
    if not all(hasattr(app, name) for name in ("_redraw", "invalidate", "is_done")):
        return None
    if not hasattr(app.renderer, "_last_screen"):
        return None
    if isinstance(getattr(app, "redraw_guard", None), RedrawGuard):
        return None
    guard = RedrawGuard(app)
    app._redraw = guard.redraw  # type: ignore[method-assign]
    app.invalidate = guard.invalidate  # type: ignore[method-assign]
    app.redraw_guard = guard  # type: ignore[attr-defined]
    return guard


class SlimLayout:
    """Draws ``PromptSession``'s layout without the parts that show nothing.

    The layout is an ``HSplit`` of the input (inside a ``ConditionalContainer`` for the
    frame and a ``FloatContainer`` for the completion menus and the right prompt) and
    five toolbars (validation, system, ``arg``, search, bottom). At a plain prompt only
    the input and the bottom toolbar show anything, yet every drawing asks each part its
    height twice and evaluates its filters, and draws the three floats: about a third of
    a drawing. When nothing else can show (:meth:`is_plain`), the renderer is given a
    layout of the same input window, prompt line and bottom toolbar in the same nesting,
    which writes the same screen; otherwise (a completion menu, a search, a numeric
    argument, a validation error, a frame, a right prompt) it is given the full one.
    Only ``renderer.render`` sees the slim layout: focus, key bindings and
    ``app.layout`` stay the session's.
    """

    def __init__(
        self,
        app: Application[Any],
        session: PromptSession[Any],
        slim: Container,
        buffer_window: Window,
        frame: Filter,
    ) -> None:
        from prompt_toolkit.layout import Layout

        self._app = app
        self._session = session
        self._buffer_window = buffer_window
        self._frame = frame
        # Layout() focuses the window and records parents: its own, not the app's.
        self.layout = Layout(slim, focused_element=buffer_window)
        self.slim_drawings = 0

    def is_plain(self) -> bool:
        """Whether the full layout would show only the input and the bottom toolbar."""
        app = self._app
        buffer = self._session.default_buffer
        return (
            app.layout.current_window is self._buffer_window
            and buffer.complete_state is None
            and buffer.validation_error is None
            and app.key_processor.arg is None
            and not self._session.rprompt
            and not self._frame()
        )


def install_slim_layout(session: PromptSession[Any]) -> SlimLayout | None:
    """Draw ``session``'s prompt with :class:`SlimLayout` when nothing but the input and
    the bottom toolbar shows; the hook, or None when the layout is not the one it was
    written against (prompt_toolkit's ``PromptSession._create_layout``)."""
    from prompt_toolkit.filters import Filter
    from prompt_toolkit.layout.containers import (
        ConditionalContainer,
        FloatContainer,
        HSplit,
        Window,
    )
    from prompt_toolkit.layout.controls import BufferControl

    app = session.app
    full = app.layout.container
    renderer = app.renderer
    if not isinstance(full, HSplit) or len(full.children) != 6:
        return None
    framed, bottom = full.children[0], full.children[-1]
    if not isinstance(framed, ConditionalContainer) or not isinstance(
        framed.alternative_content, FloatContainer
    ):
        return None
    inner = framed.alternative_content.content
    if not isinstance(inner, HSplit) or len(inner.children) != 3:
        return None
    above, shown = inner.children[0], inner.children[1]
    window = getattr(shown, "content", None)
    if not isinstance(shown, ConditionalContainer) or not isinstance(window, Window):
        return None
    control = window.content
    if not isinstance(control, BufferControl) or control.buffer is not session.default_buffer:
        return None
    toolbar = getattr(bottom, "content", None)
    if not isinstance(bottom, ConditionalContainer) or not isinstance(toolbar, Window):
        return None
    if toolbar.style != "class:bottom-toolbar" or not isinstance(framed.filter, Filter):
        return None
    if not callable(getattr(renderer, "render", None)):
        return None
    # The same nesting (an HSplit of the input's HSplit and the toolbar): the wrappers
    # left out pass heights through unchanged, so the rows are divided alike.
    slim = HSplit([HSplit([above, window]), bottom])
    hook = SlimLayout(app, session, slim, window, framed.filter)
    render = renderer.render

    def render_slim(app: Application[Any], layout: Layout, is_done: bool = False) -> None:
        if layout.container is full and hook.is_plain():
            hook.slim_drawings += 1
            layout = hook.layout
        render(app, layout, is_done)

    renderer.render = render_slim  # type: ignore[method-assign]
    app.slim_layout = hook  # type: ignore[attr-defined]
    return hook


class SuggestAfterBurst(AutoSuggest):
    """The prompt's auto-suggestion, looked for once per burst of keys, not per key.

    ``Buffer.insert_text`` starts a task looking for a suggestion after every inserted
    character if its ``auto_suggest`` is true. Keys that arrive together (a paste
    without bracketed paste, a script, pexpect, a fast typist) are processed in one go,
    so each started a task whose suggestion the next key made stale: eight tasks for
    ``%px a=1`` typed with Enter. This wrapper is false while more keys of the same read
    wait in the key processor's queue, so only the last character starts one (and none
    when Enter follows); the suggestion shown after the burst is the same.
    """

    def __init__(self, app: Application[Any], inner: AutoSuggest) -> None:
        self._processor = app.key_processor
        self._inner = inner

    def __bool__(self) -> bool:
        return not self._processor.input_queue  # a new deque at every reset: look it up

    def get_suggestion(self, buffer: Buffer, document: Document) -> Suggestion | None:
        return self._inner.get_suggestion(buffer, document)

    async def get_suggestion_async(self, buffer: Buffer, document: Document) -> Suggestion | None:
        return await self._inner.get_suggestion_async(buffer, document)


def install_suggest_after_burst(buffer: Buffer, app: Application[Any]) -> bool:
    """Wrap ``buffer``'s auto-suggestion in :class:`SuggestAfterBurst`; whether it was."""
    from collections import deque as _deque

    inner = buffer.auto_suggest
    queue = getattr(app.key_processor, "input_queue", None)
    if inner is None or isinstance(inner, SuggestAfterBurst) or not isinstance(queue, _deque):
        return False
    buffer.auto_suggest = SuggestAfterBurst(app, inner)
    return True


def install_content_once_per_drawing(session: PromptSession[Any]) -> bool:
    """Make the input's content once per drawing for each size asked, not four times.

    A drawing asks the input window's ``BufferControl`` for its content (the document
    through the lexer and the input processors) once per height computation, three
    times with the same arguments, and once more to draw it. Nothing a drawing reads
    changes while it draws, so within one ``Renderer.render`` the content made for given
    arguments is kept and given again; outside a drawing (key bindings, mouse) every call
    makes it afresh, as before. Installed only where the control and renderer are found.
    """
    from prompt_toolkit.layout.controls import BufferControl, UIContent

    app = session.app
    window = app.layout.current_window
    control = getattr(window, "content", None)
    renderer = app.renderer
    if not isinstance(control, BufferControl) or control.buffer is not session.default_buffer:
        return False
    if not callable(getattr(renderer, "render", None)):
        return False
    create = control.create_content
    render = renderer.render
    kept: dict[tuple[int, int, bool], UIContent] = {}
    drawing = False

    def create_content(width: int, height: int, preview_search: bool = False) -> UIContent:
        if not drawing:
            return create(width, height, preview_search)
        key = (width, height, preview_search)
        content = kept.get(key)
        if content is None:
            content = kept[key] = create(width, height, preview_search)
        return content

    def render_keeping_content(
        app: Application[Any], layout: Layout, is_done: bool = False
    ) -> None:
        nonlocal drawing
        drawing = True
        try:
            render(app, layout, is_done)
        finally:
            drawing = False
            kept.clear()

    control.create_content = create_content  # type: ignore[method-assign]
    renderer.render = render_keeping_content  # type: ignore[method-assign]
    return True


def install_one_write_when_done(app: Application[Any]) -> bool:
    """Write a prompt's finished drawing and what ends the prompt in one ``write``.

    ``Renderer.render(is_done=True)`` flushes the drawing, then resets the renderer,
    which writes the end of bracketed paste and flushes again: two writes to the
    terminal, back to back, for every cell. The first flush is held until the reset is
    done. Installed only where the renderer and the output's ``flush`` are found.
    """
    renderer, output = app.renderer, app.output
    if not callable(getattr(renderer, "render", None)) or not callable(
        getattr(output, "flush", None)
    ):
        return False
    render = renderer.render

    def render_in_one_write(app: Application[Any], layout: Layout, is_done: bool = False) -> None:
        if not is_done:
            render(app, layout, is_done)
            return
        flush = output.flush
        output.flush = _no_flush  # type: ignore[method-assign]
        try:
            render(app, layout, is_done)
        finally:
            output.flush = flush  # type: ignore[method-assign]
            flush()

    renderer.render = render_in_one_write  # type: ignore[method-assign]
    return True


def _no_flush() -> None:
    pass


def install_invalidate_events_once(app: Application[Any]) -> bool:
    """Walk ``app``'s layout for its invalidate events once, not after every drawing.

    After each drawing prompt_toolkit detaches its handler from every control's
    invalidate events, walks the layout for them again and reattaches it; when a prompt
    ends it detaches them all. The layout is fixed (its parts are shown and hidden, never
    replaced), so the walk finds the same events every time: they are gathered once, at
    the first drawing of the first prompt, and attached again at each later prompt's
    first drawing. Installed only where the list and the method are found.
    """
    update = getattr(app, "_update_invalidate_events", None)
    handler = getattr(app, "_invalidate_handler", None)
    if not callable(update) or not callable(handler):
        return False
    if not isinstance(getattr(app, "_invalidate_events", None), list):
        return False
    gathered: list[Any] = []

    def update_once() -> None:
        if app._invalidate_events:  # attached since this prompt began
            return
        if not gathered:
            update()
            gathered.extend(app._invalidate_events)
            return
        for event in gathered:
            event += handler
        app._invalidate_events = list(gathered)

    app._update_invalidate_events = update_once  # type: ignore[method-assign]
    return True


def install_parents_once(app: Application[Any]) -> bool:
    """Record the layout's child -> parent map once, not after every drawing.

    prompt_toolkit walks the whole layout after each drawing to rebuild the map (for
    ``Layout.get_parent``). Only a ``DynamicContainer`` can make a walk find other
    children; ``PromptSession``'s layout has one, in the frame around the input, which
    shows the frame's body, the input's container (``Frame.body``, never reassigned by
    the session), also reached without it. Installed only when every
    ``DynamicContainer`` shows a part reached that way.
    """
    from prompt_toolkit.layout.containers import DynamicContainer

    layout = app.layout
    update = getattr(layout, "update_parents_relations", None)
    if not callable(update) or not isinstance(getattr(layout, "_child_to_parent", None), dict):
        return False
    dynamic: list[DynamicContainer] = []
    fixed = _fixed_parts(layout.container, dynamic)
    if any(part.get_container() not in fixed for part in dynamic):
        return False

    def update_once() -> None:
        if not layout._child_to_parent:
            update()

    layout.update_parents_relations = update_once  # type: ignore[method-assign]
    return True


def _fixed_parts(root: Container, dynamic: list[Any]) -> set[Container]:
    """The containers under ``root`` reached without going through a ``DynamicContainer``
    (those are added to ``dynamic``)."""
    from prompt_toolkit.layout.containers import DynamicContainer

    found: set[Container] = set()
    todo = [root]
    while todo:
        part = todo.pop()
        if isinstance(part, DynamicContainer):
            dynamic.append(part)
            continue
        found.add(part)
        todo += part.get_children()
    return found


def is_editing_newest_line(buffer: Buffer) -> bool:
    """Whether ``buffer`` shows the input being typed, not an older history entry.

    False too when the buffer's working lines cannot be read: callers then
    leave the buffer alone.
    """
    lines = getattr(buffer, "_working_lines", None)
    return isinstance(lines, deque) and buffer.working_index == len(lines) - 1


def add_older_history(history: History, older: Iterable[str]) -> None:
    """Put ``older`` (newest first) behind the entries ``history`` has loaded.

    Nothing happens before ``history`` has loaded (its ``load_history_strings``
    must yield them then), nor when its loaded list cannot be found.
    """
    loaded = getattr(history, "_loaded_strings", None)
    if getattr(history, "_loaded", False) is True and isinstance(loaded, list):
        loaded.extend(older)


def report_cursor_row(event: KeyPressEvent) -> NotImplementedOrNone:
    """prompt_toolkit's handler of a cursor position report (``ESC [ row ; col R``).

    The row tells the renderer how many rows lie below the prompt, which the
    layout may then fill (the toolbar goes to the bottom of the screen). If the
    last drawing already knew the height and filled those rows, a redraw would
    draw the same screen: returning ``NotImplemented`` tells prompt_toolkit not
    to invalidate. A drawing made before the first report of a prompt left the
    toolbar out (``renderer_height_is_known`` was false), so it is always redrawn.
    """
    row = int(event.data[2:-1].split(";")[0])
    renderer = event.app.renderer
    screen = renderer.last_rendered_screen
    # Drawn before any report, the screen left out what needs the height (the
    # bottom toolbar): redraw then, even on the last row, where one row is below.
    drawn_knowing_height = renderer.height_is_known
    renderer.report_absolute_cursor_row(row)
    rows_below = event.app.output.get_size().rows - row + 1
    if drawn_knowing_height and screen is not None and rows_below <= screen.height:
        return NotImplemented
    return None
