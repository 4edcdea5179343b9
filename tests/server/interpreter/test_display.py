"""Rich display: MIME bundles from objects, and the messages display() & co. publish."""

from __future__ import annotations

import base64
import collections
import json
import re
import types
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel.server.interpreter._display import Display, DisplayHandle, format_object
from kernel.server.interpreter._display_objects import (
    HTML,
    JSON,
    SVG,
    Image,
    Javascript,
    Latex,
    Markdown,
    Pretty,
)

# IPython's own pretty printer, the reference (imported at collection, before any Loom
# interpreter exists in this process).
ipython_pretty = pytest.importorskip("IPython.lib.pretty").pretty

PNG = b"\x89PNG\r\n\x1a\n-fake-png-bytes"
JPEG = b"\xff\xd8\xff\xe0-fake-jpeg-bytes"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Recorder:
    """A DisplayPublisher that keeps what it was asked to publish."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []

    def publish(self, msg_type: str, content: dict[str, Any]) -> None:
        self.messages.append((msg_type, content))


def _display() -> tuple[Display, Recorder]:
    recorder = Recorder()
    return Display(recorder), recorder


# -- text/plain ----------------------------------------------------------------------------


def test_plain_text_is_repr() -> None:
    assert format_object(42) == ({"text/plain": "42"}, {})
    assert format_object("hi") == ({"text/plain": "'hi'"}, {})


def test_short_container_stays_on_one_line() -> None:
    data, _ = format_object([1, 2, 3])
    assert data == {"text/plain": "[1, 2, 3]"}


def test_long_container_is_pretty_printed_at_width_79() -> None:
    value = {f"key{i}": list(range(i)) for i in range(12)}
    data, _ = format_object(value)
    text = data["text/plain"]
    assert text == ipython_pretty(value)
    assert "\n" in text
    assert text.index("key0") < text.index("key11")  # insertion order kept, not sorted


def test_repr_that_raises_falls_back_to_object_repr() -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    data, metadata = format_object(Broken())
    assert data["text/plain"].startswith("<")
    assert "Broken object at 0x" in data["text/plain"]
    assert metadata == {}


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        max_leaves=30,
    )
)
@settings(database=None)  # keep the example database out of the working tree
def test_plain_text_of_any_json_value_is_what_ipython_prints(value: object) -> None:
    data, metadata = format_object(value)
    assert set(data) == {"text/plain"}
    assert data["text/plain"] == ipython_pretty(value)
    json.dumps(data)
    assert metadata == {}


class Plain:
    pass


class Pretty2:
    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        with p.group(4, "Pretty2(", ")"):
            p.text("a,")
            p.breakable()
            p.pretty(list(range(30)))


def _function(x: int, *args: int, key: str = "k") -> None:
    pass


def _cycle() -> list[object]:
    loop: list[object] = [1]
    loop.append(loop)
    return loop


PRETTY_CASES = [
    Plain(),
    Plain,
    int,
    len,
    _function,
    {"b", "a", "c"},
    frozenset({3, 1}),
    set(),
    (1,),
    list(range(2000)),
    {f"k{i}": "v" * i for i in range(12)},
    [[i] * i for i in range(12)],
    collections.OrderedDict(a=1),
    collections.Counter("aab"),
    collections.defaultdict(list, {"x": [1]}),
    collections.deque([1, 2], maxlen=3),
    ValueError("x", 2),
    re.compile("a+", re.IGNORECASE),
    types.SimpleNamespace(a=1, b=[1] * 40),
    Pretty2(),
    _cycle(),
    super(Plain, Plain()),
    Plain().__sizeof__,
    "x" * 200,
    b"bytes",
    range(3),
]


@pytest.mark.parametrize("value", PRETTY_CASES, ids=lambda v: type(v).__name__)
def test_plain_text_is_what_ipython_pretty_printer_writes(value: object) -> None:
    # IPython's PlainTextFormatter output, which ipykernel sends as text/plain.
    assert format_object(value)[0]["text/plain"] == ipython_pretty(value)


def test_objects_without_their_own_repr_show_as_ipython_shows_them() -> None:
    obj = Plain()
    assert format_object(obj)[0]["text/plain"] == f"<{__name__}.Plain at {hex(id(obj))}>"


# -- _repr_*_ methods ----------------------------------------------------------------------

TEXT_REPRS = [
    ("_repr_html_", "text/html", "<b>x</b>"),
    ("_repr_markdown_", "text/markdown", "**x**"),
    ("_repr_svg_", "image/svg+xml", "<svg></svg>"),
    ("_repr_latex_", "text/latex", "$x^2$"),
    ("_repr_javascript_", "application/javascript", "alert(1)"),
]


def _with_method(name: str, result: object) -> object:
    """An instance of a fresh class whose ``name`` method returns ``result``."""
    cls = type("Rich", (), {name: lambda self: result, "__repr__": lambda self: "<Rich>"})
    return cls()


@pytest.mark.parametrize(("method", "mime", "value"), TEXT_REPRS)
def test_text_repr_methods(method: str, mime: str, value: str) -> None:
    data, metadata = format_object(_with_method(method, value))
    assert data == {mime: value, "text/plain": "<Rich>"}
    assert metadata == {}


@pytest.mark.parametrize(
    ("method", "mime"),
    [("_repr_png_", "image/png"), ("_repr_jpeg_", "image/jpeg"), ("_repr_pdf_", "application/pdf")],
)
def test_binary_repr_methods_are_base64_encoded(method: str, mime: str) -> None:
    data, _ = format_object(_with_method(method, b"\x00\x01binary\xff"))
    assert data[mime] == _b64(b"\x00\x01binary\xff")
    assert base64.b64decode(data[mime]) == b"\x00\x01binary\xff"


def test_binary_repr_given_as_str_passes_through() -> None:
    data, _ = format_object(_with_method("_repr_png_", "aGVsbG8="))
    assert data["image/png"] == "aGVsbG8="


def test_json_repr_gives_application_json() -> None:
    data, _ = format_object(_with_method("_repr_json_", {"a": [1, 2]}))
    assert data["application/json"] == {"a": [1, 2]}


def test_json_repr_as_a_json_string_is_parsed() -> None:
    data, _ = format_object(_with_method("_repr_json_", '{"a": 1}'))
    assert data["application/json"] == {"a": 1}


@pytest.mark.parametrize("bad", [{"a": object()}, "not json {", {1, 2}])
def test_json_repr_that_is_not_json_is_skipped(bad: object) -> None:
    data, _ = format_object(_with_method("_repr_json_", bad))
    assert data == {"text/plain": "<Rich>"}


def test_repr_returning_data_and_metadata() -> None:
    data, metadata = format_object(_with_method("_repr_png_", (PNG, {"width": 10})))
    assert data["image/png"] == _b64(PNG)
    assert metadata == {"image/png": {"width": 10}}


def test_repr_returning_none_is_skipped() -> None:
    data, metadata = format_object(_with_method("_repr_html_", None))
    assert data == {"text/plain": "<Rich>"}
    assert metadata == {}


def test_repr_returning_wrong_type_is_skipped() -> None:
    data, _ = format_object(_with_method("_repr_html_", 42))
    assert data == {"text/plain": "<Rich>"}


def test_repr_that_raises_is_skipped_and_others_still_shown() -> None:
    class HalfBroken:
        def _repr_html_(self) -> str:
            raise ValueError("html is broken")

        def _repr_markdown_(self) -> str:
            return "*fine*"

        def __repr__(self) -> str:
            return "HalfBroken()"

    data, metadata = format_object(HalfBroken())
    assert data == {"text/markdown": "*fine*", "text/plain": "HalfBroken()"}
    assert metadata == {}


def test_classes_are_not_asked_for_rich_reprs() -> None:
    calls: list[str] = []

    class WithHtml:
        def _repr_html_(self) -> str:
            calls.append("html")
            return "<i>instance</i>"

        def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> Any:
            calls.append("bundle")
            return {"text/html": "<i>bundle</i>"}

    data, _ = format_object(WithHtml)
    assert data == {"text/plain": ipython_pretty(WithHtml)}  # module.Qualname, as IPython
    assert calls == []
    assert "text/html" in format_object(WithHtml())[0]


def test_objects_answering_every_attribute_are_only_repr_ed() -> None:
    class AnythingGoes:
        def __getattr__(self, name: str) -> Any:
            return lambda *args, **kwargs: "<b>fake</b>"

        def __repr__(self) -> str:
            return "AnythingGoes()"

    assert format_object(AnythingGoes()) == ({"text/plain": "AnythingGoes()"}, {})


def test_object_lying_about_its_class_is_only_repr_ed() -> None:
    class Liar:
        @property  # type: ignore[misc]
        def __class__(self) -> type:
            raise RuntimeError("no class for you")

        def _repr_html_(self) -> str:
            return "<b>liar</b>"

        def __repr__(self) -> str:
            return "Liar()"

    assert format_object(Liar()) == ({"text/plain": "Liar()"}, {})


def test_attribute_lookup_that_raises_is_skipped() -> None:
    class Exploding:
        @property
        def _repr_html_(self) -> Any:
            raise RuntimeError("property exploded")

        def __repr__(self) -> str:
            return "Exploding()"

    assert format_object(Exploding()) == ({"text/plain": "Exploding()"}, {})


# -- _repr_mimebundle_ -----------------------------------------------------------------------


class Bundled:
    def __init__(self, result: object) -> None:
        self.result = result
        self.calls: list[tuple[object, object]] = []

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> object:
        self.calls.append((include, exclude))
        if isinstance(self.result, Exception):
            raise self.result
        return self.result

    def _repr_html_(self) -> str:
        return "<p>from _repr_html_</p>"

    def _repr_markdown_(self) -> str:
        return "from _repr_markdown_"

    def __repr__(self) -> str:
        return "Bundled()"


def test_mimebundle_data_wins_and_other_reprs_fill_in() -> None:
    obj = Bundled({"text/html": "<p>bundle</p>", "application/vnd.custom+json": {"k": 1}})
    data, metadata = format_object(obj)
    assert data == {
        "text/html": "<p>bundle</p>",
        "application/vnd.custom+json": {"k": 1},
        "text/markdown": "from _repr_markdown_",
        "text/plain": "Bundled()",
    }
    assert metadata == {}
    assert obj.calls == [(None, None)]


def test_mimebundle_with_metadata_and_its_own_text_plain() -> None:
    obj = Bundled(({"text/plain": "custom plain", "image/png": PNG}, {"image/png": {"width": 3}}))
    data, metadata = format_object(obj)
    assert data["text/plain"] == "custom plain"
    assert data["image/png"] == _b64(PNG)
    assert metadata == {"image/png": {"width": 3}}


def test_mimebundle_gets_include_and_exclude_and_is_filtered() -> None:
    obj = Bundled({"text/html": "<p>bundle</p>", "text/latex": "$y$"})
    include = ["text/html", "text/latex", "text/plain"]
    data, _ = format_object(obj, include=include, exclude=["text/latex"])
    assert obj.calls == [(include, ["text/latex"])]
    assert data == {"text/html": "<p>bundle</p>", "text/plain": "Bundled()"}


def test_mimebundle_that_raises_falls_back_to_reprs() -> None:
    data, metadata = format_object(Bundled(RuntimeError("bundle broken")))
    assert data == {
        "text/html": "<p>from _repr_html_</p>",
        "text/markdown": "from _repr_markdown_",
        "text/plain": "Bundled()",
    }
    assert metadata == {}


def test_mimebundle_values_that_are_not_json_are_dropped() -> None:
    data, _ = format_object(Bundled({"application/x-thing": object(), "text/csv": "a,b"}))
    assert "application/x-thing" not in data
    assert data["text/csv"] == "a,b"


# -- Display: the published messages -----------------------------------------------------------


def test_display_publishes_one_display_data_per_object() -> None:
    display, recorder = _display()
    assert display.display(1, HTML("<b>2</b>")) is None
    assert recorder.messages == [
        ("display_data", {"data": {"text/plain": "1"}, "metadata": {}, "transient": {}}),
        (
            "display_data",
            {
                "data": {"text/html": "<b>2</b>", "text/plain": "<HTML object>"},
                "metadata": {},
                "transient": {},
            },
        ),
    ]


def test_display_merges_caller_metadata_and_transient() -> None:
    display, recorder = _display()
    display.display(
        Image(PNG, width=5),
        metadata={"image/png": {"height": 7}, "isolated": True},
        transient={"custom": "x"},
    )
    assert recorder.messages == [
        (
            "display_data",
            {
                "data": {"image/png": _b64(PNG), "text/plain": "<Image object>"},
                "metadata": {"image/png": {"width": 5, "height": 7}, "isolated": True},
                "transient": {"custom": "x"},
            },
        )
    ]


def test_display_id_true_makes_a_fresh_id_and_a_handle() -> None:
    display, recorder = _display()
    first = display.display("a", display_id=True)
    second = display.display("b", display_id=True)
    assert isinstance(first, DisplayHandle)
    assert isinstance(second, DisplayHandle)
    assert len(first.display_id) == 32
    int(first.display_id, 16)
    assert first.display_id != second.display_id
    assert [content["transient"] for _, content in recorder.messages] == [
        {"display_id": first.display_id},
        {"display_id": second.display_id},
    ]


def test_handle_update_publishes_update_display_data_with_the_same_id() -> None:
    display, recorder = _display()
    handle = display.display("before", display_id=True)
    assert handle is not None
    handle.update("after")
    handle.display("again")
    assert recorder.messages[1:] == [
        (
            "update_display_data",
            {
                "data": {"text/plain": "'after'"},
                "metadata": {},
                "transient": {"display_id": handle.display_id},
            },
        ),
        (
            "display_data",
            {
                "data": {"text/plain": "'again'"},
                "metadata": {},
                "transient": {"display_id": handle.display_id},
            },
        ),
    ]


def test_display_with_a_named_id_returns_a_handle_for_it() -> None:
    display, recorder = _display()
    handle = display.display(1, display_id="progress")
    assert handle is not None
    assert handle.display_id == "progress"
    assert recorder.messages[0][1]["transient"] == {"display_id": "progress"}


def test_display_id_without_objects_publishes_an_empty_placeholder() -> None:
    display, recorder = _display()
    handle = display.display(display_id="slot")
    assert handle is not None
    assert recorder.messages == [
        ("display_data", {"data": {}, "metadata": {}, "transient": {"display_id": "slot"}})
    ]


def test_update_display() -> None:
    display, recorder = _display()
    display.update_display(Markdown("# done"), display_id="slot", metadata={"k": 1})
    assert recorder.messages == [
        (
            "update_display_data",
            {
                "data": {"text/markdown": "# done", "text/plain": "<Markdown object>"},
                "metadata": {"k": 1},
                "transient": {"display_id": "slot"},
            },
        )
    ]


def test_update_display_needs_an_id() -> None:
    display, _ = _display()
    with pytest.raises(ValueError, match="display_id"):
        display.update_display(1, display_id="")


def test_clear_output() -> None:
    display, recorder = _display()
    display.clear_output()
    display.clear_output(wait=True)
    assert recorder.messages == [
        ("clear_output", {"wait": False}),
        ("clear_output", {"wait": True}),
    ]


def test_display_clear_first_clears_with_wait() -> None:
    display, recorder = _display()
    display.display(1, clear=True)
    assert [msg_type for msg_type, _ in recorder.messages] == ["clear_output", "display_data"]
    assert recorder.messages[0][1] == {"wait": True}


def test_raw_display_publishes_bundles_as_given() -> None:
    display, recorder = _display()
    display.display(
        {"text/plain": "raw", "image/png": PNG}, raw=True, metadata={"image/png": {"width": 1}}
    )
    assert recorder.messages == [
        (
            "display_data",
            {
                "data": {"text/plain": "raw", "image/png": _b64(PNG)},
                "metadata": {"image/png": {"width": 1}},
                "transient": {},
            },
        )
    ]


def test_raw_display_of_a_non_bundle_is_a_type_error() -> None:
    display, _ = _display()
    with pytest.raises(TypeError, match="MIME bundle"):
        display.display("not a dict", raw=True)


def test_include_and_exclude_reach_the_bundle() -> None:
    display, recorder = _display()
    include: Collection[str] = {"text/html"}
    display.display(HTML("<b>x</b>"), include=include)
    display.display(HTML("<b>x</b>"), exclude=["text/html"])
    display.display(HTML("<b>x</b>"), include=[])  # nothing left: nothing published
    assert [content["data"] for _, content in recorder.messages] == [
        {"text/html": "<b>x</b>"},
        {"text/plain": "<HTML object>"},
    ]


# -- convenience objects ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "mime"),
    [
        (HTML, "text/html"),
        (Markdown, "text/markdown"),
        (Latex, "text/latex"),
        (SVG, "image/svg+xml"),
        (Javascript, "application/javascript"),
    ],
)
def test_text_objects(cls: type[HTML], mime: str, tmp_path: Path) -> None:
    assert format_object(cls("payload"))[0] == {
        mime: "payload",
        "text/plain": f"<{cls.__name__} object>",
    }
    path = tmp_path / "payload.txt"
    path.write_text("from file", encoding="utf-8")
    assert format_object(cls(filename=path))[0][mime] == "from file"
    assert format_object(cls("x", metadata={"isolated": True}))[1] == {mime: {"isolated": True}}


def test_pretty_is_plain_text_only() -> None:
    assert format_object(Pretty("as  is\n  ok")) == ({"text/plain": "as  is\n  ok"}, {})


def test_json_object() -> None:
    data, metadata = format_object(JSON({"a": 1}, expanded=True))
    assert data["application/json"] == {"a": 1}
    assert metadata == {"application/json": {"expanded": True, "root": "root"}}
    assert format_object(JSON("[1, 2]"))[0]["application/json"] == [1, 2]


def test_image_formats(tmp_path: Path) -> None:
    assert format_object(Image(PNG))[0]["image/png"] == _b64(PNG)
    jpeg_data = format_object(Image(JPEG))[0]
    assert jpeg_data["image/jpeg"] == _b64(JPEG)
    assert "image/png" not in jpeg_data
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"not really a jpeg")
    from_file = format_object(Image(filename=path))[0]
    assert from_file["image/jpeg"] == _b64(b"not really a jpeg")
    assert format_object(Image(str(path), format="png"))[0]["image/png"] == from_file["image/jpeg"]


def test_image_size_goes_to_metadata() -> None:
    _, metadata = format_object(Image(PNG, width=640, height=480))
    assert metadata == {"image/png": {"width": 640, "height": 480}}


def test_image_rejects_unknown_formats() -> None:
    with pytest.raises(ValueError, match="gif"):
        Image(b"GIF89a", format="gif")
