"""Issue 15's defects at the prompt, through the real console and real kernels.

See ``_console_harness.py``: keys go through a pipe, output into a
``StringIO``. Each test names the item of issue 15 it covers.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from _console_harness import KERNELS, console_on, run
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from kernel import connect_client
from shell.console._completer import KernelCompleter
from shell.console._paste import strip_prompts

pytestmark = pytest.mark.peer


# -- item 12: %cpaste strips prompts ---------------------------------------------------


def test_strip_prompts_removes_python_and_ipython_prompts_only_from_prompted_text() -> None:
    assert strip_prompts([">>> def f(x):", "...     return x", "...", ">>> f(1)"]) == [
        "def f(x):",
        "    return x",
        "",
        "f(1)",
    ]
    assert strip_prompts(["In [3]: for i in x:", "   ...:     f(i)", "   ...: "]) == [
        "for i in x:",
        "    f(i)",
        "",
    ]
    assert strip_prompts(["x = ...", "y = 1"]) == ["x = ...", "y = 1"]  # no prompt
    assert strip_prompts([]) == []


@pytest.mark.parametrize("kernel", KERNELS)
def test_cpaste_strips_prompts(kernel: str) -> None:
    async def scenario() -> None:
        async with console_on(kernel) as h:
            h.send("%cpaste\r")
            await h.until(lambda: h.ui._aux is not None and h.ui._aux.app.is_running)
            for line in [">>> def f(x):", "...     return x * 2", "...", ">>> print('f', f(21))"]:
                h.send(line + "\r")
            h.send("--\r")
            await h.until(lambda: h.at_prompt(2))
            assert "f 42" in h.lines()
            assert not any("Error" in line for line in h.lines()), h.output

    run(scenario)


# -- item 16: completion offers only names that exist ----------------------------------


def test_tab_offers_only_names_that_exist_on_loom_kernel() -> None:
    """jedi offers ``AbstractSet`` (its builtins stub imports it) in an empty session.

    Loom's kernel only: ipykernel's completer (IPython's jedi use) offers it too, and
    the console cannot know the kernel's namespace.
    """

    async def completions(completer: KernelCompleter, text: str) -> list[str]:
        found = completer.get_completions_async(Document(text), CompleteEvent(True))
        return [completion.text async for completion in found]

    async def scenario() -> None:
        async with console_on("loom") as h:
            completer = KernelCompleter(h.console.link)
            assert await completions(completer, "Abs") == []
            assert await completions(completer, "ab") == ["abs"]
            h.send("AbstractSet = 5\r")
            await h.until(lambda: h.at_prompt(2))
            assert await completions(completer, "Abs") == ["AbstractSet"]

    run(scenario)


# -- item 21: malformed but signed output ----------------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)
def test_malformed_output_is_one_line_and_the_console_goes_on(kernel: str) -> None:
    async def scenario() -> None:
        async with console_on(kernel) as h:
            h.send("display({'image/png': 'not base64!', 'text/plain': 'img'}, raw=True)\r")
            await h.until(lambda: h.at_prompt(2))
            if kernel == "python3":  # ipykernel's session signs whatever it is given
                h.send(
                    "k = get_ipython().kernel; k.session.send(k.iopub_socket, 'display_data', "
                    "{'data': 'oops', 'metadata': {}}, parent=k.get_parent());\r"
                )
                await h.until(lambda: h.at_prompt(3))
            h.send("print('still' + ' here')\r")
            await h.until(lambda: "still here" in h.output)
            lines = h.lines()
            assert "[image/png not shown: its data is not valid base64]" in lines
            if kernel == "python3":
                assert "[malformed output: its data is a str, not a MIME bundle]" in lines
            assert "Traceback" not in h.output
            assert "could not display" not in h.output

    run(scenario)


# -- item 11: another client's output goes above our waiting input ---------------------


@pytest.mark.parametrize("kernel", KERNELS)
def test_other_clients_output_goes_above_our_input_while_our_cell_waits(kernel: str) -> None:
    """Our cell waits behind another client's: their output used to appear under our
    ``In [N]:`` line, as if our cell had printed it."""

    async def scenario() -> None:
        async with console_on(kernel, ansi=True) as h:
            async with connect_client(h.console.link.client.info) as other:
                theirs = asyncio.ensure_future(
                    other.execute(
                        # One write per line: print()'s separate "\n" could come late.
                        "import sys, time; sys.stdout.write('other' + '-1\\n'); "
                        "time.sleep(1.5); sys.stdout.write('other' + '-2\\n'); 40 + 2"
                    )
                )
                try:
                    await h.until(lambda: "other-1" in h.output)  # theirs runs
                    h.send("print('mi' + 'ne')\r")  # ours waits for it
                    await h.until(lambda: "mine" in h.output)
                    await asyncio.wait_for(theirs, 10)
                finally:
                    theirs.cancel()
            out = h.output
            echo = "In [2]: \x1b[0mprint('mi' + 'ne')\n"  # ours, drawn again below theirs
            assert re.search(r"\x1b\[\d+F\x1b\[Jother-2", out), out  # our input erased first
            last_echo = out.rindex(echo)
            assert out.index("other-2") < last_echo
            assert out.index("Out[1]: ") < last_echo
            assert out.index("mine") > last_echo
            await h.until(lambda: h.at_prompt(3))

    run(scenario)
