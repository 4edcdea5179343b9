"""The console's pure parts, in memory: rendering, rich text, heuristics, commands."""

from __future__ import annotations

import asyncio
import base64
import io
import os
from pathlib import Path

import pytest
from prompt_toolkit import PromptSession
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from kernel.client import describe_exit
from kernel.client._tasks import open_task_set
from kernel.protocol import Message
from shell.console._cell_status import BAR_STYLE, CellStatus
from shell.console._commands import EXIT_WORDS, Command, is_exit, parse_command
from shell.console._completer import completions_from_reply
from shell.console._input_history import ConsoleHistory, kernel_history_entries
from shell.console._multiline import guess_complete, is_complete_line, is_line_magic
from shell.console._pager import page
from shell.console._terminal import Terminal
from shell.render._images import SavedImages, image_protocol, render_image
from shell.render._output import ANSI_RE, OutputRenderer, format_bundle, merge_streams
from shell.render._richtext import html_to_text, markdown_to_text


def msg(msg_type: str, **content: object) -> Message:
    return Message.create(msg_type, dict(content), session="test")


def renderer(ansi: bool = True) -> tuple[OutputRenderer, io.StringIO]:
    out = io.StringIO()
    return OutputRenderer(out, ansi=ansi), out


# -- output rendering ---------------------------------------------------------------


def test_result_gets_out_prompt_and_multiline_result_starts_on_new_line() -> None:
    r, out = renderer(ansi=False)
    r.render(msg("execute_result", execution_count=3, data={"text/plain": "42"}))
    r.render(msg("execute_result", execution_count=4, data={"text/plain": "a\nb"}))
    assert out.getvalue() == "Out[3]: 42\nOut[4]: \na\nb\n"


def test_plain_mode_strips_escape_codes_and_keeps_streams_apart() -> None:
    out, err = io.StringIO(), io.StringIO()
    r = OutputRenderer(out, err, ansi=False, out_prompts=False)
    r.render(msg("stream", name="stdout", text="\x1b[31mred\x1b[0m\n"))
    r.render(msg("error", ename="E", evalue="v", traceback=["\x1b[1mTrace\x1b[0m", "E: v"]))
    r.render(msg("execute_result", execution_count=1, data={"text/plain": "1"}))
    assert out.getvalue() == "red\n1\n"
    assert err.getvalue() == "Trace\nE: v\n"


def test_partial_line_is_ended_before_a_result() -> None:
    r, out = renderer(ansi=False)
    r.render(msg("stream", name="stdout", text="no newline"))
    assert r.column == len("no newline")
    r.render(msg("execute_result", execution_count=1, data={"text/plain": "1"}))
    assert out.getvalue() == "no newline\nOut[1]: 1\n"


def test_update_display_redraws_in_place_when_it_was_last() -> None:
    r, out = renderer(ansi=True)
    display = {"display_id": "bar"}
    r.render(msg("display_data", data={"text/plain": "10%"}, transient=display))
    r.render(msg("update_display_data", data={"text/plain": "50%"}, transient=display))
    assert out.getvalue() == "10%\n\x1b[1F\x1b[J50%\n"


def test_update_display_is_printed_anew_when_something_came_after() -> None:
    r, out = renderer(ansi=True)
    display = {"display_id": "bar"}
    r.render(msg("display_data", data={"text/plain": "10%"}, transient=display))
    r.render(msg("stream", name="stdout", text="other\n"))
    r.render(msg("update_display_data", data={"text/plain": "50%"}, transient=display))
    assert out.getvalue() == "10%\nother\n50%\n"


def test_update_rewrites_the_separator_before_the_prompt() -> None:
    r, out = renderer(ansi=True)
    display = {"display_id": "bar"}
    r.render(msg("display_data", data={"text/plain": "a\nb"}, transient=display))
    r.separate()  # the blank line before the next prompt
    r.render(msg("update_display_data", data={"text/plain": "c"}, transient=display))
    # Up over the separator, then over the display; the separator comes back after it.
    assert out.getvalue() == "a\nb\n\n\x1b[1F\x1b[J\x1b[2F\x1b[Jc\n\n"


def test_background_output_goes_above_the_separator() -> None:
    r, out = renderer(ansi=True)
    r.render(msg("stream", name="stdout", text="cell output\n"))
    r.separate()
    r.render(msg("stream", name="stdout", text="late\n"))
    assert out.getvalue() == "cell output\n\n\x1b[1F\x1b[Jlate\n\n"


def test_the_separator_can_be_written_by_the_prompt_and_is_kept_track_of() -> None:
    """The console hands the blank line to the next prompt, which writes it with its
    first drawing; the renderer counts it as its own (output arriving then goes above)."""
    r, out = renderer(ansi=True)
    r.render(msg("stream", name="stdout", text="cell output\n"))
    handed: list[str] = []
    r.separate(handed.append)
    assert handed == ["\n"]
    assert out.getvalue() == "cell output\n"
    out.write("".join(handed))  # the prompt writes it
    r.render(msg("stream", name="stdout", text="late\n"))
    assert out.getvalue() == "cell output\n\n\x1b[1F\x1b[Jlate\n\n"


def test_plain_mode_never_moves_the_cursor() -> None:
    r, out = renderer(ansi=False)
    display = {"display_id": "bar"}
    r.render(msg("display_data", data={"text/plain": "1"}, transient=display))
    r.render(msg("update_display_data", data={"text/plain": "2"}, transient=display))
    r.render(msg("clear_output", wait=False))
    assert out.getvalue() == "1\n2\n"


def test_clear_output_wait_clears_before_the_next_output() -> None:
    r, out = renderer(ansi=True)
    r.render(msg("stream", name="stdout", text="step 1\nstep 1b\n"))
    r.render(msg("clear_output", wait=True))
    assert out.getvalue() == "step 1\nstep 1b\n"
    r.render(msg("stream", name="stdout", text="step 2\n"))
    assert out.getvalue() == "step 1\nstep 1b\n\x1b[2F\x1b[Jstep 2\n"


def test_clear_output_only_erases_the_current_cell() -> None:
    r, out = renderer(ansi=True)
    r.render(msg("stream", name="stdout", text="old cell\n"))
    r.begin_cell()
    r.render(msg("clear_output", wait=False))
    assert out.getvalue() == "old cell\n"


def test_format_bundle_prefers_rich_text_over_placeholder_repr() -> None:
    md = {"text/markdown": "# Hi", "text/plain": "<IPython.core.display.Markdown object>"}
    assert format_bundle(md, "file") == ("Hi\n==", False)
    html = {"text/html": "<b>x</b>", "text/plain": "<IPython.core.display.HTML object>"}
    assert format_bundle(html, "file") == ("x", False)
    frame = {"text/html": "<table></table>", "text/plain": "   a\n0  1"}
    assert format_bundle(frame, "file") == ("   a\n0  1", False)
    assert format_bundle({"application/x-thing": 1}, "file")[0] == (
        "[output of type application/x-thing]"
    )


def test_images_are_saved_to_a_file_without_terminal_support() -> None:
    payload = base64.b64encode(b"\x89PNG fake").decode()
    text, unknown = format_bundle({"image/png": payload, "text/plain": "<Figure>"}, "file")
    assert not unknown
    path = text.strip().removeprefix("[image/png saved to ").removesuffix("]")
    assert Path(path).read_bytes() == b"\x89PNG fake"
    os.unlink(path)


def test_others_output_goes_above_our_input_until_ours_starts() -> None:
    r, out = renderer()
    r.render(msg("stream", name="stdout", text="before\n"))
    r.separate()  # the blank line before the prompt
    echo = "In [2]: x = 1\n   ...: y\n"  # what the finished prompt left on screen
    r.begin_cell(echo=echo)
    start = len(out.getvalue())
    r.render(msg("stream", name="stdout", text="theirs\n"), above_input=True)
    # Up over the input and the blank line, their output, then both again.
    assert out.getvalue()[start:] == "\x1b[3F\x1b[Jtheirs\n\n" + echo
    start = len(out.getvalue())
    r.render(msg("stream", name="stdout", text="ours\n"))
    r.render(msg("stream", name="stdout", text="late\n"), above_input=True)
    assert out.getvalue()[start:] == "ours\nlate\n"  # after our output: in order


def test_saved_images_live_in_a_directory_removed_at_exit(tmp_path: Path) -> None:
    images = SavedImages({})  # no LOOM_IMAGE_DIR: a temporary directory
    first = images.directory()
    assert Path(first).name.startswith("loom-images-")
    assert images.directory() == first  # one directory per process
    (Path(first) / "loom-1.png").write_bytes(b"png")
    images.remove()
    assert not Path(first).exists()
    images.remove()  # twice is harmless
    kept = SavedImages({"LOOM_IMAGE_DIR": str(tmp_path / "keep")})
    assert kept.directory() == str(tmp_path / "keep")
    kept.remove()
    assert (tmp_path / "keep").is_dir()  # asked for: never removed


@pytest.mark.parametrize("protocol", ["file", "kitty", "iterm", "sixel"])
def test_malformed_bundles_and_images_give_one_line(protocol: str) -> None:
    """Issue 15 item 21: a kernel may sign anything; nothing here may raise."""
    assert format_bundle("oops", protocol) == (
        "[malformed output: its data is a str, not a MIME bundle]",
        False,
    )
    assert format_bundle([1], protocol)[0] == (
        "[malformed output: its data is a list, not a MIME bundle]"
    )
    for broken in ("not base64!", "iVBOR", "\x00"):
        assert render_image(broken, "image/png", protocol) == (
            "[image/png not shown: its data is not valid base64]\n"
        )
    r, out = renderer()
    r.images = protocol
    r.render(msg("execute_result", execution_count=2, data=["x"]))
    r.render(msg("display_data", data={"image/png": "%%%"}))
    assert ANSI_RE.sub("", out.getvalue()).splitlines() == [
        "Out[2]: [malformed output: its data is a list, not a MIME bundle]",
        "[image/png not shown: its data is not valid base64]",
    ]


def test_terminal_reports_a_failing_write_in_one_line() -> None:
    async def scenario() -> str:
        out = io.StringIO()
        async with open_task_set() as tasks:
            term = Terminal(out, interactive=False, tasks=tasks)

            def broken() -> None:
                raise ValueError("bad")

            term.call(broken)
            term.call(lambda: out.write("after\n"))
        return out.getvalue()

    shown = asyncio.run(scenario())
    assert shown == "\n[loom: could not display output: ValueError('bad')]\nafter\n"


def test_inline_image_protocols() -> None:
    payload = base64.b64encode(b"x" * 5000).decode()
    kitty = render_image(payload, "image/png", "kitty")
    assert kitty.startswith("\x1b_Ga=T,f=100,m=1;")
    assert kitty.count("\x1b_G") == 2
    assert ANSI_RE.sub("", kitty) == "\n"
    iterm = render_image(payload, "image/png", "iterm")
    assert iterm.startswith("\x1b]1337;File=inline=1;size=5000")
    assert ANSI_RE.sub("", iterm) == "\n"
    assert image_protocol({"TERM": "xterm-kitty"}) == "kitty"
    assert image_protocol({"TERM_PROGRAM": "iTerm.app"}) == "iterm"
    assert image_protocol({"TERM": "xterm-256color"}) == "file"
    assert image_protocol({"TERM": "xterm-kitty", "LOOM_IMAGES": "file"}) == "file"


# -- rich text --------------------------------------------------------------------------


def test_html_to_text_keeps_structure() -> None:
    html = (
        "<h2>Title</h2><p>Some <b>bold</b>\n text and <a href='http://x.org'>a link</a>.</p>"
        "<ul><li>one</li><li>two<ol><li>a</li></ol></li></ul>"
        "<pre>  kept\n    as is</pre><table><tr><th>A</th><th>B</th></tr>"
        "<tr><td>1</td><td>2</td></tr></table><script>alert(1)</script>"
    )
    assert html_to_text(html) == (
        "Title\n-----\n\nSome bold text and a link (http://x.org).\n\n"
        "• one\n• two\n  1. a\n\n  kept\n    as is\n\nA | B\n1 | 2"
    )


def test_markdown_to_text_drops_markers() -> None:
    source = "# Head\nSome **bold**, *it* and `code`, [link](http://a.b).\n\n- x\n  * y\n"
    source += "```\ncode\n```"
    assert markdown_to_text(source) == (
        "Head\n====\nSome bold, it and code, link (http://a.b).\n\n• x\n  • y\n    code"
    )


# -- multi-line heuristic -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x = 1", ("complete", "")),
        ("x = (", ("incomplete", "")),
        ("for i in range(3):", ("incomplete", "    ")),
        ("for i in range(3):\n    print(i)", ("incomplete", "    ")),
        ("for i in range(3):\n    print(i)\n", ("complete", "")),
        ("def f():\n    return 1", ("incomplete", "")),
        ("a b c", ("invalid", "")),
        ("len?", ("complete", "")),
        ("%timeit x", ("complete", "")),
        ("%%time\nx = 1", ("incomplete", "")),
        ("%%time\nx = 1\n", ("complete", "")),
    ],
)
def test_guess_complete(text: str, expected: tuple[str, str]) -> None:
    assert guess_complete(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pass", True),
        ("x = 1; y = 2", True),
        ("print('a:b')", True),
        ("for i in range(3): print(i)", True),  # one line, as IPython runs it
        ("await asyncio.sleep(0)", True),  # top-level await is allowed
        ("x = '\\d'", True),  # a SyntaxWarning is not an error
        ("# just a comment", True),
        ("", False),
        ("   ", False),
        ("  x = 1", False),  # indented: the kernel may dedent it
        ("for i in range(3):", False),  # opens a block
        ("x = (1,", False),  # open bracket
        ('s = """abc', False),  # open string
        ("x = 1 + \\", False),  # continuation
        ("%time x = 1", False),  # IPython syntax: the kernel knows
        ("!ls", False),
        ("len?", False),
        ("x = 1\ny = 2", False),  # more than one line: the kernel decides
        ("@decorator", False),
        ("a b c", False),  # invalid: let the kernel say so
    ],
)
def test_is_complete_line(text: str, expected: bool) -> None:
    assert is_complete_line(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("%px a=1", True),
        ("%px for i in range(3):", True),  # the magic's argument: IPython calls it complete
        ("%time x = (", True),
        ("%autopx", True),
        ("%%px", False),  # a cell magic waits for its body
        ("%%px -t 0\nprint(1)", False),
        ("%px a = 1 + \\", False),  # a continuation line follows
        ("%px a=1\n", False),  # more than one line: the kernel decides
        ("  %px a=1", False),  # indented
        ("a = %px 1", False),  # not a line magic at the start
        ("!ls", False),
        ("", False),
    ],
)
def test_is_line_magic(text: str, expected: bool) -> None:
    assert is_line_magic(text) is expected


# -- output batching ------------------------------------------------------------------------


def test_merge_streams_joins_runs_of_one_stream_only() -> None:
    merged = merge_streams(
        [
            msg("stream", name="stdout", text="a\n"),
            msg("stream", name="stdout", text="b\n"),
            msg("stream", name="stderr", text="oops\n"),
            msg("stream", name="stdout", text="c\n"),
            msg("display_data", data={"text/plain": "d"}),
            msg("stream", name="stdout", text="e"),
            msg("stream", name="stdout", text="f\n"),
        ]
    )
    assert [(m.msg_type, m.content.get("name"), m.content.get("text")) for m in merged] == [
        ("stream", "stdout", "a\nb\n"),
        ("stream", "stderr", "oops\n"),
        ("stream", "stdout", "c\n"),
        ("display_data", None, None),
        ("stream", "stdout", "ef\n"),
    ]


def test_a_flood_is_counted_without_measuring_every_line() -> None:
    r, out = renderer(ansi=True)
    lines = 5000
    r.render(msg("stream", name="stdout", text="".join(f"{i}\n" for i in range(lines)) + "tail"))
    assert r.column == len("tail")
    assert r._cell_rows is not None
    assert r._cell_rows >= lines  # a lower bound is enough
    r.render(msg("clear_output", wait=False))  # too tall to erase: nothing moves up
    assert "\x1b[" not in out.getvalue().split("tail", 1)[1].replace("\r\x1b[K", "")


def test_output_queued_as_a_drain_above_the_prompt_ends_is_written_too() -> None:
    """A write queued after prompt_toolkit's run_in_terminal drained the queue, but
    before the draining task ended, found that task still running and so started
    none of its own: it waited for the next write (other clients' stream output
    was lost this way until some later output came)."""
    written: list[str] = []

    async def scenario() -> None:
        async with open_task_set() as tasks:
            await write_both(Terminal(io.StringIO(), tasks=tasks))

    async def write_both(term: Terminal) -> None:
        loop = asyncio.get_running_loop()

        def first() -> None:
            written.append("first")
            # Runs after the drain, before the draining task sees it is done.
            loop.call_soon(term.call, lambda: written.append("second"))

        with create_pipe_input() as keys:
            session: PromptSession[str] = PromptSession(input=keys, output=DummyOutput())
            live = asyncio.Event()
            prompt = asyncio.ensure_future(session.prompt_async("> ", pre_run=live.set))
            async with asyncio.timeout(10):
                await live.wait()
                term.call(first)
                await term.settle()
                keys.send_text("\r")
                await prompt

    asyncio.run(scenario())
    assert written == ["first", "second"]


# -- commands, completion, history ---------------------------------------------------------


def test_parse_command() -> None:
    assert parse_command("exit") == Command("exit")
    assert parse_command("  quit()  ") == Command("exit")
    assert parse_command("%edit foo.py") == Command("edit", "foo.py")
    assert parse_command("%cpaste") == Command("cpaste")
    assert parse_command("exit = 3") is None
    assert parse_command("%timeit 1") is None
    assert parse_command("%paste\nx") is None


@pytest.mark.parametrize("word", sorted(EXIT_WORDS))
def test_exit_words_leave_both_modes(word: str) -> None:
    # The interactive console (parse_command) and plain mode (is_exit) had two lists.
    assert parse_command(f" {word} ") == Command("exit")
    assert is_exit(f"{word}\n")
    assert not is_exit(f"{word} = 1")


def test_completions_carry_type_metadata_and_respect_text_after_cursor() -> None:
    reply = {
        "status": "ok",
        "matches": ["print", "property"],
        "cursor_start": 0,
        "cursor_end": 2,
        "metadata": {
            "_jupyter_types_experimental": [
                {"text": "print", "type": "function", "signature": "(*values)"},
            ]
        },
    }
    found = completions_from_reply(reply, "pr", 2)
    assert [(c.text, c.start_position, c.display_meta_text) for c in found] == [
        ("print", -2, "function (*values)"),
        ("property", -2, ""),
    ]
    # Cursor at "pr|nt": the kernel replaces up to cursor_end, prompt_toolkit only up
    # to the cursor, so the completion leaves out the "nt" already there -> "print".
    reply = {"status": "ok", "matches": ["print"], "cursor_start": 0, "cursor_end": 4}
    assert [c.text for c in completions_from_reply(reply, "prnt", 2)] == ["pri"]


def test_history_merges_kernel_entries_behind_the_file(tmp_path: Path) -> None:
    history = ConsoleHistory(tmp_path / "sub" / "history")
    history.store_string("local 1")
    history.store_string("local 2")
    history.add_kernel_entries(["kernel 1", "local 1", "kernel 2"])
    assert list(history.load_history_strings()) == ["local 2", "local 1", "kernel 2", "kernel 1"]
    reply = {"history": [[1, 1, "a\n"], [1, 2, ["b", "out"]], [2, 1, 3]]}
    assert kernel_history_entries(reply) == ["a", "b"]


def test_describe_exit() -> None:
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert describe_exit(3) == "exited with code 3"


def test_long_text_goes_through_the_pager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = tmp_path / "paged.txt"
    pager = tmp_path / "pager.sh"
    pager.write_text(f"#!/bin/sh\ncat > {seen}\n")
    pager.chmod(0o755)
    monkeypatch.setenv("PAGER", str(pager))
    monkeypatch.delenv("LOOM_PAGER", raising=False)
    monkeypatch.setenv("LINES", "10")
    out = io.StringIO()
    page("short\n", out, interactive=True)
    assert out.getvalue() == "short\n"
    long_text = "".join(f"line {i}\n" for i in range(30))
    page(long_text, out, interactive=True)
    assert seen.read_text() == long_text
    assert out.getvalue() == "short\n"  # the pager showed it, not the stream
    page("\x1b[31m" + long_text, out, interactive=False)  # plain mode: never paged, no escapes
    assert out.getvalue() == "short\n" + long_text


def test_cell_status_line_is_drawn_below_output_and_erased_around_it() -> None:
    out = io.StringIO()
    state = {"column": 0, "hidden": False}
    status = CellStatus(
        out,
        ansi=True,
        text=lambda width: "busy"[:width],
        at_line_start=lambda: state["column"] == 0,
        hidden=lambda: state["hidden"],
    )
    status.draw()
    assert out.getvalue() == ""  # no cell runs
    status.begin()
    status.draw()
    assert out.getvalue() == ""  # not yet: most cells end before SHOW_AFTER
    status.reveal()
    line = f"\r\x1b[K{BAR_STYLE}busy\x1b[0m\r"
    assert out.getvalue() == line
    status.around(lambda: out.write("text\n"))
    assert out.getvalue() == line + "\r\x1b[Ktext\n" + line  # erased, written, redrawn
    status.echoed_over("^C")  # the terminal echoed ^C at its start
    assert out.getvalue().endswith(line + "\r\x1b[K^C")
    state["column"] = 3  # an unfinished line of output: the line waits for its end
    status.draw()
    assert not status.drawn
    state["column"], state["hidden"] = 0, True  # a prompt (or %px's line) is up
    status.draw()
    assert not status.drawn
    state["hidden"] = False
    status.draw()
    status.end()
    assert out.getvalue().endswith(line + "\r\x1b[K")
    assert not status.running
    plain = CellStatus(io.StringIO(), ansi=False, text=str, at_line_start=lambda: True,
                       hidden=lambda: False)  # fmt: skip
    plain.begin()
    plain.reveal()
    assert not plain.drawn  # plain mode: never
