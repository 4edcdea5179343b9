"""Issue 15's defects at the prompt, through the real console and real kernels.

See ``_console_harness.py``: keys go through a pipe, output into a
``StringIO``. Each test names the item of issue 15 it covers.
"""

from __future__ import annotations

import pytest
from _console_harness import KERNELS, console_on, run
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

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
