"""The same notebook run by nbclient on ipykernel ("python3") and on Loom's kernel gives the
same outputs, cell by cell.

What is compared, after normalising what legitimately differs between two runs (memory
addresses, the chunking of a stream into messages, figure pixels):

- IPython's display API (``IPython.display``: ``display``, ``update_display``,
  ``clear_output``, ``DisplayHandle`` and the rich objects) gives the same MIME bundles;
- a matplotlib figure appears as ``image/png`` without ``%matplotlib inline``;
- ``%load_ext autoreload`` + ``%autoreload 2`` picks up a module edited between cells;
- ``%xmode``, ``%%html``, ``%%markdown``, ``%%latex``, ``%%svg``, ``%%javascript``,
  ``%%script`` (``--bg`` too), ``%timeit -o`` and plain objects' reprs;
- a ``history_request`` for the current session with ``output=True``.

Both kernels run in their own temporary directory (the autoreload cells write a module
there). Loom's error tracebacks have their own layout in the default ``Context`` mode, so
errors are compared by name and value, and in full only in IPython's ``Plain`` and
``Minimal`` modes, which both kernels lay out as Python does.
"""

from __future__ import annotations

import asyncio
import queue
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat as _nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.peer
#: nbformat and jupyter_client's clients have no type hints; typed as Any for strict mypy.
nbformat: Any = _nbformat

KERNELS = ("python3", "loom")
PNG = (
    "b'\\x89PNG\\r\\n\\x1a\\n\\x00\\x00\\x00\\rIHDR\\x00\\x00\\x00\\x01\\x00\\x00\\x00\\x01"
    "\\x08\\x06\\x00\\x00\\x00\\x1f\\x15\\xc4\\x89'"
)
MODULE = "parity_edited_module"

#: (name, source): run in this order by both kernels.
CELLS: list[tuple[str, str]] = [
    ("import display", "from IPython.display import *\nfrom IPython.display import display"),
    ("markdown", "display(Markdown('# Title'))"),
    (
        "html latex svg",
        "display(HTML('<b>x</b>'), Latex('$x^2$'),\n"
        "        SVG('<svg xmlns=\"http://www.w3.org/2000/svg\"/>'))",
    ),
    ("json result", "JSON({'a': [1, 2]}, expanded=True)"),
    ("javascript result", "Javascript('console.log(1)')"),
    ("iframe result", "IFrame('https://example.com', 300, 200)"),
    ("image result", f"Image(data={PNG})"),
    ("image metadata", f"display(Image(data={PNG}, width=10, height=20))"),
    ("pretty", "Pretty('plain text')"),
    ("update display", "h = display(Markdown('a'), display_id=True)\nh.update(Markdown('b'))"),
    ("update display by id", "display('x', display_id='d1')\nupdate_display('y', display_id='d1')"),
    ("clear output", "print('gone')\nclear_output()\ndisplay(HTML('<i>kept</i>'))"),
    ("raw display", "display({'text/plain': 'raw', 'text/html': '<p>raw</p>'}, raw=True)"),
    (
        "repr methods",
        "class Rich:\n    def _repr_html_(self):\n        return '<b>rich</b>'\n"
        "    def _repr_markdown_(self):\n        return ('*rich*', {'k': 1})\nRich()",
    ),
    (
        "mimebundle",
        "class Bundle:\n    def _repr_mimebundle_(self, include=None, exclude=None):\n"
        "        return {'text/plain': 'b', 'application/vnd.loom.thing+json': {'n': 1}}\n"
        "Bundle()",
    ),
    (
        "ipython display method",
        "class Self:\n    def _ipython_display_(self):\n"
        "        display(HTML('<u>self</u>'))\nSelf()",
    ),
    ("plain object", "class Plain:\n    pass\nPlain()"),
    ("reprs", "def f(x, y=2):\n    pass\n[Plain, int, len, f, {'b', 'a'}, (1,), frozenset()]"),
    ("long list", "list(range(40))"),
    ("long dict", "{f'key{i}': 'v' * i for i in range(12)}"),
    (
        "collections",
        "import collections\n(collections.OrderedDict(a=1), collections.Counter('aab'),\n"
        " collections.defaultdict(list))",
    ),
    ("figure", "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3]);"),
    ("figure show", "plt.plot([3, 2, 1])\nplt.show()"),
    ("figure value", "fig, ax = plt.subplots()\nax.plot([1, 2]);\nplt.close(fig)\nfig"),
    ("empty figure", "plt.figure();"),
    (
        "write module",
        f"%%writefile {MODULE}.py\ndef f():\n    return 'first'\n"
        "class C:\n    def m(self):\n        return 'first'\n",
    ),
    ("load autoreload", "%load_ext autoreload\n%autoreload 2"),
    ("import module", f"import {MODULE}\nfrom {MODULE} import f\nobj = {MODULE}.C()\nf(), obj.m()"),
    (
        "edit module",
        f"%%writefile {MODULE}.py\ndef f():\n    return 'second'\n"
        "class C:\n    def m(self):\n        return 'second'\n",
    ),
    ("edited module", f"f(), obj.m(), {MODULE}.f()"),
    ("aimport", "%aimport"),
    ("xmode minimal", "%xmode Minimal"),
    ("minimal error", "raise ValueError('bad') from KeyError('why')"),
    ("xmode plain", "%xmode Plain"),
    ("plain error", "def g():\n    return 1 / 0\ng()"),
    ("xmode context", "%xmode Context"),
    ("context error", "g()"),
    ("html magic", "%%html\n<b>bold</b>"),
    ("markdown magic", "%%markdown\n# Heading\n*text*"),
    ("latex magic", "%%latex\n$e^{i\\pi} + 1 = 0$"),
    (
        "svg magic",
        "%%svg\n<svg xmlns='http://www.w3.org/2000/svg'><rect width='1' height='1'/></svg>",
    ),
    ("javascript magic", "%%javascript\nconsole.log('hi')"),
    ("js magic", "%%js\nconsole.log('hi')"),
    ("script magic", "%%script python3\nimport sys\nprint('from a script', sys.version_info[0])"),
    ("script stores output", "%%script --out out_text python3\nprint('stored')"),
    ("script output", "out_text"),
    ("bash magic", "%%bash\necho one\necho two"),
    ("bash stderr", "%%bash\necho oops >&2"),
    (
        "script bg",
        "%%script --bg --out bg_out --err bg_err --proc bg_proc bash\n"
        "echo 'from the background'\necho 'an error' >&2\nexit 3",
    ),
    (
        "script bg result",
        "await bg_proc.wait()\n"
        "(await bg_out.read()).decode(), (await bg_err.read()).decode(), bg_proc.returncode",
    ),
    ("killbgscripts", "%killbgscripts"),
    (
        "timeit result",
        "r = %timeit -o -q -n 3 -r 2 sum(range(10))\n"
        "r.loops, r.repeat, len(r.all_runs), len(r.timings)",
    ),
    ("timeit repr", "str(r).endswith('per loop (mean ± std. dev. of 2 runs, 3 loops each)')"),
]

NAMES = [name for name, _ in CELLS]
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]+")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FIGURE_MIMES = ("image/png", "image/svg+xml")


async def run_notebook(kernel: str, workdir: Path) -> Any:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for _, src in CELLS])
    return await execute_in_async(nb, kernel, workdir)


class Client(NotebookClient):
    """nbclient, waiting for a cell's reply in slices of :data:`REPLY_SLICE` seconds.

    nbclient mimics a page for ipywidgets' ``Output``: it sends the widget's outputs back to
    the kernel on the shell socket while another task waits on that socket for the cell's
    reply. Under load that send can take the socket's (edge-triggered) readable event, and
    the wait then sleeps until nbclient's cell timeout although the reply is there: seen
    with ipykernel (4 runs in 12 of nbclient's own Output.ipynb stalled 20 s) and Loom's
    kernel alike. Waiting in slices polls the socket again, so a missed event costs at most
    a slice; the cell timeout is kept."""

    async def async_start_new_kernel_client(self) -> Any:
        kc = await super().async_start_new_kernel_client()
        channel = kc.shell_channel
        get_msg = channel.get_msg

        async def get_msg_in_slices(timeout: float | None = None) -> Any:
            loop = asyncio.get_running_loop()
            deadline = None if timeout is None else loop.time() + timeout
            while True:
                left = REPLY_SLICE if deadline is None else max(0.0, deadline - loop.time())
                try:
                    return await get_msg(timeout=min(REPLY_SLICE, left))
                except queue.Empty:
                    if deadline is not None and loop.time() >= deadline:
                        raise

        channel.get_msg = get_msg_in_slices
        return kc


#: Seconds: see :class:`Client`.
REPLY_SLICE = 0.5


async def execute_in_async(nb: Any, kernel: str, workdir: Path) -> Any:
    """Run every cell of ``nb`` with nbclient on ``kernel``, errors kept as outputs; a
    coroutine, so that both kernels can run at once."""
    client = Client(
        nb,
        kernel_name=kernel,
        timeout=120,
        allow_errors=True,
        resources={"metadata": {"path": str(workdir)}},
    )
    await client.async_execute()
    return nb


#: For the notebook on both kernels at once: under pytest-timeout's 120 s, so that a hang
#: fails naming the stage.
BOTH_TIMEOUT_S = 100


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The notebook run on each kernel, both at once (each keeps about one core busy)."""
    workdirs = [tmp_path_factory.mktemp(kernel) for kernel in KERNELS]

    async def both() -> list[Any]:
        async with asyncio.timeout(BOTH_TIMEOUT_S):
            runs = (run_notebook(k, w) for k, w in zip(KERNELS, workdirs, strict=True))
            return list(await asyncio.gather(*runs))

    return dict(zip(KERNELS, asyncio.run(both()), strict=True))


def normalise(output: dict[str, Any]) -> dict[str, Any]:
    """One output with addresses masked, figures reduced to their presence, ANSI removed."""
    out = {key: value for key, value in output.items() if key != "execution_count"}
    if "data" in out:
        data = dict(out["data"])
        for mime, value in data.items():
            if isinstance(value, str):
                value = _ADDRESS.sub("0x…", value)
            if mime in _FIGURE_MIMES and data.get("text/plain", "").startswith("<Figure"):
                value = f"<a {mime} figure>"
            data[mime] = value
        out["data"] = data
    if out.get("output_type") == "error":
        out["traceback"] = [_ANSI.sub("", line) for line in out["traceback"]]
    if out.get("output_type") == "stream":
        out["text"] = _ADDRESS.sub("0x…", out["text"])
    return out


def outputs(nb: Any, name: str) -> list[dict[str, Any]]:
    """The normalised outputs of cell ``name``, consecutive text of one stream joined."""
    index = NAMES.index(name)
    merged: list[dict[str, Any]] = []
    for output in map(normalise, map(dict, nb.cells[index].outputs)):
        last = merged[-1] if merged else None
        if (
            last
            and last["output_type"] == output["output_type"] == "stream"
            and (last["name"] == output["name"])
        ):
            last["text"] += output["text"]
        else:
            merged.append(output)
    return merged


def same(notebooks: dict[str, Any], *names: str) -> Iterator[list[dict[str, Any]]]:
    """Assert each named cell has the same outputs under both kernels; yield Loom's."""
    for name in names:
        expected, actual = (outputs(notebooks[kernel], name) for kernel in KERNELS)
        assert actual == expected, name
        yield actual


def test_both_notebooks_ran_every_cell(notebooks: dict[str, Any]) -> None:
    for nb in notebooks.values():
        assert [cell.execution_count for cell in nb.cells] == list(range(1, len(CELLS) + 1))


def test_ipython_display_objects_give_ipykernels_mime_bundles(notebooks: dict[str, Any]) -> None:
    names = NAMES[NAMES.index("markdown") : NAMES.index("ipython display method") + 1]
    results = dict(zip(names, same(notebooks, *names), strict=True))
    assert results["markdown"][0]["data"] == {
        "text/markdown": "# Title",
        "text/plain": "<IPython.core.display.Markdown object>",
    }
    assert results["update display"][0]["data"]["text/markdown"] == "b"
    assert [o["data"]["text/html"] for o in results["clear output"]] == ["<i>kept</i>"]
    assert results["ipython display method"][0]["data"]["text/html"] == "<u>self</u>"


def test_plain_objects_print_as_ipythons_pretty_printer_does(notebooks: dict[str, Any]) -> None:
    plain, *_, collections = same(
        notebooks, "plain object", "reprs", "long list", "long dict", "collections"
    )
    assert plain[0]["data"]["text/plain"] == "<__main__.Plain at 0x…>"
    assert collections[0]["data"]["text/plain"].startswith("(OrderedDict([('a', 1)]),")


def test_figures_appear_without_matplotlib_inline(notebooks: dict[str, Any]) -> None:
    shown, show, value, empty = same(
        notebooks, "figure", "figure show", "figure value", "empty figure"
    )
    assert shown == [
        {
            "output_type": "display_data",
            "metadata": {},
            "data": {
                "image/png": "<a image/png figure>",
                "text/plain": shown[0]["data"]["text/plain"],
            },
        }
    ]
    assert "image/png" in show[0]["data"]
    assert "image/png" in value[0]["data"]  # a figure as a cell's value is drawn too
    assert "image/png" not in empty[0]["data"]  # nothing drawn: text only, as IPython


def test_autoreload_picks_up_a_module_edited_between_cells(notebooks: dict[str, Any]) -> None:
    *_, before, _, after, aimport = same(
        notebooks,
        "write module",
        "load autoreload",
        "import module",
        "edit module",
        "edited module",
        "aimport",
    )
    assert before[0]["data"]["text/plain"] == "('first', 'first')"
    assert after[0]["data"]["text/plain"] == "('second', 'second', 'second')"
    assert aimport[0]["text"].startswith("Modules to reload:\nall-except-skipped")


def test_xmode_plain_and_minimal_lay_errors_out_as_ipython(notebooks: dict[str, Any]) -> None:
    _, minimal, _, plain = same(
        notebooks, "xmode minimal", "minimal error", "xmode plain", "plain error"
    )
    assert minimal[0]["traceback"] == ["ValueError: bad\n"]
    assert plain[0]["traceback"][0] == "Traceback (most recent call last):\n"
    loom = outputs(notebooks["loom"], "context error")
    ipykernel = outputs(notebooks["python3"], "context error")
    assert [(o["ename"], o["evalue"]) for o in loom] == [
        (o["ename"], o["evalue"]) for o in ipykernel
    ]


def test_display_cell_magics_give_ipykernels_outputs(notebooks: dict[str, Any]) -> None:
    html, markdown, *_ = same(
        notebooks,
        "html magic",
        "markdown magic",
        "latex magic",
        "svg magic",
        "javascript magic",
        "js magic",
    )
    assert html[0]["data"]["text/html"] == "<b>bold</b>\n"
    assert markdown[0]["data"]["text/markdown"] == "# Heading\n*text*\n"


def test_script_magics_give_ipykernels_outputs(notebooks: dict[str, Any]) -> None:
    script, stored, value, bash, stderr = same(
        notebooks,
        "script magic",
        "script stores output",
        "script output",
        "bash magic",
        "bash stderr",
    )
    assert script == [{"output_type": "stream", "name": "stdout", "text": "from a script 3\n"}]
    assert stored == []
    assert value[0]["data"]["text/plain"] == "'stored\\n'"
    assert bash == [{"output_type": "stream", "name": "stdout", "text": "one\ntwo\n"}]
    assert stderr == [{"output_type": "stream", "name": "stderr", "text": "oops\n"}]


def test_script_bg_gives_ipythons_awaitable_streams_and_process(
    notebooks: dict[str, Any],
) -> None:
    started, result, killed = same(notebooks, "script bg", "script bg result", "killbgscripts")
    assert started == []  # the cell ends at once, showing nothing
    assert result[0]["data"]["text/plain"] == "('from the background\\n', 'an error\\n', 3)"
    assert killed[0]["text"] == "All background processes were killed.\n"


def test_timeit_result_has_ipythons_shape(notebooks: dict[str, Any]) -> None:
    result, text = same(notebooks, "timeit result", "timeit repr")
    assert result[0]["data"]["text/plain"] == "(3, 2, 2, 2)"
    assert text[0]["data"]["text/plain"] == "True"


# -- history ------------------------------------------------------------------------------


async def _history_with_outputs(kernel: str, workdir: Path) -> list[list[Any]]:
    """Run three cells, then ask for this session's history with outputs."""
    cells = ["6 * 7", "x = 1", "'text'"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in cells])
    client = NotebookClient(
        nb, kernel_name=kernel, timeout=60, resources={"metadata": {"path": str(workdir)}}
    )
    async with client.async_setup_kernel():
        for index, cell in enumerate(nb.cells):
            await client.async_execute_cell(cell, index)
        kc: Any = client.kc
        msg_id = kc.history(
            hist_access_type="range", session=0, start=1, stop=None, raw=True, output=True
        )
        async with asyncio.timeout(30):
            while True:
                reply = await kc.get_shell_msg(timeout=30)
                if reply["parent_header"].get("msg_id") == msg_id:
                    break
    # ipykernel numbers the current session 0, Loom with its absolute number.
    return [entry[1:] for entry in reply["content"]["history"]]


def test_history_range_returns_outputs_of_the_current_session(tmp_path: Path) -> None:
    histories = {kernel: asyncio.run(_history_with_outputs(kernel, tmp_path)) for kernel in KERNELS}
    assert histories["loom"] == histories["python3"]
    assert histories["loom"] == [
        [1, ["6 * 7", "42"]],
        [2, ["x = 1", None]],
        [3, ["'text'", "'text'"]],
    ]
