"""Key bindings of the console prompt (on top of prompt_toolkit's defaults).

========  ==============================================================
Enter     run the cell if the kernel says it is complete, else a new line
          (indented as the kernel suggests); on an inner line, a new line
Alt-Enter always a new line (Esc then Enter in terminals without Alt)
F2        show the kernel's help for the name under the cursor
========  ==============================================================

Ctrl-C (clear the line), Ctrl-D (exit on an empty line), Ctrl-R (reverse
history search), Up/Down (prefix history search) and Tab are prompt_toolkit's.
So is the handling of the terminal's cursor position reports (the answer to
the request prompt_toolkit sends with every prompt), except that a report
triggers a redraw only when it changes the layout: at the bottom of the
screen, where a console in use spends its time, it never does
(:func:`shell.console._ptk_private.report_cursor_row`).

A single line that is complete by itself (the ``runs_at_once`` predicate,
:func:`shell.console._multiline.is_complete_line` for Python kernels) runs at once.
Otherwise Enter asks the kernel (``is_complete_request``), which takes a
moment. So that keys typed meanwhile are handled *after* that decision, as if
Enter had been handled at once, the handler holds them back: it takes what is
queued in the key processor and stops reading the terminal
(``input.detach()``) until it has decided, then feeds the held keys back in.
If Enter ran the cell, the held keys become prompt_toolkit's type-ahead for
the next prompt (as they do when the line runs at once).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING

from prompt_toolkit.enums import DEFAULT_BUFFER
from prompt_toolkit.filters import has_completions, has_focus, has_selection
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.keys import Keys

from ._ptk_private import report_cursor_row

if TYPE_CHECKING:
    from prompt_toolkit.buffer import Buffer
    from prompt_toolkit.key_binding.key_processor import KeyPress

__all__ = ["load_console_bindings"]

#: ``check(text) -> (status, indent)``: see :func:`shell.console._multiline.check_complete`.
CompletenessCheck = Callable[[str], Awaitable[tuple[str, str]]]
#: ``inspect(text, cursor)``: show help for the name at ``cursor``.
Inspector = Callable[[str, int], Awaitable[None]]
#: ``runs_at_once(text)``: True when ``text`` is complete without asking the kernel.
LocalCheck = Callable[[str], bool]


def load_console_bindings(
    check: CompletenessCheck, inspect: Inspector, runs_at_once: LocalCheck | None = None
) -> KeyBindings:
    """The console's bindings; they take priority over prompt_toolkit's defaults."""
    bindings = KeyBindings()
    in_input = has_focus(DEFAULT_BUFFER) & ~has_selection

    @bindings.add("enter", filter=in_input)
    def _enter(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        state = buffer.complete_state
        if state is not None and state.current_completion is not None:
            buffer.apply_completion(state.current_completion)
            return
        doc = buffer.document
        if doc.cursor_position_row < doc.line_count - doc.empty_line_count_at_the_end() - 1:
            # Editing an inner line of a block: Enter splits it, as in an editor.
            buffer.insert_text("\n" + _indent_of(doc.current_line))
            return
        if not buffer.text.strip():
            buffer.validate_and_handle()  # an empty line: just a fresh prompt
            return
        if runs_at_once is not None and runs_at_once(buffer.text):
            buffer.validate_and_handle()  # no round trip: keys after Enter are type-ahead
            return
        # Synchronously, before the key processor moves on to the next key:
        # hold back what is queued and stop reading the terminal.
        app = event.app
        held = app.key_processor.empty_queue()
        detached = ExitStack()
        detached.enter_context(app.input.detach())
        app.create_background_task(_decide(event, buffer, check, held, detached))

    @bindings.add("escape", "enter", filter=in_input & ~has_completions)
    def _newline(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        buffer.insert_text("\n" + _indent_of(buffer.document.current_line))

    @bindings.add("f2", filter=has_focus(DEFAULT_BUFFER))
    async def _inspect(event: KeyPressEvent) -> None:
        doc = event.current_buffer.document
        await inspect(doc.text, doc.cursor_position)

    # prompt_toolkit's own handler, except that it redraws less (see _ptk_private).
    bindings.add(Keys.CPRResponse, save_before=lambda event: False)(report_cursor_row)
    return bindings


async def _decide(
    event: KeyPressEvent,
    buffer: Buffer,
    check: CompletenessCheck,
    held: list[KeyPress],
    detached: ExitStack,
) -> None:
    """Run or continue the cell, then release the held keys (see the module doc)."""
    app = event.app
    text = buffer.text
    try:
        status, indent = await check(text)
        if buffer.text == text and not app.is_done:
            if status == "incomplete":
                buffer.insert_text("\n" + indent)
            else:
                buffer.validate_and_handle()
    finally:
        detached.close()
        # After validate_and_handle the app is done: the held keys stay queued
        # and prompt_toolkit keeps them as type-ahead for the next prompt.
        processor = app.key_processor
        processor.feed_multiple(held)
        if not app.is_done:
            processor.process_keys()
        app.invalidate()


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]
