"""``ConsoleUI``: the prompt_toolkit side of the console.

One ``PromptSession`` for cells (IPython's ``In [N]:`` / ``...:`` prompts,
kernel-language highlighting, async kernel completion, history with prefix
search and auto-suggestion, the bottom toolbar, Emacs or vi keys, with
IPython's ``[ins]``/``[nav]`` mode indicator before the prompt) and one
plain session for questions and the kernel's ``input()`` requests. Both only
ever run through ``prompt_async`` on the console's event loop, and leave the
loop's SIGINT handler to the console (``handle_sigint=False``).

Nothing here delays the first prompt: the highlighter (Pygments' lexers take
tens of milliseconds to import) is loaded just after a prompt has been drawn
once the kernel's language is known, and the prompt is drawn before the
kernel answers (the toolbar then says ``starting``). prompt_toolkit's polling
of the terminal size is switched off: SIGWINCH reports resizes.
"""

from __future__ import annotations

import asyncio
import sys
import unicodedata
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.completion import Completer
from prompt_toolkit.document import Document
from prompt_toolkit.enums import EditingMode
from prompt_toolkit.formatted_text import StyleAndTextTuples, fragment_list_to_text
from prompt_toolkit.history import History, InMemoryHistory
from prompt_toolkit.key_binding.vi_state import InputMode
from prompt_toolkit.lexers import DynamicLexer, Lexer, PygmentsLexer
from prompt_toolkit.styles import Style

from kernel import KernelError

from ._cell_status import BAR_STYLE
from ._completer import KernelCompleter
from ._keys import load_console_bindings
from ._multiline import check_complete, is_complete_line, is_line_magic
from ._pager import page, page_text
from ._ptk_private import (
    install_content_once_per_drawing,
    install_focus_cached_bindings,
    install_invalidate_events_once,
    install_one_write_when_done,
    install_parents_once,
    install_redraw_guard,
    install_slim_layout,
    install_suggest_after_burst,
    is_editing_newest_line,
)

if TYPE_CHECKING:
    from prompt_toolkit.application import Application
    from prompt_toolkit.buffer import Buffer
    from prompt_toolkit.input import Input
    from prompt_toolkit.output import Output

    from ._link import KernelLink

__all__ = ["ConsoleUI"]

_STYLE = Style.from_dict(
    {
        "in-prompt": "ansigreen",
        "in-prompt.number": "ansibrightgreen bold",
        "continuation": "ansigreen",
        "px-marker": "ansicyan bold",
        "vi-mode": "ansiblue",
        "bottom-toolbar": "noreverse bg:#303030 #c0c0c0",
        "bottom-toolbar.state.bad": "bg:ansired ansiwhite bold",
        "bottom-toolbar.state.busy": "ansiyellow",
    }
)
_BAD_STATES = ("dead", "not responding", "restarting", "starting")
_GREEN, _RESET = "\x1b[32m", "\x1b[0m"  # the prompt's ansigreen, for echo()
#: The toolbar's state colours (bottom-toolbar.state.*) as escapes, for running_status().
_STATE_SGR = {"busy": "\x1b[33m", "bad": "\x1b[1;37;41m"}


class ConsoleUI:
    """Reads cells and answers; shows kernel state in the toolbar.

    ``input``/``output`` default to the terminal; tests pass a pipe input and
    ``DummyOutput`` (and ``stdout``, where F2 help goes). ``history``
    defaults to an in-memory one.
    """

    def __init__(
        self,
        link: KernelLink,
        *,
        history: History | None = None,
        vi_mode: bool = False,
        input: Input | None = None,
        output: Output | None = None,
        stdout: TextIO | None = None,
    ) -> None:
        self.link = link
        self.stdout = stdout or sys.stdout  # where help text (F2) is written
        self.count = 1
        self.last_duration: float | None = None
        #: Text the ``In [N]:`` prompt starts with (the console: ``[px] `` under %autopx).
        self.prompt_marker: Callable[[], str] = str
        self._io: dict[str, Any] = {"input": input, "output": output}
        self._lexer: Lexer | None = None
        self._lexer_loaded = False
        self._after_drawn: list[Callable[[], None]] = []
        self.session: PromptSession[str] = PromptSession(
            multiline=True,
            prompt_continuation=self._continuation,
            lexer=DynamicLexer(lambda: self._lexer),
            completer=KernelCompleter(link),
            complete_while_typing=False,
            # No validator: validating while typing only made an empty task per key.
            validate_while_typing=False,
            history=history or InMemoryHistory(),
            enable_history_search=True,
            auto_suggest=AutoSuggestFromHistory(),
            bottom_toolbar=self._toolbar,
            key_bindings=load_console_bindings(self._check, self.inspect, self._runs_at_once),
            vi_mode=vi_mode,
            enable_open_in_editor=True,
            style=_STYLE,
            include_default_pygments_style=True,
            **self._io,
        )
        _tune(self.session)
        #: Called with the cell (as :meth:`read_cell` will return it) the moment
        #: Enter accepts it, before the prompt is redrawn as finished.
        self.on_accept: Callable[[str], None] | None = None
        self._watch_accept(self.session.default_buffer)
        #: Runs a function that writes to the screen above the live prompt; the
        #: console points it at its ordered :meth:`Terminal.call`. Until then (a UI
        #: alone, in tests) nothing else writes, so the function simply runs.
        self.write_above: Callable[[Callable[[], None]], None] = _call
        self._aux: PromptSession[str] | None = None
        self._accepted = ""  # the text of the cell prompt Enter accepted last

    # -- reading --------------------------------------------------------------

    async def read_cell(self, count: int, default: str = "", before: str = "") -> str:
        """Show ``In [count]:`` and return the accepted text (trailing blank lines removed).

        ``before`` is written just before the prompt, in the same ``write`` as its first
        drawing (the console's blank line between cells; see :meth:`writes_to`).
        Raises ``KeyboardInterrupt`` (Ctrl-C) and ``EOFError`` (Ctrl-D on an empty line).
        """
        self.count = count
        if not self._lexer_loaded and self.link.is_ready:
            self._after_drawn.append(self.load_lexer)
        if self._after_drawn:
            # prompt_async draws the prompt before it first waits: these run after that.
            callbacks, self._after_drawn = self._after_drawn, []
            asyncio.get_running_loop().call_soon(_call_all, callbacks)
        output = self.session.app.output
        text = await self.session.prompt_async(
            self._message,
            default=default,
            handle_sigint=False,
            # After the prompt's reset, before its first drawing (or cursor position
            # request), which flushes it: the output only buffers until then.
            pre_run=(lambda: output.write_raw(before)) if before else None,
        )
        return _cell_text(text)

    def writes_to(self, stream: TextIO) -> bool:
        """Whether the prompt is drawn on ``stream`` (the terminal; not in tests, where
        it is drawn nowhere), so text for ``stream`` can go with its drawing."""
        return getattr(self.session.app.output, "stdout", None) is stream

    def _watch_accept(self, buffer: Buffer) -> None:
        accept = buffer.accept_handler

        def accepted(buffer: Buffer) -> bool:
            self._accepted = buffer.text  # as the finished prompt shows it
            if self.on_accept is not None:
                self.on_accept(_cell_text(buffer.text))
            return accept(buffer) if accept is not None else False

        buffer.accept_handler = accepted

    async def ask(
        self, question: str, *, password: bool = False, completer: Completer | None = None
    ) -> str:
        """One line from the user, in a plain prompt (no history shared with cells);
        ``completer`` completes on Tab (pdb's prompt), for this question only."""
        if self._aux is None:
            self._aux = PromptSession(
                history=InMemoryHistory(), validate_while_typing=False, **self._io
            )
            _tune(self._aux)
        return await self._aux.prompt_async(
            question,
            is_password=password,
            handle_sigint=False,
            completer=completer,
            complete_while_typing=False,
        )

    def after_drawn(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the next cell prompt has been drawn."""
        self._after_drawn.append(callback)

    @property
    def is_live(self) -> bool:
        """True while the cell prompt is on screen."""
        return self.session.app.is_running

    def load_lexer(self) -> None:
        """Load the highlighter for the kernel's language, once (blocks for the import)."""
        if self._lexer_loaded:
            return
        self._lexer_loaded = True
        self._lexer = _lexer_for(self.link.kernel_info, self.link.language)
        self.invalidate()

    async def confirm(self, question: str, default: bool = True) -> bool:
        """A yes/no question; Enter takes ``default``; Ctrl-C and Ctrl-D say no."""
        try:
            answer = (await self.ask(question)).strip().lower()
        except (KeyboardInterrupt, EOFError):
            return False
        return default if not answer else answer.startswith("y")

    def reload_history(self) -> None:
        """Make history added meanwhile (the kernel's) searchable at the live prompt.

        The prompt copies the history into its buffer when it starts; resetting
        the buffer (keeping its text and cursor) makes it copy again. Skipped
        while the user is browsing the history, so nothing jumps under them.
        """
        app = self.session.app
        buffer = self.session.default_buffer
        if not app.is_running or not is_editing_newest_line(buffer):
            return
        buffer.reset(Document(buffer.text, buffer.cursor_position))
        app.invalidate()

    def invalidate(self) -> None:
        """Redraw the prompt (e.g. the toolbar after a state change), if one is up."""
        app = self.session.app
        if app.is_running:
            app.invalidate()

    # -- prompt pieces --------------------------------------------------------

    def _message(self) -> StyleAndTextTuples:
        mode: StyleAndTextTuples = []
        if self.session.editing_mode == EditingMode.VI:
            mode = [("class:vi-mode", f"[{_vi_mode(self.session.app)}] ")]
        marker = self.prompt_marker()
        if marker:
            mode.append(("class:px-marker", marker))
        return [
            *mode,
            ("class:in-prompt", "In ["),
            ("class:in-prompt.number", str(self.count)),
            ("class:in-prompt", "]: "),
        ]

    def echo(self) -> str:
        """The input just accepted as the finished prompt shows it: ``In [N]: ...``
        lines (the trailing blank ones too), long lines wrapped after the prompt's
        width as prompt_toolkit wraps them, a newline after the last; in the
        prompt's colours but without highlighting. For drawing it again below
        output that must go above it."""
        prompt = fragment_list_to_text(self._message())
        more = fragment_list_to_text(self._continuation(len(prompt), 1, 0))
        room = max(self.session.app.output.get_size().columns - len(prompt), 1)
        rows = [row for line in self._accepted.split("\n") for row in _wrap(line, room)]
        rest = "".join(f"\n{_GREEN}{more}{_RESET}{row}" for row in rows[1:])
        return f"{_GREEN}{prompt}{_RESET}{rows[0]}{rest}\n"

    def _continuation(self, width: int, line_number: int, wrap_count: int) -> StyleAndTextTuples:
        return [("class:continuation", " " * max(width - 5, 0) + "...: ")]

    def _toolbar(self) -> StyleAndTextTuples:
        state = self.link.state
        style = "class:bottom-toolbar.state"
        if state in _BAD_STATES:
            style += ".bad"
        elif state == "busy":
            style += ".busy"
        parts: StyleAndTextTuples = [
            ("", f" {self.link.name} "),
            ("", "│"),
            (style, f" {state} "),
            ("", "│"),
        ]
        if self.last_duration is not None:
            parts.append(("", f" last cell {_duration(self.last_duration)} │"))
        parts.append(("", " F2 help  Ctrl-D exit "))
        return parts

    def running_status(self, width: int) -> str:
        """The toolbar's line while our cell runs (:mod:`._cell_status`), at most
        ``width`` cells: `` loom │ busy │ Ctrl-C interrupts ``."""
        state = str(self.link.state)
        parts = [f" {self.link.name} ", f" {state} ", " Ctrl-C interrupts "]
        plain = "│".join(parts)
        if len(plain) > width:
            return plain[: max(width, 0)]
        colour = _STATE_SGR.get("bad" if state in _BAD_STATES else state)
        if colour is not None:
            parts[1] = f"{colour}{parts[1]}{BAR_STYLE}"
        return "│".join(parts)

    # -- kernel round trips ---------------------------------------------------

    async def _check(self, text: str) -> tuple[str, str]:
        return await check_complete(self.link, text)

    def _runs_at_once(self, text: str) -> bool:
        """A Python kernel need not be asked about a complete single line, nor about a
        one-line line magic (``%px a=1``: IPython kernels call those complete)."""
        return self.link.language == "python" and (is_line_magic(text) or is_complete_line(text))

    async def inspect(self, text: str, cursor: int) -> None:
        """Show the kernel's help for the name at ``cursor`` above the prompt."""
        if not self.link.is_usable:
            return
        try:
            async with asyncio.timeout(5.0):
                reply = await self.link.client.inspect(text, cursor, detail_level=0)
        except (TimeoutError, KernelError):
            return
        found = reply.get("status") == "ok" and reply.get("found")
        body = page_text(reply.get("data") or {}) if found else "No help found at the cursor."

        def show() -> None:
            page(body.rstrip("\n") + "\n", self.stdout, interactive=True)
            self.stdout.write("\n")  # a blank line between the help and the prompt
            self.stdout.flush()

        # Not drawn in this task: prompt_toolkit cancels a key's task when the prompt
        # ends, and a run_in_terminal cancelled while it waits for an earlier one
        # never releases the ones queued behind it (all later output would wait).
        self.write_above(show)


def _vi_mode(app: Application[Any]) -> str:
    """IPython's indicator of the vi mode: ``ins``, ``nav``, ``rep`` or ``vis`` (a selection)."""
    if app.current_buffer.selection_state is not None:
        return "vis"
    mode = app.vi_state.input_mode
    if mode == InputMode.NAVIGATION:
        return "nav"
    if mode in (InputMode.REPLACE, InputMode.REPLACE_SINGLE):
        return "rep"
    return "ins"


def _wrap(line: str, room: int) -> list[str]:
    """``line`` cut into rows of at most ``room`` terminal cells (wide characters take two)."""
    rows: list[str] = []
    row: list[str] = []
    used = 0
    for char in line:
        cells = 2 if unicodedata.east_asian_width(char) in "WF" else 1
        if used + cells > room and row:
            rows.append("".join(row))
            row, used = [], 0
        row.append(char)
        used += cells
    rows.append("".join(row))
    return rows


def _call_all(callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        callback()


def _cell_text(text: str) -> str:
    """An accepted prompt's text as a cell: trailing blank lines and spaces removed."""
    return text.rstrip()


def _lexer_for(kernel_info: dict[str, Any], language: str = "") -> Lexer | None:
    """A highlighter for the kernel's language (``pygments_lexer``, else ``name``,
    else ``language``)."""
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    info = kernel_info.get("language_info") or {}
    for name in (info.get("pygments_lexer"), info.get("name"), language, "text"):
        if not isinstance(name, str) or not name:
            continue
        try:
            lexer = get_lexer_by_name(name)
        except ClassNotFound:
            continue
        return PygmentsLexer(type(lexer))
    return None


def _tune(session: PromptSession[Any]) -> None:
    """Settings of prompt_toolkit's ``Application`` that ``PromptSession`` does not take."""
    app = session.app
    # Resizes come with SIGWINCH; no need to poll the size twice a second.
    app.terminal_size_polling_interval = None
    install_focus_cached_bindings(app)  # a fixed layout: bindings depend on focus alone
    install_redraw_guard(app)  # no drawing of what is on screen already
    install_invalidate_events_once(app)  # a fixed layout: the same events every drawing
    install_parents_once(app)  # ... and the same parents
    install_slim_layout(session)  # no walk through the parts that show nothing
    install_content_once_per_drawing(session)  # the input made once per size per drawing
    install_one_write_when_done(app)  # a cell's finished prompt in one write
    install_suggest_after_burst(session.default_buffer, app)  # not one task per key


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs} s"


def _call(func: Callable[[], None]) -> None:
    func()
