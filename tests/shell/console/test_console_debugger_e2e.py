"""The debugger at the console's prompt, end to end: ``loom`` in a pty, real kernels.

pdb runs in the kernel and asks for each command with ``input_request``; the console
answers from a prompt with line editing and history (arrow keys edit and recall, they
never print escape codes), and, on Loom's kernel, Tab completes the paused frame's names
(sent with the request) and pdb's commands. ``q`` and Ctrl-C leave a usable kernel.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_console_e2e import KERNELS, Console, console, finish, open_console, prompt_re

__all__ = ["console"]  # the fixture, imported for pytest

pytestmark = pytest.mark.peer

#: pdb's prompt on Loom's kernel, ipdb's on ipykernel.
PDB_PROMPT = r"(\(Pdb\)|ipdb>)"


def _enter_block(c: Console, *lines: str) -> None:
    """Type a compound statement as a user does: the console indents the lines after the
    first, and a blank line runs the cell."""
    for line in lines:
        c.child.send(line + "\r")
    c.child.send("\r")


def _no_raw_arrow_codes(c: Console) -> None:
    shown = (c.tmp_path / "pty.log").read_text(errors="replace")
    for code in ("^[[A", "^[[B", "^[[C", "^[[D"):
        assert code not in shown, f"an arrow key printed its escape code {code}"


@pytest.mark.parametrize("kernel", KERNELS)
def test_debug_after_an_error_p_up_tab_arrows_q(
    kernel: str, tmp_path: Path, console: list[Console]
) -> None:
    c = open_console(console, tmp_path, "--kernel", kernel)
    c.kernel_pid(1)
    c.expect(prompt_re(2))
    _enter_block(c, "def f(y):", "zz_local_value = y * 2", "1/0")
    c.expect(prompt_re(3))
    c.run("f(21)")
    c.expect("ZeroDivisionError")
    c.expect(prompt_re(4))
    c.run("%debug")
    c.expect(PDB_PROMPT)
    c.run("p zz_local_value + 0")
    c.expect("42")
    c.expect(PDB_PROMPT)
    if kernel == "loom":
        c.child.send("p zz_loc\t")  # a local of the paused frame, completed by the console
        c.expect("al_value")
        c.child.send(" * 10\r")
        c.expect("420")
    else:
        c.child.send("whe\t")  # ipdb sends no names: pdb's commands complete
        c.expect("re")
        c.child.send("\r")
        c.expect("<module>")  # where's output (colours split its source lines)
    c.expect(PDB_PROMPT)
    c.child.send("p 6*9\x1b[D\x1b[D1\r")  # Left twice and an insert edit it: p 61*9
    c.expect("549")
    c.expect(PDB_PROMPT)
    c.child.send("\x1b[A\r")  # Up recalls that command (its echo is p 61*9, not 549)
    c.expect("549")
    c.expect(PDB_PROMPT)
    c.child.send("\x1b[A")  # Up recalls the last command, Down goes back: no escape codes
    c.child.send("\x1b[B")
    c.child.send("\x1b[D\x1b[C")  # Left, Right on an empty line
    c.run("up")
    c.expect("<module>")
    c.expect(PDB_PROMPT)
    c.run("q")
    c.expect(prompt_re(5))
    c.run("print('kernel' + ' usable')")
    c.expect("kernel usable")
    _no_raw_arrow_codes(c)
    finish(c)


def test_breakpoint_in_a_cell_then_continue(tmp_path: Path, console: list[Console]) -> None:
    # Loom's kernel only: ipykernel sends breakpoint() to debugpy, which waits for a
    # debug-protocol client (docs/console.md, "Debugging").
    c = open_console(console, tmp_path, "--kernel", "loom")
    c.kernel_pid(1)
    c.expect(prompt_re(2))
    _enter_block(
        c, "if True:", "zz_before = 6 * 7", "breakpoint()", "print('after', zz_before + 1)"
    )
    c.expect(r"\(Pdb\)")
    c.child.send("p zz_bef\t")
    c.expect("ore")
    c.child.send("\r")
    c.expect("42")
    c.expect(r"\(Pdb\)")
    c.run("c")
    c.expect("after 43")
    c.expect(prompt_re(3))
    finish(c)


@pytest.mark.parametrize("kernel", KERNELS)
def test_pdb_on_debugs_the_next_error_and_ctrl_c_leaves_a_usable_kernel(
    kernel: str, tmp_path: Path, console: list[Console]
) -> None:
    c = open_console(console, tmp_path, "--kernel", kernel)
    c.kernel_pid(1)
    c.expect(prompt_re(2))
    c.run("%pdb on")
    c.expect("Automatic pdb calling has been turned ON")
    c.expect(prompt_re(3))
    c.run("zz_v = 5; zz_v / 0")
    c.expect("ZeroDivisionError")
    c.expect(PDB_PROMPT)
    c.child.send("p zz_v")
    c.child.sendcontrol("c")
    c.expect("KeyboardInterrupt")
    if kernel == "loom":  # pdb's own answer to Ctrl-C: a new prompt, same frame
        c.expect(PDB_PROMPT)
        c.run("p zz_v * 3")
        c.expect("15")
        c.expect(PDB_PROMPT)
        c.run("q")
    # (IPython's debugger leaves on Ctrl-C.)
    c.expect(prompt_re(4))
    c.run("print('still' + ' here')")
    c.expect("still here")
    finish(c)
