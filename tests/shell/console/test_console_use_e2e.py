"""Issue 15's defects that only a real terminal shows: the ``loom`` console in a pty.

Uses the process harness of ``test_console_e2e.py`` (pexpect, real kernels,
kernels killed by PID afterwards). Each test names the item it covers.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pexpect
import pytest
from test_console_e2e import KERNELS, Console, console, finish, open_console, out_re, prompt_re

pytestmark = pytest.mark.peer

__all__ = ["console"]  # the fixture, used by name


@pytest.mark.parametrize("kernel", KERNELS)
def test_keyboard_interrupt_starts_a_line_of_its_own_after_the_echoed_ctrl_c(
    kernel: str, tmp_path: Path, console: list[Console]
) -> None:
    """Item 13: the terminal echoes ``^C``; the traceback used to continue that line."""
    c = open_console(console, tmp_path, "--kernel", kernel)
    c.kernel_pid(1)
    c.expect(prompt_re(2))
    c.run("import time; print('sleep' + 'ing'); time.sleep(30)")
    c.expect("sleeping")
    c.child.sendintr()
    c.expect("KeyboardInterrupt")
    # The pty echoes ^C over the status line; the console erases that line, writes ^C
    # again, then a line break. What follows the last ^C must start a new line
    # (ipykernel first draws a rule of dashes).
    shown = c.child.before
    after_echo = shown[shown.rindex("^C") + 2 :]
    assert re.match(r"(?:\x1b\[[0-9;]*m)*\r?\n", after_echo), repr(after_echo[:80])
    c.expect(prompt_re(3))
    finish(c)


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
SHOW_PNG = f"display({{'image/png': '{PNG}', 'text/plain': 'img'}}, raw=True)"


@pytest.mark.parametrize("kernel", KERNELS)
def test_saved_images_are_deleted_when_the_console_exits(
    kernel: str, tmp_path: Path, console: list[Console]
) -> None:
    """Item 15: temporary ``loom-*.png`` files used to stay behind."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    c = open_console(console, tmp_path, "--kernel", kernel, TMPDIR=str(tmp), LOOM_IMAGES="file")
    c.kernel_pid(1)
    c.expect(prompt_re(2))
    c.run(SHOW_PNG)
    c.expect(r"\[image/png saved to (\S+\.png)\]")
    saved = Path(c.child.match.group(1))
    assert saved.is_relative_to(tmp)
    assert saved.read_bytes().startswith(b"\x89PNG")
    finish(c)
    assert not saved.exists()
    assert list(tmp.iterdir()) == []


def test_saved_images_are_deleted_when_the_console_is_terminated(
    tmp_path: Path, console: list[Console]
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    c = open_console(console, tmp_path, TMPDIR=str(tmp), LOOM_IMAGES="file")
    c.kernel_pid(1)
    c.expect(prompt_re(2))
    c.run(SHOW_PNG)
    c.expect(r"\[image/png saved to (\S+\.png)\]")
    c.expect(prompt_re(3))
    c.child.kill(signal.SIGTERM)
    c.child.expect(pexpect.EOF, timeout=15)
    c.child.close()
    assert list(tmp.iterdir()) == []


def test_images_are_kept_in_loom_image_dir(tmp_path: Path, console: list[Console]) -> None:
    """Item 15: the user asks to keep images by naming a directory for them."""
    kept = tmp_path / "figures"
    c = open_console(console, tmp_path, LOOM_IMAGES="file", LOOM_IMAGE_DIR=str(kept))
    c.kernel_pid(1)
    c.expect(prompt_re(2))
    c.run(SHOW_PNG)
    c.expect(r"\[image/png saved to (\S+\.png)\]")
    saved = Path(c.child.match.group(1))
    assert saved.parent == kept
    finish(c)
    assert saved.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("kernel", KERNELS)
def test_status_line_says_busy_while_our_cell_runs(
    kernel: str, tmp_path: Path, console: list[Console]
) -> None:
    """Item 9: the toolbar shows ``busy`` while our own cell runs (no prompt is up then)."""
    c = open_console(console, tmp_path, "--kernel", kernel)
    c.kernel_pid(1)
    c.expect(prompt_re(2))
    c.run("import time; print('sleep' + 'ing'); time.sleep(1); 'do' + 'ne'")
    c.expect("sleeping")
    c.expect(r"busy \S*│ Ctrl-C interrupts")  # drawn below the output so far
    c.expect(r"\r\x1b\[K")  # and erased before the result is written
    c.expect(out_re(2, "'done'"))
    c.expect(prompt_re(3))
    c.run("print('after')")  # a fresh cell: no status line left in the way
    c.expect("after")
    finish(c)
