"""The console's ``%px`` view on its own: engine colours, the status line, ``[px]``.

The end-to-end proof (a real console, kernel and cluster in a pty) is
``tests/parallel/test_px_console.py``; these pin the rules with plain messages.
"""

from __future__ import annotations

import io

from kernel.protocol import Message
from parallel.magics._px_status import autopx_bundle, status_bundle
from shell.console._px_view import PxView, colour_labels, status_text


def message(msg_type: str, content: dict[str, object]) -> Message:
    return Message(header={"msg_type": msg_type}, content=content)


class Screen:
    """A PxView on a StringIO, with the renderer's and prompt's answers under control."""

    def __init__(self, *, ansi: bool = True) -> None:
        self.out = io.StringIO()
        self.column = 0
        self.live = False
        self.changes = 0
        self.view = PxView(
            self.out,
            ansi=ansi,
            at_line_start=lambda: self.column == 0,
            prompt_live=lambda: self.live,
            changed=self.changed,
        )

    def changed(self) -> None:
        self.changes += 1


def status(done: int, *, final: bool = False, bar: bool = False) -> Message:
    data = status_bundle(done, 4, 3.2, bar=bar, final=final, text="x")
    return message("update_display_data", {"data": data, "metadata": {}, "transient": {}})


def test_each_engine_label_gets_its_colour() -> None:
    text = "[stdout:0] a\nb\n[stdout:1] c\nOut[2:5]: 42\n[stderr:11] e\n"
    assert colour_labels(text) == (
        "\x1b[36m[stdout:0]\x1b[0m a\nb\n"
        "\x1b[35m[stdout:1]\x1b[0m c\n"
        "\x1b[33mOut[2:5]:\x1b[0m 42\n"
        "\x1b[35m[stderr:11]\x1b[0m e\n"  # 11 wraps around the ten colours
    )
    assert colour_labels("x [stdout:0] not at a line start") == "x [stdout:0] not at a line start"


def test_streams_are_coloured_but_not_in_plain_mode() -> None:
    stream = message("stream", {"name": "stdout", "text": "[stdout:3] hi\n"})
    shown = Screen().view.take(stream)
    assert shown is not None
    assert shown.content["text"] == "\x1b[32m[stdout:3]\x1b[0m hi\n"
    assert Screen(ansi=False).view.take(stream) is stream
    other = message("display_data", {"data": {"text/plain": "x"}})
    assert Screen().view.take(other) is other  # not ours: rendered as usual


def test_progress_is_taken_for_the_status_line_and_drawn_at_a_line_start() -> None:
    screen = Screen()
    view = screen.view
    assert view.take(status(1)) is None
    assert view.status is not None
    screen.column = 5  # output ended mid-line: the status line waits
    view.draw()
    assert screen.out.getvalue() == ""
    screen.column = 0
    view.draw()
    drawn = screen.out.getvalue()
    assert "1/4 engines done" in drawn
    assert "3 s" in drawn
    assert drawn.endswith("\x1b[0m\r")  # the cursor back at the line's start
    screen.out.seek(0)
    screen.out.truncate()
    view.around(lambda: screen.out.write("[stdout:0] out\n"))
    written = screen.out.getvalue()
    assert written.startswith("\r\x1b[K[stdout:0] out\n")  # erased before the output
    assert "1/4 engines done" in written.split("\n", 1)[1]  # and drawn again after it
    view.take(status(4, final=True))
    assert view.status is None
    view.end_cell()
    assert screen.out.getvalue().endswith("\r\x1b[K")


def test_no_status_line_in_plain_mode_or_under_a_live_prompt() -> None:
    plain = Screen(ansi=False)
    plain.view.take(status(1))
    plain.view.draw()
    assert plain.out.getvalue() == ""
    prompt = Screen()
    prompt.live = True
    prompt.view.take(status(1))
    prompt.view.draw()
    assert prompt.out.getvalue() == ""


def test_the_bar_comes_with_progress_after() -> None:
    line = status_text({"done": 2, "total": 4, "elapsed": 75.0, "bar": True}, 200)
    assert "2/4 engines done" in line
    assert "1 min 15 s" in line
    assert "█" * 10 + "░" * 10 in line
    assert "█" not in status_text({"done": 2, "total": 4, "elapsed": 1.0, "bar": False}, 200)
    assert len(status_text({"done": 2, "total": 4, "elapsed": 1.0, "bar": True}, 30)) == 30


def test_autopx_marks_the_prompt() -> None:
    screen = Screen()
    view = screen.view
    on = message("display_data", {"data": autopx_bundle(True, "0")})
    assert view.take(on) is None
    assert view.marker == "[px0] "
    assert screen.changes == 1
    view.take(message("display_data", {"data": autopx_bundle(False, "0")}))
    assert view.marker == ""


def test_plain_mode_knows_what_not_to_print() -> None:
    from shell.console._px_view import is_px_signal

    assert is_px_signal(status(1))
    assert is_px_signal(message("display_data", {"data": autopx_bundle(True, "")}))
    assert not is_px_signal(message("display_data", {"data": {"text/plain": "x"}}))
    assert not is_px_signal(message("stream", {"name": "stdout", "text": "x"}))
