"""How ``%px`` shows engines' output: the policy as pure functions, and the blocking runner."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import pytest

from kernel.protocol._message import NO_EXECUTE_INPUT
from parallel import CompositeError, EngineError, RemoteError
from parallel.magics import EngineOutput, PxError, group_errors, render_outputs
from parallel.magics._px_output import (
    PxRich,
    PxText,
    StreamLabeller,
    format_engines,
    render_errors,
)
from parallel.magics._px_run import run_blocking, submit_px

TB = ["\x1b[31mZeroDivisionError\x1b[0m  Traceback", "Cell In[4], line 1", "ZeroDivisionError: x"]


def _text(items: Sequence[object], stream: str = "stdout") -> str:
    return "".join(i.text for i in items if isinstance(i, PxText) and i.stream == stream)


def _result(engine: int, text: str, count: int = 3) -> dict[str, object]:
    return {"execution_count": count, "data": {"text/plain": text}, "metadata": {}}


def test_results_are_labelled_with_engine_and_cell() -> None:
    records = [EngineOutput(e, result=_result(e, "42")) for e in range(4)]
    assert _text(render_outputs(records)) == "".join(f"Out[{e}:3]: 42\n" for e in range(4))


def test_a_multiline_value_starts_below_its_label() -> None:
    out = render_outputs([EngineOutput(1, result=_result(1, "[1,\n 2]", 5))])
    assert _text(out) == "Out[1:5]:\n[1,\n 2]\n"


def test_rich_values_keep_their_mime_types_and_get_the_label_in_text() -> None:
    content = {"execution_count": 2, "data": {"text/plain": "df", "text/html": "<b>df</b>"}}
    (item,) = render_outputs([EngineOutput(3, result=content)])
    assert isinstance(item, PxRich)
    assert item.data == {"text/plain": "Out[3:2]: df", "text/html": "<b>df</b>"}
    assert item.metadata == {"engine": 3}


def test_streams_are_grouped_by_engine_by_default() -> None:
    records = [
        EngineOutput(0, stdout="a\nb\n", stderr="warn\n", result=_result(0, "1")),
        EngineOutput(1, stdout="c\n", result=_result(1, "1")),
    ]
    out = render_outputs(records)
    assert _text(out) == "[stdout:0] a\nb\nOut[0:3]: 1\n[stdout:1] c\nOut[1:3]: 1\n"
    assert _text(out, "stderr") == "[stderr:0] warn\n"


def test_grouping_by_type_shows_all_stdout_then_all_results() -> None:
    records = [
        EngineOutput(0, stdout="a\n", result=_result(0, "1")),
        EngineOutput(1, stdout="b", result=_result(1, "2")),
    ]
    out = render_outputs(records, "type")
    # engine 1's text did not end its line: the results start on a new one
    assert _text(out) == "[stdout:0] a\n[stdout:1] b\nOut[0:3]: 1\nOut[1:3]: 2\n"


def test_grouping_in_order_collates_the_nth_display_of_every_engine() -> None:
    def shown(text: str) -> dict[str, object]:
        return {"data": {"text/plain": text}, "metadata": {}}

    records = [
        EngineOutput(0, displays=[shown("0a"), shown("0b")]),
        EngineOutput(1, displays=[shown("1a"), shown("1b")]),
    ]
    order = _text(render_outputs(records, "order"))
    assert order == "[output:0] 0a\n[output:1] 1a\n[output:0] 0b\n[output:1] 1b\n"
    by_type = _text(render_outputs(records, "type"))
    assert by_type == "[output:0] 0a\n[output:0] 0b\n[output:1] 1a\n[output:1] 1b\n"
    with pytest.raises(ValueError, match="groupby"):
        render_outputs(records, "colour")


def test_streamed_output_is_labelled_only_when_its_source_changes() -> None:
    labeller = StreamLabeller()
    pieces = [
        labeller.label("stdout", 0, "one\n"),
        labeller.label("stdout", 0, "two\n"),
        labeller.label("stdout", 1, "half"),
        labeller.label("stdout", 2, "other\n"),
    ]
    text = "".join(p.text for p in pieces if p is not None)
    assert text == "[stdout:0] one\ntwo\n[stdout:1] half\n[stdout:2] other\n"
    assert labeller.label("stdout", 2, "") is None
    # once streamed, only the values are rendered at the end
    out = render_outputs([EngineOutput(2, stdout="other\n", result=_result(2, "7"))], "engine",
                         labeller, streamed=True)  # fmt: skip
    assert _text(out) == "Out[2:3]: 7\n"


def test_the_same_error_on_several_engines_is_shown_once() -> None:
    records = [
        EngineOutput(e, error=RemoteError("ZeroDivisionError", "x", [*TB[:1], f"Cell In[{e}]"]))
        for e in range(4)
    ]
    (group,) = group_errors(records)
    assert group.engines == (0, 1, 2, 3)
    assert group.headline == "ZeroDivisionError on engines 0-3"
    lines = render_errors([group])
    assert lines[0] == "ZeroDivisionError on engines 0-3:"
    assert sum("Traceback" in line for line in lines) == 1


def test_different_errors_make_separate_groups_in_engine_order() -> None:
    records = [
        EngineOutput(0, error=RemoteError("KeyError", "'k'", ["KeyError: 'k'"])),
        EngineOutput(1, error=RemoteError("ZeroDivisionError", "x", TB)),
        EngineOutput(2),
        EngineOutput(3, error=RemoteError("ZeroDivisionError", "x", TB)),
    ]
    groups = group_errors(records)
    assert [g.headline for g in groups] == [
        "KeyError on engine 0",
        "ZeroDivisionError on engines 1, 3",
    ]


def test_lost_engines_are_one_line() -> None:
    records = [
        EngineOutput(1, error=EngineError("engine 1 died", 1)),
        EngineOutput(3, error=EngineError("engine 3 died", 3)),
    ]
    (group,) = group_errors(records)
    assert render_errors([group]) == ["engines 1, 3 lost (died)"]


def test_px_error_is_a_composite_error_rendered_grouped() -> None:
    errors = [RemoteError("ZeroDivisionError", "x", TB, e) for e in range(2)]
    records = [EngineOutput(e, error=err) for e, err in enumerate(errors)]
    exc = PxError(group_errors(records), errors)
    assert isinstance(exc, CompositeError)
    assert exc.elist == errors
    assert str(exc) == "ZeroDivisionError on engines 0, 1"
    assert exc._render_traceback_()[0] == "ZeroDivisionError on engines 0, 1:"


@pytest.mark.parametrize(
    ("ids", "text"),
    [
        ([2], "engine 2"),
        ([0, 2], "engines 0, 2"),
        ([0, 1], "engines 0, 1"),
        ([3, 0, 1, 2], "engines 0-3"),
        ([0, 1, 2, 5, 7, 8, 9], "engines 0-2, 5, 7-9"),
    ],
)
def test_engine_lists_read_as_ranges(ids: list[int], text: str) -> None:
    assert format_engines(ids) == text


def test_a_coroutine_that_never_suspends_runs_without_a_loop() -> None:
    async def blocking_steps() -> int:
        return 6 * 7

    assert run_blocking(blocking_steps()) == 42

    async def needs_a_loop() -> None:
        import asyncio

        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="event loop"):
        run_blocking(needs_a_loop())


class _SendingClient:
    """What ``submit_px`` uses of a client: the requests it sends are recorded."""

    def __init__(self, ids: list[int]) -> None:
        self._ids = ids
        self._pump = None
        self.sent: list[tuple[int, str, dict[str, Any], dict[str, Any] | None]] = []

    def resolve_targets(self, targets: object) -> list[int]:
        return self._ids if targets == "all" else [cast(int, targets)]

    def send_requests(
        self, engines: list[int], msg_type: str, content: dict[str, Any], **kw: Any
    ) -> list[str]:
        self.sent.extend((engine, msg_type, content, kw.get("metadata")) for engine in engines)
        return [f"m{engine}" for engine in engines]

    def track(self, result: object) -> object:
        return result


class _View:
    def __init__(self, client: _SendingClient) -> None:
        self.client = client
        self.targets = "all"


def test_px_asks_the_engines_for_a_numbered_cell_without_an_execute_input_echo() -> None:
    client = _SendingClient([0, 1, 2])
    result, ids = submit_px(cast(Any, _View(client)), None, "a = 1")
    assert ids == [0, 1, 2]
    assert result.msg_ids == ["m0", "m1", "m2"]
    for engine, (sent_to, msg_type, content, metadata) in enumerate(client.sent):
        assert (sent_to, msg_type) == (engine, "execute_request")
        # numbered and in the history (Out[e:n]), as ipyparallel's %px...
        assert (content["code"], content["silent"], content["store_history"]) == (
            "a = 1",
            False,
            True,
        )
        # ...but no echo of the code: nothing shows it, and it was a message per engine.
        assert metadata == {NO_EXECUTE_INPUT: True}
