"""Rich display: objects to MIME bundles, and ``display()`` / ``update_display()`` for user code.

Implements the content of the ``display_data``, ``update_display_data`` and ``clear_output``
iopub messages (messaging spec, "Display Data", "Update Display Data", "Clear output") and
IPython's ``_repr_*_`` protocol, so objects from pandas, matplotlib, plotly, ... display richly.
The rich objects of ``IPython.display`` (``HTML``, ``Image``...) are in ``_display_objects``.

Pure: no zmq, no asyncio. Messages leave through a :class:`DisplayPublisher`, which the kernel
implements (and which should flush pending stdout/stderr first, so output keeps its order).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol, TypedDict, Unpack

from ._pretty import pretty

__all__ = ["Display", "DisplayHandle", "DisplayOptions", "DisplayPublisher", "MimeBundle"]
__all__ += ["TypeFormatter", "call_ipython_display", "format_object", "register_type_formatter"]

#: MIME type -> JSON-able payload (binary payloads base64-encoded), as sent in ``data``.
MimeBundle = dict[str, Any]

#: Types whose ``text/plain`` is their repr, as the pretty printer would write it anyway.
_PLAIN_REPR_TYPES = frozenset({int, float, str, bool, type(None)})

#: Given an object, ``(data, metadata)`` to add to its bundle, or ``None`` to add nothing.
TypeFormatter = Callable[[Any], tuple[MimeBundle, dict[str, Any]] | None]
_type_formatters: list[tuple[type, TypeFormatter]] = []

#: ``_repr_*_`` methods in IPython's formatter order, with the MIME type each produces.
_REPR_METHODS: tuple[tuple[str, str], ...] = (
    ("_repr_html_", "text/html"),
    ("_repr_markdown_", "text/markdown"),
    ("_repr_svg_", "image/svg+xml"),
    ("_repr_png_", "image/png"),
    ("_repr_jpeg_", "image/jpeg"),
    ("_repr_latex_", "text/latex"),
    ("_repr_json_", "application/json"),
    ("_repr_javascript_", "application/javascript"),
    ("_repr_pdf_", "application/pdf"),
)
_BINARY_MIMES = frozenset({"image/png", "image/jpeg", "application/pdf"})
#: An attribute no real object has: an object that claims it answers every attribute
#: (a mock, a proxy) and its ``_repr_*_`` "methods" are not to be trusted. Same name as IPython.
_CANARY = "_ipython_canary_method_should_not_exist_"


class _Rejected:
    """Marks a ``_repr_*_`` result that cannot go on the wire."""


_REJECT = _Rejected()


def format_object(
    obj: object,
    *,
    include: Collection[str] | None = None,
    exclude: Collection[str] | None = None,
) -> tuple[MimeBundle, dict[str, Any]]:
    """The ``(data, metadata)`` pair that displays ``obj``.

    ``data`` always has ``"text/plain"`` (as IPython's pretty printer writes the object: see
    ``_pretty``) unless ``include``/``exclude`` filter it out.
    ``_repr_mimebundle_(include=, exclude=)`` comes first, then formatters registered with
    :func:`register_type_formatter`; the ``_repr_*_`` methods fill in the MIME types they did
    not give. A method that
    returns ``None``, returns something of the wrong type, or raises ``Exception`` is skipped.
    Classes are never asked (their ``_repr_*_`` are unbound methods). Everything returned is
    JSON-able. Never raises ``Exception``.
    """
    data: MimeBundle = {}
    metadata: dict[str, Any] = {}
    if _is_trusted(obj):
        _add_mimebundle(obj, data, metadata, include, exclude)
        _add_type_formatted(obj, data, metadata, include, exclude)
        for name, mime in _REPR_METHODS:
            if mime not in data and _is_wanted(mime, include, exclude):
                _add_repr(obj, name, mime, data, metadata)
    if "text/plain" not in data and _is_wanted("text/plain", include, exclude):
        data["text/plain"] = _plain_text(obj)
    return data, metadata


def register_type_formatter(cls: type, formatter: TypeFormatter) -> None:
    """Format instances of ``cls`` (and subclasses) with ``formatter`` too, as IPython's
    ``for_type``: its MIME types come after ``_repr_mimebundle_``'s and before ``_repr_*_``'s.

    Registering a formatter again for the same class replaces it.
    """
    _type_formatters[:] = [(c, f) for c, f in _type_formatters if c is not cls]
    _type_formatters.append((cls, formatter))


def call_ipython_display(obj: object) -> bool:
    """If ``obj`` displays itself (IPython's ``_ipython_display_()``), call that; return
    whether it did. IPython then publishes nothing else for the object. A method that
    raises ``NotImplementedError`` declines, as in IPython (ipympl's figures do, to be shown
    by their ``_repr_mimebundle_``); anything else it raises propagates."""
    if not _is_trusted(obj):
        return False
    method = _method(obj, "_ipython_display_")
    if method is None:
        return False
    try:
        method()
    except NotImplementedError:
        return False
    return True


def _add_type_formatted(
    obj: object,
    data: MimeBundle,
    metadata: dict[str, Any],
    include: Collection[str] | None,
    exclude: Collection[str] | None,
) -> None:
    for cls, formatter in list(_type_formatters):
        if not isinstance(obj, cls):
            continue
        try:
            result = formatter(obj)
        except Exception:
            continue
        if result is None:
            continue
        for mime, value in result[0].items():
            if mime not in data and _is_wanted(mime, include, exclude):
                data[mime] = _encode_bytes(value)
        for key, value in result[1].items():
            metadata.setdefault(key, value)


def _is_wanted(mime: str, include: Collection[str] | None, exclude: Collection[str] | None) -> bool:
    return (include is None or mime in include) and (exclude is None or mime not in exclude)


def _is_trusted(obj: object) -> bool:
    """False for classes and for objects that claim to have every attribute (or raise)."""
    try:
        return not isinstance(obj, type) and getattr(obj, _CANARY, None) is None
    except Exception:
        return False


def _method(obj: object, name: str) -> Callable[..., Any] | None:
    try:
        method = getattr(obj, name, None)
    except Exception:
        return None
    return method if callable(method) else None


def _add_mimebundle(
    obj: object,
    data: MimeBundle,
    metadata: dict[str, Any],
    include: Collection[str] | None,
    exclude: Collection[str] | None,
) -> None:
    method = _method(obj, "_repr_mimebundle_")
    if method is None:
        return
    try:
        result = method(include=include, exclude=exclude)
    except Exception:
        return
    bundle, md = result if isinstance(result, tuple) and len(result) == 2 else (result, None)
    if not isinstance(bundle, Mapping):
        return
    for mime, value in bundle.items():
        if isinstance(mime, str) and _is_wanted(mime, include, exclude):
            cleaned = _encode_bytes(value)
            if _is_jsonable(cleaned):
                data[mime] = cleaned
    if isinstance(md, Mapping) and _is_jsonable(md):
        metadata.update(md)


def _add_repr(
    obj: object, name: str, mime: str, data: MimeBundle, metadata: dict[str, Any]
) -> None:
    method = _method(obj, name)
    if method is None:
        return
    try:
        result = method()
    except Exception:
        return
    md: object = None
    if isinstance(result, tuple) and len(result) == 2:
        result, md = result
    value = _clean_repr_value(mime, result)
    if value is _REJECT:
        return
    data[mime] = value
    if isinstance(md, Mapping) and _is_jsonable(md):
        metadata[mime] = dict(md)


def _clean_repr_value(mime: str, value: object) -> object:
    """``value`` ready for the wire as ``mime``, or ``_REJECT`` (also for ``None``)."""
    if mime in _BINARY_MIMES:
        # Binary payloads travel base64-encoded (messaging spec, "Display Data").
        if isinstance(value, bytes | bytearray | memoryview):
            return _encode_bytes(value)
        return value if isinstance(value, str) else _REJECT
    if mime == "application/json":
        if isinstance(value, str):  # a JSON document rather than JSON data, as IPython accepts
            try:
                value = json.loads(value)
            except ValueError:
                return _REJECT
        return value if value is not None and _is_jsonable(value) else _REJECT
    return value if isinstance(value, str) else _REJECT


def _encode_bytes(value: object) -> object:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    return value


def _is_jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def _plain_text(obj: object) -> str:
    """What IPython's pretty printer writes for ``obj`` (see ``_pretty``)."""
    try:
        return repr(obj) if type(obj) in _PLAIN_REPR_TYPES else pretty(obj)
    except Exception:
        return _fallback_repr(obj)


def _fallback_repr(obj: object) -> str:
    try:
        return object.__repr__(obj)
    except Exception:
        return f"<unprintable {type(obj).__name__} object>"


def _merge_metadata(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Caller-given metadata wins; per-MIME dicts present on both sides are merged."""
    for key, value in extra.items():
        current = target.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            current.update(value)
        else:
            target[key] = value


def _new_display_id() -> str:
    return uuid.uuid4().hex


class DisplayPublisher(Protocol):
    """Where display messages go: the kernel sends ``content`` on iopub as ``msg_type``."""

    def publish(self, msg_type: str, content: dict[str, Any]) -> None:
        """Send one ``display_data`` / ``update_display_data`` / ``clear_output`` message."""
        ...


class DisplayOptions(TypedDict, total=False):
    """Keyword options shared by :meth:`Display.display` and :meth:`Display.update_display`."""

    include: Collection[str] | None
    exclude: Collection[str] | None
    metadata: Mapping[str, Any] | None
    transient: Mapping[str, Any] | None
    raw: bool


class Display:
    """Implements ``display()``, ``update_display()`` and ``clear_output()`` for user code.

    Every published content has ``data``, ``metadata`` and ``transient`` (``{}`` unless a
    display id or caller transient data is given).
    """

    def __init__(self, publisher: DisplayPublisher) -> None:
        self._publisher = publisher

    def display(
        self,
        *objs: object,
        include: Collection[str] | None = None,
        exclude: Collection[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        transient: Mapping[str, Any] | None = None,
        display_id: str | bool | None = None,
        raw: bool = False,
        clear: bool = False,
    ) -> DisplayHandle | None:
        """Publish one ``display_data`` per object; a handle when a display id is in play.

        ``display_id=True`` makes a fresh id; a string names one (outputs sharing an id are
        all replaced by a later update). With an id and no objects, an empty output is
        published as a placeholder to update later. ``raw=True``: objects are already MIME
        bundles (bytes values get base64-encoded). ``clear=True``: ``clear_output(wait=True)``
        first. Objects whose bundle comes out empty, and objects that display themselves
        (``_ipython_display_``), publish nothing. Returns a
        :class:`DisplayHandle` when a display id was given or made, else ``None``.
        """
        resolved = _new_display_id() if display_id is True else display_id or None
        if not objs and resolved:
            objs, raw = ({},), True
        if clear:
            self.clear_output(wait=True)
        for obj in objs:
            self._publish("display_data", obj, include, exclude, metadata, transient, resolved, raw)
        return DisplayHandle(self, resolved) if resolved else None

    def update_display(
        self, obj: object, *, display_id: str, **options: Unpack[DisplayOptions]
    ) -> None:
        """Publish ``update_display_data``: replace every output shown under ``display_id``.

        Raises ``ValueError`` for an empty ``display_id``.
        """
        if not display_id:
            raise ValueError("update_display needs a display_id")
        self._publish(
            "update_display_data",
            obj,
            options.get("include"),
            options.get("exclude"),
            options.get("metadata"),
            options.get("transient"),
            display_id,
            options.get("raw", False),
        )

    def clear_output(self, wait: bool = False) -> None:
        """Publish ``clear_output``; with ``wait`` the front end clears when new output comes."""
        self._publisher.publish("clear_output", {"wait": wait})

    def _publish(
        self,
        msg_type: str,
        obj: object,
        include: Collection[str] | None,
        exclude: Collection[str] | None,
        metadata: Mapping[str, Any] | None,
        transient: Mapping[str, Any] | None,
        display_id: str | None,
        raw: bool,
    ) -> None:
        if raw:
            if not isinstance(obj, Mapping):
                raise TypeError(f"raw display needs a MIME bundle dict, not {type(obj).__name__}")
            data: MimeBundle = {str(k): _encode_bytes(v) for k, v in obj.items()}
            md: dict[str, Any] = {}
        else:
            if call_ipython_display(obj):
                return
            data, md = format_object(obj, include=include, exclude=exclude)
            if not data:
                return
        if metadata:
            _merge_metadata(md, metadata)
        extra = dict(transient or {})
        if display_id:
            extra["display_id"] = display_id
        self._publisher.publish(msg_type, {"data": data, "metadata": md, "transient": extra})


class DisplayHandle:
    """A display id bound to a :class:`Display`: show or replace that output later."""

    def __init__(self, display: Display, display_id: str | None = None) -> None:
        self._display = display
        self.display_id: str = display_id or _new_display_id()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} display_id={self.display_id}>"

    def display(self, obj: object, **options: Unpack[DisplayOptions]) -> None:
        """Publish ``obj`` as a new ``display_data`` output carrying this display id."""
        self._display.display(obj, display_id=self.display_id, **options)

    def update(self, obj: object, **options: Unpack[DisplayOptions]) -> None:
        """Replace every output carrying this display id with ``obj``."""
        self._display.update_display(obj, display_id=self.display_id, **options)
