"""Widgets and interactive figures give ipykernel's outputs and comm messages (issue 14).

One notebook, run by nbclient under ipykernel ("python3") and Loom's kernel: an ipywidgets
``IntSlider`` shown and then changed from the kernel, an ``ipywidgets.Output`` that captures
a print and a display, ``%matplotlib notebook`` (matplotlib's nbagg, through Loom's
``comm`` package support) and ``%matplotlib widget`` (ipympl, when it is installed). Each
cell's outputs, the comm messages each cell sends (type, target, data, metadata, how many
buffers) and the widget state nbclient saves in the notebook must be the same.

Normalised: widget model ids and nbagg's figure ids are random, so each becomes ``<id N>``
in order of first appearance; PNG bytes of a figure are compared by presence. nbagg's and
ipympl's messages are matplotlib's own code on both sides, so they are compared in full.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
from pathlib import Path
from typing import Any

import nbformat as _nbformat
import pytest
from test_ipykernel_parity import Client

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(
        importlib.util.find_spec("ipywidgets") is None, reason="needs ipywidgets (test extra)"
    ),
]
nbformat: Any = _nbformat

KERNELS = ("python3", "loom")
HAS_IPYMPL = importlib.util.find_spec("ipympl") is not None

#: (name, source), run in this order.
CELLS: list[tuple[str, str]] = [
    ("slider", "import ipywidgets as w\nslider = w.IntSlider(value=3, max=10)\nslider"),
    ("change from the kernel", "slider.value = 7\nslider.value"),
    (
        "output widget",
        "from IPython.display import display, Markdown\nout = w.Output()\ndisplay(out)\n"
        "with out:\n    print('inside')\n    display(Markdown('*md*'))\nprint('outside')",
    ),
    ("box", "w.VBox([slider, w.Button(description='go')])"),
    ("close", "slider.close()"),
    ("nbagg", "%matplotlib notebook\nimport matplotlib.pyplot as plt\nplt.figure()"),
    ("nbagg plot", "plt.plot([1, 2, 3])\nplt.show()"),
]
if HAS_IPYMPL:
    CELLS += [
        ("ipympl", "%matplotlib widget\nfig = plt.figure()\nplt.plot([3, 1])\nplt.show()"),
        ("ipympl value", "fig.canvas.toolbar_visible = False\nfig.canvas.toolbar_visible"),
    ]
NAMES = [name for name, _ in CELLS]

_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]+")
#: Model ids (32 hex digits) and nbagg's figure ids (UUIDs), alone or in IPY_MODEL_ refs;
#: jupyter_client's message ids (an Output widget's msg_id is its cell's request).
_ID = re.compile(
    r"\b[0-9a-f]{8}-[0-9a-f]{24}_\d+_\d+\b"
    r"|(?<![0-9a-f])[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}(?![0-9a-f])"
)


class RecordingClient(Client):
    """nbclient (waiting for replies in slices, see ``Client``), also keeping every comm
    message a cell's execution sent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.comm_messages: dict[int, list[dict[str, Any]]] = {}

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        if msg["msg_type"] in ("comm_open", "comm_msg", "comm_close"):
            content = msg["content"]
            self.comm_messages.setdefault(cell_index, []).append(
                {
                    "msg_type": msg["msg_type"],
                    "target_name": content.get("target_name"),
                    "data": content.get("data"),
                    "metadata": msg["metadata"],
                    "buffers": len(msg.get("buffers") or ()),
                }
            )
        return super().process_message(msg, cell, cell_index)


async def run(kernel: str, workdir: Path) -> tuple[Any, dict[int, list[dict[str, Any]]]]:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for _, source in CELLS]
    client = RecordingClient(
        nb,
        kernel_name=kernel,
        timeout=120,
        allow_errors=True,
        resources={"metadata": {"path": str(workdir)}},
    )
    await client.async_execute()
    return nb, client.comm_messages


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The notebook run on each kernel, both at once (each keeps about one core busy)."""
    workdirs = [tmp_path_factory.mktemp(kernel) for kernel in KERNELS]

    async def both() -> list[Any]:
        async with asyncio.timeout(100):  # under pytest-timeout's 120 s: names the stage
            return list(await asyncio.gather(*map(run, KERNELS, workdirs)))

    return dict(zip(KERNELS, asyncio.run(both()), strict=True))


class Ids:
    """Replaces each random id by ``<id N>``, N counting distinct ids in order of appearance."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            value = _ADDRESS.sub("0x…", value)
            return _ID.sub(lambda m: f"<id {self.seen.setdefault(m[0], len(self.seen))}>", value)
        if isinstance(value, dict):
            return {self(key): self(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self(item) for item in value]
        return value


def normalised(nb: Any, comms: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per cell, its outputs and comm messages, then the saved widget state; ids renamed in
    the order they appear, so the same structure gives the same names on both kernels."""
    ids = Ids()
    cells = {}
    for index, (name, cell) in enumerate(zip(NAMES, nb.cells, strict=True)):
        outputs = []
        for output in map(dict, cell.outputs):
            output.pop("execution_count", None)
            if output.get("output_type") == "error":
                output = {key: output[key] for key in ("output_type", "ename", "evalue")}
            outputs.append(output)
        # Comm messages first: ids are numbered as a front end meets them (comm_open first).
        messages = ids(comms.get(index, []))
        cells[name] = {"outputs": ids(outputs), "comms": _without_png(messages)}
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    return {"cells": cells, "widget state": ids(state.get("state", {}))}


def _without_png(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """nbagg's figure images (base64 data URLs in a comm_msg): by presence, not pixels."""
    for message in messages:
        data = message.get("data") or {}
        if isinstance(data.get("data"), str) and data["data"].startswith("data:image/png"):
            data["data"] = "<a PNG>"
    return messages


def test_every_cell_ran_without_error(runs: dict[str, Any]) -> None:
    for kernel in KERNELS:
        nb, _ = runs[kernel]
        errors = [
            (name, out.get("ename"), out.get("evalue"))
            for name, cell in zip(NAMES, nb.cells, strict=True)
            for out in cell.outputs
            if out.get("output_type") == "error"
        ]
        assert errors == [], kernel


def test_widgets_give_ipykernels_outputs_comm_messages_and_state(runs: dict[str, Any]) -> None:
    ipykernel, loom = (normalised(*runs[kernel]) for kernel in KERNELS)
    for name in NAMES:
        assert loom["cells"][name] == ipykernel["cells"][name], name
    assert loom["widget state"] == ipykernel["widget state"]


def test_the_slider_is_shown_opened_and_updated_over_comms(runs: dict[str, Any]) -> None:
    # What the comparison above rests on, checked on Loom's run: not two empty lists.
    loom = normalised(*runs["loom"])["cells"]
    (shown,) = loom["slider"]["outputs"]
    assert "application/vnd.jupyter.widget-view+json" in shown["data"]
    opened = [m for m in loom["slider"]["comms"] if m["msg_type"] == "comm_open"]
    assert {m["target_name"] for m in opened} == {"jupyter.widget"}
    assert {"msg_type": "comm_msg", "target_name": None, "metadata": {}, "buffers": 0} | {
        "data": {"method": "update", "state": {"value": 7}, "buffer_paths": []}
    } in loom["change from the kernel"]["comms"]
    assert [m["target_name"] for m in loom["nbagg"]["comms"] if m["msg_type"] == "comm_open"] == [
        "matplotlib"
    ]


def test_the_output_widget_captures_its_outputs(runs: dict[str, Any]) -> None:
    loom = normalised(*runs["loom"])
    # Outside the widget, only the print after it and the widget's own view.
    texts = [o.get("text") for o in loom["cells"]["output widget"]["outputs"]]
    assert texts == [None, "outside\n"]
    captured = [
        state["state"].get("outputs")
        for state in loom["widget state"].values()
        if state.get("model_name") == "OutputModel"
    ]
    assert captured == [
        [
            {"output_type": "stream", "name": "stdout", "text": "inside\n"},
            {
                "output_type": "display_data",
                "data": {
                    "text/plain": "<IPython.core.display.Markdown object>",
                    "text/markdown": "*md*",
                },
                "metadata": {},
            },
        ]
    ]
