"""Issue 15's defects that only a real terminal shows: the ``loom`` console in a pty.

Uses the process harness of ``test_console_e2e.py`` (pexpect, real kernels,
kernels killed by PID afterwards). Each test names the item it covers.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_console_e2e import KERNELS, Console, console, finish, open_console, prompt_re

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
    c.expect(r"\^C")  # the pty's echo
    c.expect("KeyboardInterrupt")
    after_echo = c.child.before  # what followed ^C (ipykernel first draws a rule of dashes)
    assert re.match(r"(?:\x1b\[[0-9;]*m)*\r?\n", after_echo), repr(after_echo[:80])
    c.expect(prompt_re(3))
    finish(c)
