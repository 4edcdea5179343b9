"""Canary: every hook into prompt_toolkit's internals is active on the installed version.

``shell/console/_ptk_private.py`` degrades silently when prompt_toolkit renames
what it touches; these tests make that loud. A failure after an upgrade means:
re-read the source lines the module's table names, then fix the hook or the
table. Real ``PromptSession``s run with ``create_pipe_input()`` + ``DummyOutput()``
(prompt_toolkit's own tests/test_cli.py pattern); no kernel is involved.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import signal
from collections import deque
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prompt_toolkit import PromptSession
from prompt_toolkit.application import Application, in_terminal
from prompt_toolkit.application.application import _CombinedRegistry
from prompt_toolkit.application.current import set_app
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory, Suggestion
from prompt_toolkit.buffer import CompletionState
from prompt_toolkit.completion import Completion
from prompt_toolkit.data_structures import Size
from prompt_toolkit.document import Document
from prompt_toolkit.enums import EditingMode
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.key_binding.bindings.cpr import load_cpr_bindings
from prompt_toolkit.key_binding.key_bindings import Binding
from prompt_toolkit.keys import Keys
from prompt_toolkit.output import DummyOutput
from prompt_toolkit.output.vt100 import Vt100_Output
from prompt_toolkit.renderer import Renderer

from shell.console._input_history import ConsoleHistory
from shell.console._link import KernelLink
from shell.console._loop import ConsoleLoop
from shell.console._prompt import ConsoleUI
from shell.console._ptk_private import (
    FocusCachedBindings,
    RedrawGuard,
    SlimLayout,
    SuggestAfterBurst,
    has_focus_cached_bindings,
    install_focus_cached_bindings,
    install_parents_once,
    install_redraw_guard,
    is_editing_newest_line,
    report_cursor_row,
)

UP, DOWN, F11, F12 = "\x1b[A", "\x1b[B", "\x1b[23~", "\x1b[24~"
#: What prompt_toolkit's CPR handler (key_binding/bindings/cpr.py) uses; report_cursor_row
#: copies it, so anything new there must be looked at.
CPR_HANDLER_NAMES = ("map", "int", "data", "split", "app", "renderer", "report_absolute_cursor_row")


def console_ui(keys: PipeInput, history: ConsoleHistory | None = None) -> ConsoleUI:
    """The console's prompt as ``loom`` builds it, on a link with no kernel (call in a loop)."""
    link = KernelLink(None, None, "canary")
    return ConsoleUI(link, history=history, input=keys, output=DummyOutput())


async def until(task: asyncio.Task[Any], predicate: Any, timeout: float = 10.0) -> None:
    """Wait for ``predicate()`` while the prompt ``task`` runs (re-checked as the loop turns)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            assert not task.done(), task
            await asyncio.sleep(0.005)


# -- the focus-cached key bindings ---------------------------------------------------------


def test_the_key_processor_holds_the_registry_the_hook_replaces() -> None:
    with create_pipe_input() as keys:
        app = PromptSession[str](input=keys, output=DummyOutput()).app
        registry = app.key_processor._bindings
        assert type(registry) is _CombinedRegistry
        assert isinstance(inspect.getattr_static(_CombinedRegistry, "_key_bindings"), property)
        assert install_focus_cached_bindings(app)
        assert isinstance(app.key_processor._bindings, FocusCachedBindings)
        assert not install_focus_cached_bindings(app)  # never wrapped twice


def test_the_console_prompt_looks_bindings_up_by_focus() -> None:
    async def check() -> None:  # a KernelLink is made on a running loop
        with create_pipe_input() as keys:
            app = console_ui(keys).session.app
            assert has_focus_cached_bindings(app)
            # The cached registry still merges the console's bindings over the defaults.
            lookup = app.key_processor._bindings
            assert lookup.get_bindings_for_keys((Keys.Enter,))[-1].handler.__name__ == "_enter"
            cpr = lookup.get_bindings_for_keys((Keys.CPRResponse,))
            assert cpr[-1].handler is report_cursor_row  # the console's handler wins

    asyncio.run(check())


def test_typing_goes_through_the_cached_bindings() -> None:
    async def typed() -> str:
        with create_pipe_input() as keys:
            session = PromptSession[str](input=keys, output=DummyOutput())
            assert install_focus_cached_bindings(session.app)
            keys.send_text("abc\x01x\r")  # Ctrl-A: to the start of the line
            return await session.prompt_async()

    assert asyncio.run(typed()) == "xabc"


def test_kept_lookups_leave_out_the_other_editing_modes_bindings() -> None:
    """A printable key matched ten bindings in Emacs mode, seven of them vi's, whose
    filters the key processor evaluated at every press; left out, they change nothing:
    each was false in that mode."""

    async def check() -> None:
        with create_pipe_input() as keys:
            app = console_ui(keys).session.app
            lookup = app.key_processor._bindings
            assert isinstance(lookup, FocusCachedBindings)
            every = lookup._merged().get_bindings_for_keys(("p",))
            emacs = lookup.get_bindings_for_keys(("p",))
            assert len(emacs) <= len(every) - 5
            assert [b for b in every if b in emacs] == emacs  # the same order
            with set_app(app):
                assert not any(b.filter() for b in every if b not in emacs)
                app.editing_mode = EditingMode.VI
                vi = lookup.get_bindings_for_keys(("p",))
                assert not any(b.filter() for b in every if b not in vi)
            assert "_paste" in [b.handler.__name__ for b in vi]  # vi's p, in vi mode
            assert "_paste" not in [b.handler.__name__ for b in emacs]

    asyncio.run(check())


def test_typing_in_vi_mode_goes_through_the_kept_lookups() -> None:
    async def typed() -> str:
        with create_pipe_input() as keys:
            session = PromptSession[str](input=keys, output=DummyOutput(), vi_mode=True)
            assert install_focus_cached_bindings(session.app)
            keys.send_text("abc\x1b0ix\r")  # Esc, 0: to the start; i: insert
            return await session.prompt_async()

    assert asyncio.run(typed()) == "xabc"


# -- the redraw guard -----------------------------------------------------------------------


def _count_drawings(app: Application[Any]) -> list[bool]:
    """Record ``is_done`` of every drawing ``app``'s renderer makes."""
    drawn: list[bool] = []
    render = app.renderer.render

    def counted(app_: Any, layout: Any, is_done: bool = False) -> None:
        drawn.append(is_done)
        render(app_, layout, is_done)

    app.renderer.render = counted  # type: ignore[method-assign]
    return drawn


class _PythonLink(KernelLink):
    """A link with no kernel whose language is Python: Enter runs a complete line at once
    (as at a Python kernel), without the asynchronous is_complete decision, during which
    a drawing of the typed text is right."""

    @property
    def language(self) -> str:
        return "python"


def test_cells_typed_in_one_go_are_drawn_once_then_finished() -> None:
    """Text and Enter in one read: the prompt is drawn, then drawn finished, never more
    (without the guard the redraw invalidate() had postponed drew the text once more, or
    the next prompt twice: 1.6-1.7 drawings per cell instead of 1)."""

    async def cells() -> list[bool]:
        with create_pipe_input() as keys:
            link = _PythonLink(None, None, "canary")
            ui = ConsoleUI(link, input=keys, output=DummyOutput())
            drawn = _count_drawings(ui.session.app)
            for number in range(20):
                keys.send_text(f"x = {number}\r")
                assert await ui.read_cell(number) == f"x = {number}"
            return drawn

    assert asyncio.run(cells()) == [False, True] * 20


def test_the_guard_skips_only_redraws_of_what_is_on_screen() -> None:
    async def check() -> None:
        with create_pipe_input() as keys:
            ui = console_ui(keys)
            app = ui.session.app
            guard = app.redraw_guard  # type: ignore[attr-defined]
            assert isinstance(guard, RedrawGuard)
            assert install_redraw_guard(app) is None  # never wrapped twice
            drawn = _count_drawings(app)
            task = asyncio.ensure_future(ui.read_cell(1))
            await until(task, lambda: drawn == [False])  # a prompt's first drawing
            app._redraw()  # nothing invalidated since: skipped
            assert drawn == [False]
            ui.invalidate()  # something changed: drawn again once the loop is free
            await until(task, lambda: drawn == [False, False])
            app.renderer.reset()  # the screen is unknown (output above it): drawn
            app._redraw()
            assert drawn == [False] * 3
            app.invalidate()
            app.exit(result="")
            app._redraw()  # finishing: the finished drawing follows instead
            await task
            assert drawn == [False] * 3 + [True]
            assert guard.skipped >= 2

    asyncio.run(check())


# -- the slim layout and the invalidate events -------------------------------------------


def _drawn(ui: ConsoleUI, out: io.StringIO, *, slim: bool, done: bool, rows_below: int) -> str:
    """What one drawing of ``ui``'s prompt writes, from a reset renderer, through the
    slim-layout hook (``slim``) or prompt_toolkit's own ``Renderer.render``."""
    app = ui.session.app
    renderer = app.renderer
    renderer.reset()
    if rows_below:  # as a cursor position report says: the toolbar can be drawn
        renderer.report_absolute_cursor_row(ROWS - rows_below + 1)
    out.seek(0)
    out.truncate()
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    if done:
        future.set_result("")
    app.future = future
    with set_app(app):
        if slim:
            renderer.render(app, app.layout, done)
        else:
            Renderer.render(renderer, app, app.layout, done)
    app.future = None
    return out.getvalue()


ROWS, COLUMNS = 40, 120


class _BusyLink(_PythonLink):
    @property
    def state(self) -> Any:
        return "busy"


#: Prompt states: (text, cursor from the end, what the console sets up). Each is drawn
#: through both layouts, as typed and as finished, without and with the toolbar.
PLAIN_STATES: list[tuple[str, int, str]] = [
    ("", 0, ""),
    ("%px a=1", 0, ""),
    ("%px a=1", 3, ""),
    ("pri", 0, "suggest"),  # the auto-suggestion after the cursor
    ("for i in range(3):\n    print(i)\n", 5, ""),
    ("x = '" + "y" * 150 + "'", 0, ""),  # wraps at 120 columns
    ("def f():\n    return 1", 0, "select"),
    ("a = 1", 0, "px"),  # %autopx's marker before the prompt
    ("a = 1", 0, "vi"),  # vi mode: [ins] before the prompt
    ("a = 1", 0, "busy"),  # the toolbar's state in colour
]


@pytest.mark.parametrize(("text", "back", "setup"), PLAIN_STATES)
def test_the_slim_layout_draws_what_the_full_one_draws(text: str, back: int, setup: str) -> None:
    """At a plain prompt the slim layout writes byte for byte what prompt_toolkit's full
    layout writes, as typed and as finished, with and without the bottom toolbar."""

    async def check() -> None:
        out = io.StringIO()
        output = Vt100_Output(out, lambda: Size(ROWS, COLUMNS), term="xterm-256color")
        with create_pipe_input() as keys:
            link = (_BusyLink if setup == "busy" else _PythonLink)(None, None, "canary")
            ui = ConsoleUI(link, input=keys, output=output, vi_mode=setup == "vi")
            ui.load_lexer()  # highlighted, as at a Python kernel
            if setup == "px":
                ui.prompt_marker = lambda: "[px] "
            hook = ui.session.app.slim_layout  # type: ignore[attr-defined]
            assert isinstance(hook, SlimLayout)
            buffer = ui.session.default_buffer
            buffer.document = Document(text, len(text) - back)
            if setup == "suggest":
                buffer.suggestion = Suggestion("nt(1)")
            if setup == "select":
                buffer.cursor_position = 4
                buffer.start_selection()
                buffer.cursor_position = 14
            ui.session.message = ui._message  # as read_cell passes it
            assert hook.is_plain()
            _drawn(ui, out, slim=False, done=False, rows_below=0)  # once-only modes set
            hook.slim_drawings = 0
            for done in (False, True):
                for rows_below in (0, 1, 12):
                    full = _drawn(ui, out, slim=False, done=done, rows_below=rows_below)
                    slim = _drawn(ui, out, slim=True, done=done, rows_below=rows_below)
                    assert slim == full, (done, rows_below)
                    assert "In [" in full
            assert hook.slim_drawings == 6

    asyncio.run(check())


def test_a_drawing_makes_the_inputs_content_once_per_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """prompt_toolkit made it four times per drawing (three for heights, one to draw);
    outside a drawing it is made afresh at every call."""
    from prompt_toolkit.layout.controls import BufferControl

    made: list[tuple[int, int]] = []
    create = BufferControl.create_content

    def counted(self: BufferControl, width: int, height: int, preview: bool = False) -> Any:
        made.append((width, height))
        return create(self, width, height, preview)

    monkeypatch.setattr(BufferControl, "create_content", counted)

    async def check() -> None:
        out = io.StringIO()
        output = Vt100_Output(out, lambda: Size(ROWS, COLUMNS), term="xterm-256color")
        with create_pipe_input() as keys:
            ui = ConsoleUI(_PythonLink(None, None, "canary"), input=keys, output=output)
            ui.session.message = ui._message
            ui.session.default_buffer.document = Document("%px a=1", 7)
            _drawn(ui, out, slim=True, done=False, rows_below=12)
            assert sorted(set(made)) == sorted(made)  # each size once
            assert len(made) == 2
            control = ui.session.app.layout.current_window.content
            control.create_content(COLUMNS, 1)
            control.create_content(COLUMNS, 1)
            assert len(made) == 4

    asyncio.run(check())


def test_a_completion_menu_or_a_search_is_drawn_with_the_full_layout() -> None:
    async def check() -> None:
        out = io.StringIO()
        output = Vt100_Output(out, lambda: Size(ROWS, COLUMNS), term="xterm-256color")
        with create_pipe_input() as keys:
            ui = ConsoleUI(_PythonLink(None, None, "canary"), input=keys, output=output)
            app = ui.session.app
            hook = app.slim_layout  # type: ignore[attr-defined]
            buffer = ui.session.default_buffer
            buffer.document = Document("pri", 3)
            buffer.complete_state = CompletionState(
                buffer.document, [Completion("print", -3), Completion("property", -3)]
            )
            assert not hook.is_plain()
            _drawn(ui, out, slim=False, done=False, rows_below=0)  # once-only modes set
            drawn = _drawn(ui, out, slim=True, done=False, rows_below=12)
            assert "property" in drawn  # the menu
            assert drawn == _drawn(ui, out, slim=False, done=False, rows_below=12)
            buffer.complete_state = None
            assert hook.is_plain()
            app.key_processor.arg = "3"  # Esc 3: the arg toolbar shows it
            assert not hook.is_plain()
            app.key_processor.arg = None
            app.layout.focus(ui.session.search_buffer)  # Ctrl-R: the search toolbar
            assert not hook.is_plain()
            assert hook.slim_drawings == 0

    asyncio.run(check())


def test_the_layout_is_walked_for_events_and_parents_at_the_first_prompt_only() -> None:
    """prompt_toolkit walks the layout for every control's invalidate events and for the
    parents' map after each drawing; the console's layout is fixed, so the walks are made
    once, and the events are attached at each prompt and still redraw it."""

    async def check() -> None:
        with create_pipe_input() as keys:
            ui = ConsoleUI(_PythonLink(None, None, "canary"), input=keys, output=DummyOutput())
            app = ui.session.app
            walks: list[str] = []
            find = app.layout.find_all_controls

            def counted() -> Any:
                walks.append("controls")
                return find()

            app.layout.find_all_controls = counted  # type: ignore[method-assign]
            drawn = _count_drawings(app)
            task = asyncio.ensure_future(ui.read_cell(1))
            await until(task, lambda: len(drawn) == 1)
            events = list(app._invalidate_events)
            parents = app.layout._child_to_parent
            assert events
            assert parents
            assert walks == ["controls"]
            for char in "abc":
                before = len(drawn)
                keys.send_text(char)
                await until(task, lambda: len(drawn) > before)  # noqa: B023 (awaited here)
            # An invalidate event still redraws: a suggestion set on the buffer.
            count = len(drawn)
            ui.session.default_buffer.suggestion = Suggestion("d")
            ui.session.default_buffer.on_suggestion_set.fire()
            await until(task, lambda: len(drawn) > count)
            keys.send_text("\r")
            assert await task == "abc"
            assert app._invalidate_events == []  # detached when the prompt ended
            walked = len(walks)  # the first key looked the focused window's bindings up
            task = asyncio.ensure_future(ui.read_cell(2))
            await until(task, lambda: app.is_running and len(drawn) > count + 2)
            assert app._invalidate_events == events  # attached again, without a walk
            assert len(walks) == walked
            assert app.layout._child_to_parent is parents
            assert app.layout.get_parent(app.layout.current_window) is not None
            ui.session.default_buffer.suggestion = Suggestion("x")
            ui.session.default_buffer.on_suggestion_set.fire()
            await until(task, lambda: len(drawn) > count + 3)
            keys.send_text("\r")
            await task

    asyncio.run(check())


def test_a_layout_that_can_change_keeps_prompt_toolkits_walks() -> None:
    """A ``DynamicContainer`` showing something new makes the parents' map change."""
    from prompt_toolkit.layout import DynamicContainer, HSplit, Layout, Window

    with create_pipe_input() as keys:
        app = Application[None](
            layout=Layout(HSplit([DynamicContainer(lambda: Window())])),
            input=keys,
            output=DummyOutput(),
        )
        assert not install_parents_once(app)
        session = PromptSession[str](input=keys, output=DummyOutput())
        assert install_parents_once(session.app)


class _CountedSuggest(AutoSuggestFromHistory):
    def __init__(self) -> None:
        self.asked: list[str] = []

    def get_suggestion(self, buffer: Any, document: Document) -> Suggestion | None:
        self.asked.append(document.text)
        return super().get_suggestion(buffer, document)


def test_keys_typed_together_look_for_one_suggestion_after_the_last() -> None:
    """A task per character looked for a suggestion the next character made stale; now
    one after a burst (none when Enter ends it), one per key typed one at a time, and
    the suggestion shown is the same."""

    async def check() -> None:
        with create_pipe_input() as keys:
            history = InMemoryHistory(["print(1)"])
            link = _PythonLink(None, None, "canary")
            ui = ConsoleUI(link, history=history, input=keys, output=DummyOutput())
            buffer = ui.session.default_buffer
            assert isinstance(buffer.auto_suggest, SuggestAfterBurst)
            counted = buffer.auto_suggest._inner = _CountedSuggest()
            keys.send_text("%px a=1\r")  # a line and Enter in one read
            assert await ui.read_cell(1) == "%px a=1"
            assert counted.asked == []
            task = asyncio.ensure_future(ui.read_cell(2))
            keys.send_text("pri")  # a burst: one look, for the whole of it
            await until(task, lambda: buffer.suggestion is not None)
            assert buffer.suggestion is not None
            assert buffer.suggestion.text == "nt(1)"
            assert counted.asked == ["pri"]
            for char in "nt":  # one at a time: one look each, as before
                before = len(counted.asked)
                keys.send_text(char)
                await until(task, lambda: len(counted.asked) > before)  # noqa: B023
            assert counted.asked == ["pri", "prin", "print"]
            keys.send_text("\r")
            assert await task == "print"

    asyncio.run(check())


class _Writes:
    """A terminal that records each write (prompt_toolkit writes once per flush)."""

    def __init__(self) -> None:
        self.chunks: list[str] = []

    def write(self, data: str) -> int:
        self.chunks.append(data)
        return len(data)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        raise OSError("no file")


def test_a_cell_is_two_writes_finished_prompt_and_blank_line_with_the_next_prompt() -> None:
    """Text and Enter in one go: the finished drawing and the end of bracketed paste in
    one write (prompt_toolkit made two), then the console's blank line and the next
    prompt's first drawing in one (the console wrote the line on its own)."""

    async def cells() -> list[str]:
        terminal = _Writes()
        # No cursor position requests (as in the benchmarks): with them, the request
        # goes out with the blank line, before the drawing.
        output = Vt100_Output(
            terminal, lambda: Size(ROWS, COLUMNS), term="xterm-256color", enable_cpr=False
        )
        with create_pipe_input() as keys:
            ui = ConsoleUI(_PythonLink(None, None, "canary"), input=keys, output=output)
            assert ui.writes_to(terminal)  # type: ignore[arg-type]
            assert not ui.writes_to(io.StringIO())
            keys.send_text("x = 1\r")
            assert await ui.read_cell(1) == "x = 1"
            del terminal.chunks[:]
            keys.send_text("x = 2\r")
            assert await ui.read_cell(2, before="\n") == "x = 2"
            return terminal.chunks

    first, finished = asyncio.run(cells())
    assert first.startswith("\n\x1b[?2004h")  # the blank line, then the prompt
    assert "In [" in first
    assert "x" in finished
    assert finished.endswith("\x1b[?2004l")  # bracketed paste ends in the same write


def test_binding_lookups_are_kept_and_rechecked_when_a_prompt_starts() -> None:
    """A lookup is kept for the rest of the prompt; a binding added between prompts is
    used from the next prompt on (the registries' versions are checked at its start)."""

    async def typed() -> list[str]:
        with create_pipe_input() as keys:
            extra = KeyBindings()
            session = PromptSession[str](input=keys, output=DummyOutput(), key_bindings=extra)
            assert install_focus_cached_bindings(session.app)
            cached = session.app.key_processor._bindings
            assert isinstance(cached, FocusCachedBindings)
            keys.send_text("aa\r")
            first = await session.prompt_async()
            assert any(key[1] == ("a",) for key in cached._found)  # "a" was looked up

            @extra.add("a")
            def _upper(event: KeyPressEvent) -> None:
                event.current_buffer.insert_text("A")

            keys.send_text("aa\r")
            return [first, await session.prompt_async()]

    assert asyncio.run(typed()) == ["aa", "AA"]


# -- the buffer's working lines ------------------------------------------------------------


def test_working_lines_tell_history_browsing_from_typing() -> None:
    seen: list[bool] = []
    bindings = KeyBindings()

    @bindings.add("f12")
    def _record(event: KeyPressEvent) -> None:
        seen.append(is_editing_newest_line(event.current_buffer))

    @bindings.add("f11")
    def _done(event: KeyPressEvent) -> None:
        event.app.exit(result="")

    async def browse() -> None:
        with create_pipe_input() as keys:
            history = InMemoryHistory(["older"])
            session = PromptSession[str](
                history=history, input=keys, output=DummyOutput(), key_bindings=bindings
            )
            task = asyncio.ensure_future(session.prompt_async())
            buffer = session.default_buffer
            await until(task, lambda: buffer.working_index == 1)  # history loaded
            assert isinstance(buffer._working_lines, deque)
            keys.send_text(F12 + UP + F12 + DOWN + F12 + F11)
            await task

    asyncio.run(browse())
    assert seen == [True, False, True]


# -- history ---------------------------------------------------------------------------------


def test_history_internals_have_the_expected_types() -> None:
    history = InMemoryHistory(["a"])
    assert history._loaded is False
    assert isinstance(history._loaded_strings, list)


def test_kernel_entries_reach_a_loaded_history(tmp_path: Path) -> None:
    history = ConsoleHistory(tmp_path / "history")
    history.store_string("local")

    async def load() -> list[str]:
        return [entry async for entry in history.load()]

    assert asyncio.run(load()) == ["local"]
    assert history._loaded is True
    history.add_kernel_entries(["kernel 1", "local", "kernel 2"])
    assert history.get_strings() == ["kernel 1", "kernel 2", "local"]  # oldest first
    assert asyncio.run(load()) == ["local", "kernel 2", "kernel 1"]


def test_reload_history_makes_kernel_entries_searchable_at_the_live_prompt(
    tmp_path: Path,
) -> None:
    history = ConsoleHistory(tmp_path / "history")
    history.store_string("local")

    async def scenario() -> None:
        with create_pipe_input() as keys:
            ui = console_ui(keys, history)
            task = asyncio.ensure_future(ui.read_cell(1))
            buffer = ui.session.default_buffer
            await until(task, lambda: buffer.working_index == 1)  # the file is loaded
            history.add_kernel_entries(["from kernel"])
            ui.reload_history()
            await until(task, lambda: buffer.working_index == 2)  # reloaded, with it
            keys.send_text(UP + UP)
            await until(task, lambda: buffer.text == "from kernel")
            keys.send_text("\x15\r")  # Ctrl-U empties the line; Enter ends the prompt
            assert await task == ""

    asyncio.run(scenario())


# -- cursor position reports -------------------------------------------------------------


def test_prompt_toolkits_cpr_handler_is_still_the_one_copied() -> None:
    (binding,) = load_cpr_bindings().bindings
    assert binding.keys == (Keys.CPRResponse,)
    assert binding.save_before(SimpleNamespace()) is False  # type: ignore[arg-type]
    assert binding.handler.__code__.co_names == CPR_HANDLER_NAMES


@pytest.mark.parametrize(("returned", "redraws"), [(NotImplemented, 0), (None, 1)])
def test_a_handler_returning_notimplemented_does_not_redraw(returned: object, redraws: int) -> None:
    invalidated: list[None] = []
    app = SimpleNamespace(invalidate=lambda: invalidated.append(None))
    binding = Binding((Keys.CPRResponse,), lambda event: returned)
    binding.call(SimpleNamespace(app=app))  # type: ignore[arg-type]
    assert len(invalidated) == redraws


def test_in_terminal_waits_for_cpr_replies_then_erases_the_prompt() -> None:
    # shell/console/_terminal.py waits for the replies itself before run_in_terminal.
    source = inspect.getsource(in_terminal)
    assert source.index("wait_for_cpr_responses()") < source.index("renderer.erase()")


def test_queued_keys_become_type_ahead_when_the_app_exits() -> None:
    # shell/console/_keys.py::_decide feeds held keys back after Enter ran the cell.
    source = inspect.getsource(Application.run_async)
    assert "store_typeahead(self.input, self.key_processor.empty_queue())" in source


# -- the console's event loop ----------------------------------------------------------------


def test_the_console_loop_checks_signals_without_rebuilding_the_valid_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """asyncio's Unix loop still checks signal numbers in ``_check_signal`` (what
    ``ConsoleLoop`` overrides), and the console's loop never calls ``valid_signals()``."""
    assert callable(getattr(asyncio.SelectorEventLoop, "_check_signal", None))
    loop = ConsoleLoop()
    try:
        monkeypatch.setattr(signal, "valid_signals", lambda: pytest.fail("rebuilt the set"))
        loop.add_signal_handler(signal.SIGWINCH, lambda: None)
        assert loop.remove_signal_handler(signal.SIGWINCH)
        with pytest.raises(ValueError, match="invalid signal number"):
            loop.add_signal_handler(0, lambda: None)
        with pytest.raises(TypeError, match="sig must be an int"):
            loop.add_signal_handler("SIGWINCH", lambda: None)  # type: ignore[arg-type]
    finally:
        loop.close()
