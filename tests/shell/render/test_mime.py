"""One reading of outputs as text: the console and ``loom run`` show the same thing.

Each message goes through both real renderers (the console's ``OutputRenderer``
in plain mode, ``loom run``'s ``TextRenderer`` writing to pipes) and the text on
each stream is compared. The messages are the ones where the two used to
disagree; the batch's deliberate differences (``TextRenderer``'s docstring)
have tests of their own below.
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import pytest

from kernel.protocol import Message
from shell.batch._report import OutputWriter, TextRenderer
from shell.render._mime import choose_mime, error_text, format_bundle
from shell.render._output import OutputRenderer

HYPERLINK = "\x1b]8;;file:///tmp/x.py\x1b\\x.py\x1b]8;;\x1b\\"
MARKDOWN = {"text/markdown": "# Hi", "text/plain": "<IPython.core.display.Markdown object>"}


def msg(msg_type: str, **content: object) -> Message:
    return Message.create(msg_type, dict(content), session="test")


def shown_by_console(message: Message) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    OutputRenderer(out, err, ansi=False, images="file", out_prompts=False).render(message)
    return out.getvalue(), err.getvalue()


def shown_by_batch(message: Message) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()  # not terminals: no colours
    TextRenderer(OutputWriter(out, err)).output(0, message)
    return out.getvalue(), err.getvalue()


AGREED = {
    "plain result": (msg("execute_result", execution_count=1, data={"text/plain": "42"}), "42\n"),
    "markdown beside a placeholder repr": (msg("display_data", data=MARKDOWN), "Hi\n==\n"),
    "html beside a placeholder repr": (
        msg("display_data", data={"text/html": "<b>x</b>", "text/plain": "<HTML object>"}),
        "x\n",
    ),
    "html table beside real text": (
        msg("display_data", data={"text/html": "<table></table>", "text/plain": "   a\n0  1"}),
        "   a\n0  1\n",
    ),
    "text/plain as a list of lines": (
        msg("execute_result", execution_count=2, data={"text/plain": ["a\n", "b"]}),
        "a\nb\n",
    ),
    "latex only": (msg("display_data", data={"text/latex": "$x^2$"}), "$x^2$\n"),
    "unknown type": (
        msg("display_data", data={"application/x-thing": {"a": 1}}),
        "[output of type application/x-thing]\n",
    ),
    "empty bundle": (msg("display_data", data={}), "[output of type none]\n"),
    "text ending in a newline": (msg("display_data", data={"text/plain": "x\n"}), "x\n"),
}

AGREED_ERRORS = {
    "colours and a hyperlink": (
        msg("error", ename="E", evalue="v", traceback=[f"\x1b[31mTrace\x1b[0m {HYPERLINK}", "E"]),
        "Trace x.py\nE\n",
    ),
    "no traceback": (msg("error", ename="E", evalue="v", traceback=[]), "E: v\n"),
    "traceback null": (msg("error", ename="E", evalue="v", traceback=None), "E: v\n"),
    "nothing at all": (msg("error"), "Error: \n"),
}


@pytest.mark.parametrize("name", list(AGREED))
def test_results_and_displays_read_the_same_in_console_and_batch(name: str) -> None:
    message, expected = AGREED[name]
    assert shown_by_console(message) == (expected, "")
    assert shown_by_batch(message) == (expected, "")


@pytest.mark.parametrize("name", list(AGREED_ERRORS))
def test_errors_read_the_same_in_console_and_batch(name: str) -> None:
    message, expected = AGREED_ERRORS[name]
    assert shown_by_console(message) == ("", expected)
    assert shown_by_batch(message) == ("", expected)


# -- the batch's deliberate differences ---------------------------------------------------


def test_batch_shows_the_text_beside_an_image_and_names_a_lone_image() -> None:
    png = base64.b64encode(b"\x89PNG fake").decode()
    figure = {"image/png": png, "text/plain": "<Figure size 640x480 with 1 Axes>"}
    assert shown_by_batch(msg("display_data", data=figure)) == (
        "<Figure size 640x480 with 1 Axes>\n",
        "",
    )
    lone = msg("display_data", data={"image/png": png})
    assert shown_by_batch(lone) == ("[output of type image/png]\n", "")
    # The console saves it (no graphics in plain mode) and prints the path.
    text = shown_by_console(lone)[0]
    path = Path(text.removeprefix("[image/png saved to ").removesuffix("]\n"))
    try:
        assert path.read_bytes() == b"\x89PNG fake"
    finally:
        os.unlink(path)


def test_batch_keeps_escape_codes_the_cell_printed() -> None:
    stream = msg("stream", name="stdout", text="\x1b[31mred\x1b[0m\n")
    assert shown_by_batch(stream) == ("\x1b[31mred\x1b[0m\n", "")
    assert shown_by_console(stream) == ("red\n", "")  # plain mode strips every escape


# -- the pieces ---------------------------------------------------------------------------


def test_choose_mime_ranks_images_only_when_they_can_be_shown() -> None:
    data = {"image/png": "AAAA", "text/plain": "<Figure>", "text/html": "<p>f</p>"}
    assert choose_mime(data, images=True) == "image/png"
    assert choose_mime(data, images=False) == "text/plain"
    assert choose_mime({"image/png": "AAAA"}, images=False) is None
    listed = {"text/plain": ["<Foo object>"], "text/html": ["<i>f</i>"]}  # nbformat's lists
    assert choose_mime(listed, images=False) == "text/html"
    assert choose_mime({"text/plain": 3}, images=True) is None  # not text


def test_format_bundle_without_images_never_saves_a_file() -> None:
    assert format_bundle({"image/gif": "R0lG"}, None) == ("[output of type image/gif]", False)


def test_error_text_keeps_the_tracebacks_colours() -> None:
    content = {"ename": "E", "evalue": "v", "traceback": ["\x1b[31mA\x1b[0m", "B"]}
    assert error_text(content) == "\x1b[31mA\x1b[0m\nB"
