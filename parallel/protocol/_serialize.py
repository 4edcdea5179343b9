"""Can and uncan: apply requests and their results as lists of frames (pure).

Theory of operation
-------------------
ipyparallel messaging, "apply": an ``apply_request`` carries the call and an
``apply_reply`` the result in the message's binary buffers. Loom lays them out
as one pickle frame followed by out-of-band frames::

    [pickle, buffer_0, buffer_1, ...]

The pickle (protocol 5, by cloudpickle, so lambdas, closures and functions
defined in ``__main__`` or a test module travel by value) holds a tagged tuple,
``("loom-call/1", fn, args, kwargs)`` or ``("loom-object/1", obj)``; the tag
lets a receiver refuse a call where it expects a result, and a future layout.
Data buffers of at least :data:`OUT_OF_BAND_MIN` bytes do not go into the
pickle but become frames of their own, in the order the pickle refers to them:

* buffers that objects hand to pickle protocol 5 (``PickleBuffer``: numpy
  arrays, and anything else written for out-of-band pickling), at any depth;
* ``bytes``, ``bytearray`` and ``memoryview`` objects that are an argument, a
  keyword argument or the result, or an item of one that is a list, a tuple
  or a dict (one level down, as ipyparallel's canning). Deeper ``bytes`` are
  copied into the pickle, and deeper memoryviews arrive as ``bytes``
  (cloudpickle's reduction). A memoryview keeps its format and shape, and
  arrives read-only (writable through shared memory, below, if it was writable).

The second rule is a pass over the top level rather than a pickle hook:
``persistent_id`` would make pickle call into Python for every object and
triple the cost of pickling a large list (measured), and ``bytes`` never
reach ``reducer_override``.

Out-of-band frames are views of the data (a numpy array, a bytearray), not copies,
and a ``bytes`` object is its own frame; the sender passes them to ZeroMQ as they are
(``Session.serialize(copy_buffers=False)``), so the data must not change until the
message is sent. Only data that is not C-contiguous is copied once. Arrays received on
immutable frames are read-only, as in ipyparallel; on frames mapped from shared memory
(``_shm``: large buffers between processes of one host) writable, since each receiver's
mapping is private (copy-on-write), unless the sender's buffer was read-only (pickle
protocol 5 keeps that).

Unpickling runs code: deserialize only frames from an authenticated message
(a signed ``Session``). Every failure, in either direction, is a
:class:`SerializationError` raised from the pickle, import or attribute error.
"""

from __future__ import annotations

import io
import pickle
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import Final, SupportsIndex

import cloudpickle

from .._errors import SerializationError

__all__ = [
    "OUT_OF_BAND_MIN",
    "Frame",
    "PickledOnce",
    "deserialize_call",
    "deserialize_object",
    "serialize_call",
    "serialize_object",
    "serialize_plain_call",
]

#: Buffers this large (bytes) or larger travel as frames of their own.
OUT_OF_BAND_MIN: Final = 1024

#: What a receiver may pass in as a frame (zmq gives bytes or memoryviews).
Frame = bytes | bytearray | memoryview

_CALL: Final = "loom-call/1"
_OBJECT: Final = "loom-object/1"


class _Buffer:
    """A ``bytes``, ``bytearray`` or ``memoryview`` pickled as one out-of-band buffer.

    Call :meth:`release` once the pickle is written: a memoryview left exporting
    its buffer must not reach the garbage collector (CPython crashes clearing one
    in a reference cycle).
    """

    __slots__ = ("_buffer", "_extra", "_rebuild")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._extra: tuple[object, ...] = ()
        if isinstance(data, memoryview):
            self._extra = _view_layout(data)
            data = data if data.c_contiguous else memoryview(data.tobytes())
            self._rebuild: Callable[..., object] = _rebuild_view
        else:
            self._rebuild = type(data)
        self._buffer = pickle.PickleBuffer(data)

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[object, ...]:
        return (self._rebuild, (self._buffer, *self._extra))

    def release(self) -> None:
        self._buffer.release()


def _view_layout(view: memoryview) -> tuple[str, tuple[int, ...]]:
    """``(format, shape)`` of a memoryview that :func:`_rebuild_view` can rebuild."""
    shape = view.shape or ()
    try:
        _rebuild_view(bytes(view.itemsize), view.format, None)
    except (TypeError, ValueError) as exc:  # only native single-item formats can be rebuilt
        raise pickle.PicklingError(f"a memoryview of format {view.format!r}") from exc
    if len(shape) > 1 and 0 in shape:
        raise pickle.PicklingError(f"a memoryview of shape {shape} (cast cannot rebuild it)")
    return view.format, shape


def _rebuild_view(data: Frame, fmt: str, shape: object) -> memoryview:
    """``data`` seen with format ``fmt`` and shape ``shape`` (``None``: one dimension).

    Called by the unpickler. ``memoryview.cast`` with a run-time format (typeshed
    lists the literals); a ``shape`` other than ``None`` or a tuple of ints raises.
    """
    cast: Callable[..., memoryview] = memoryview(data).cast("B").cast
    if shape is None or (isinstance(shape, tuple) and len(shape) == 1):
        return cast(fmt)
    if not (isinstance(shape, tuple) and all(type(n) is int for n in shape)):
        raise TypeError(f"a memoryview shape must be a tuple of ints, not {shape!r}")
    return cast(fmt, shape)


def _is_raw(value: object) -> bool:
    """Whether ``value`` is one of the exact types that go out of band by themselves."""
    kind = type(value)
    return kind is memoryview or (
        (kind is bytes or kind is bytearray) and len(value) >= OUT_OF_BAND_MIN  # type: ignore[arg-type]
    )


def _can(value: object, wrapped: dict[int, _Buffer]) -> object:
    """``value``, or a copy of it whose raw buffers (module docstring) are wrapped.

    ``wrapped`` maps ``id(original)`` to its wrapper, so an object met twice is one
    frame (and one object again on the other side).
    """

    def wrap(item: object) -> object:
        if not _is_raw(item):
            return item
        if id(item) not in wrapped:
            wrapped[id(item)] = _Buffer(item)  # type: ignore[arg-type]
        return wrapped[id(item)]

    kind = type(value)
    if kind is list or kind is tuple:
        items: Sequence[object] = value  # type: ignore[assignment]
        if any(map(_is_raw, items)):
            return kind([wrap(item) for item in items])
    elif kind is dict:
        entries: dict[object, object] = value  # type: ignore[assignment]
        if any(map(_is_raw, entries.values())):
            return {key: wrap(item) for key, item in entries.items()}
    return wrap(value)


def _out_of_band(frames: list[bytes], buffer: pickle.PickleBuffer) -> bool:
    """``buffer_callback``: append a large buffer to ``frames``; True keeps a small one in."""
    with buffer.raw() as view:
        if view.nbytes < OUT_OF_BAND_MIN:
            return True
        owner = view.obj
        if type(owner) is bytes and view.nbytes == len(owner):
            frames.append(owner)  # a bytes object is its own frame
        else:
            frames.append(_flat_view(owner, view))
    return False


def _flat_view(owner: object, view: memoryview) -> bytes:
    """A byte view of ``owner``'s data that outlives ``view`` (no copy when possible).

    The frame must not be a view of the ``PickleBuffer`` (all of those are released
    after the dump: see ``_pickle``), so it is a fresh export of the owner itself, e.g.
    a numpy array: sent without a copy (``Session.serialize(copy_buffers=False)``). The
    caller must not change the array until the message is sent, as with ipyparallel.
    """
    try:
        fresh = memoryview(owner).cast("B")  # type: ignore[arg-type]
    except (TypeError, ValueError):  # not C-contiguous or no buffer: copy it
        return view.tobytes()
    if fresh.nbytes != view.nbytes:
        fresh.release()
        return view.tobytes()
    return fresh  # type: ignore[return-value]  # a bytes-like frame


#: Builds what to pickle, given the function that cans one value.
_Build = Callable[[Callable[[object], object]], object]


def _pickle(build: _Build) -> list[bytes]:
    """``[pickle, *out_of_band]`` for what ``build`` makes; pickling errors propagate."""
    wrapped: dict[int, _Buffer] = {}
    stream, frames = io.BytesIO(), list[bytes]()
    try:
        value = build(partial(_can, wrapped=wrapped))
        pickler = cloudpickle.Pickler(
            stream, protocol=5, buffer_callback=partial(_out_of_band, frames)
        )
        pickler.dump(value)
    finally:
        for wrapper in wrapped.values():
            wrapper.release()
    return [stream.getvalue(), *frames]


def _dump(build: _Build, what: Callable[[], str]) -> list[bytes]:
    try:
        return _pickle(build)
    except Exception as exc:  # pickling runs arbitrary __reduce__ code
        raise SerializationError(f"cannot serialize {what()}: {_describe(exc)}") from exc


class _Frames:
    """An iterator over the out-of-band frames that remembers how far it got."""

    def __init__(self, frames: Sequence[Frame]) -> None:
        self._frames = frames
        self.used = 0
        self.ran_out = False

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        if self.used == len(self._frames):
            self.ran_out = True
            raise StopIteration
        self.used += 1
        return self._frames[self.used - 1]


def _load(frames: Sequence[Frame]) -> object:
    if not frames:
        raise SerializationError("no frames: a serialized object starts with its pickle frame")
    rest = _Frames(frames[1:])
    try:
        value: object = pickle.loads(frames[0], buffers=rest)
    except Exception as exc:  # unpickling runs arbitrary code and imports
        if rest.ran_out:
            message = f"truncated: the pickle needs more than the {rest.used} frames after it"
        else:
            message = f"cannot deserialize: {_describe(exc)}"
        raise SerializationError(message) from exc
    if rest.used != len(frames) - 1:
        unused = len(frames) - 1 - rest.used
        raise SerializationError(f"{unused} frame(s) left over after the pickle's {rest.used}")
    return value


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def serialize_object(obj: object) -> list[bytes]:
    """``obj`` (an ``apply_reply``'s result, a pushed value) as frames.

    Raises :class:`SerializationError` if ``obj`` cannot be pickled.
    """
    if type(obj) in _PLAIN:
        # The bytes cloudpickle writes, by the standard (C) pickler: an engine answers
        # most trivial tasks with such a value, and building cloudpickle's Pickler cost
        # ~10 us of the ~1 us this takes (measured).
        return [pickle.dumps((_OBJECT, obj), protocol=5)]
    return _dump(lambda can: (_OBJECT, can(obj)), lambda: f"a {type(obj).__name__}")


def deserialize_object(frames: Sequence[Frame]) -> object:
    """The object :func:`serialize_object` turned into ``frames``.

    Raises :class:`SerializationError` if the frames are missing, truncated,
    left over, not a pickle, not an object's, or name code this process lacks.
    """
    value = _load(frames)
    match value:
        case (str(tag), obj) if tag == _OBJECT:
            return obj
    raise SerializationError(f"the frames do not hold a serialized object ({_what(value)})")


class PickledOnce:
    """``fn``, pickled now, once, and then sent as those bytes in every call that carries
    it: a map's tasks all carry its function, and cloudpickling a function by value
    (code, globals, closure) cost more than the rest of a trivial task's request. It
    unpickles as ``fn`` itself (``pickle.loads`` of the bytes), so the engine sees the
    function, as if it had been pickled with each call.

    Raises :class:`SerializationError` if ``fn`` cannot be pickled.
    """

    __slots__ = ("_blob",)

    def __init__(self, fn: Callable[..., object]) -> None:
        try:
            self._blob = cloudpickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise SerializationError(f"cannot pickle the function {fn!r}: {exc}") from exc

    def __reduce__(self) -> tuple[Callable[[bytes], object], tuple[bytes]]:
        return pickle.loads, (self._blob,)


def serialize_call(
    fn: Callable[..., object], args: Sequence[object], kwargs: Mapping[str, object]
) -> list[bytes]:
    """The call ``fn(*args, **kwargs)`` (an ``apply_request``) as frames.

    Raises :class:`SerializationError` naming the first part (the function, an
    argument, a keyword argument) that cannot be pickled.
    """

    def build(can: Callable[[object], object]) -> object:
        return (_CALL, fn, tuple(map(can, args)), {key: can(v) for key, v in kwargs.items()})

    return _dump(build, lambda: _culprit(fn, args, kwargs))


#: Types whose values the standard pickler writes exactly as cloudpickle does (by value,
#: nothing by reference that an engine might lack, no buffers to take out of band).
_PLAIN: Final = frozenset({int, float, complex, str, bool, type(None)})


def serialize_plain_call(fn: Callable[..., object], args: Sequence[object]) -> list[bytes] | None:
    """:func:`serialize_call`'s frames for ``fn(*args)`` by the standard (C) pickler, or
    None where that could differ from cloudpickle's: ``fn`` must be a function of an
    importable module (pickled by reference either way), and each argument a
    :class:`PickledOnce` or a list of values of plain types (``int``, ``str``, ...).
    A map's tasks are such calls (``map_chunk(once, chunk)``), and cloudpickle's
    Pickler cost ~30 us more than a trivial task's ~6 us pickle (measured)."""
    module = sys.modules.get(getattr(fn, "__module__", None) or "__main__")
    if module is None or module.__name__ == "__main__":
        return None
    if getattr(module, getattr(fn, "__qualname__", ""), None) is not fn:
        return None
    for arg in args:
        if type(arg) is list:
            if not all(type(item) in _PLAIN for item in arg):
                return None
        elif not isinstance(arg, PickledOnce):
            return None
    try:
        return [pickle.dumps((_CALL, fn, tuple(args), {}), protocol=5)]
    except Exception:  # let serialize_call pickle it, or name what cannot be
        return None


def serialize_pickled_call(
    once: PickledOnce, args: Sequence[object], kwargs: Mapping[str, object]
) -> list[bytes] | None:
    """:func:`serialize_call`'s frames for ``once``'s function called with plain ``args``
    and ``kwargs`` (``int``, ``str``, ... : nothing cloudpickle would pickle otherwise,
    no buffer to take out of band) by the standard (C) pickler; None for any other
    argument. The client's kept function pickles (``parallel/client/_pickles.py``)."""
    if not all(type(arg) in _PLAIN for arg in args):
        return None
    if not all(type(value) in _PLAIN for value in kwargs.values()):
        return None
    try:
        return [pickle.dumps((_CALL, once, tuple(args), dict(kwargs)), protocol=5)]
    except Exception:  # let serialize_call pickle it, or name what cannot be
        return None


def deserialize_call(
    frames: Sequence[Frame],
) -> tuple[Callable[..., object], tuple[object, ...], dict[str, object]]:
    """``(fn, args, kwargs)`` as :func:`serialize_call` received them.

    Raises :class:`SerializationError` as :func:`deserialize_object` does, and
    if the frames hold something other than a call.
    """
    value = _load(frames)
    match value:
        case (str(tag), fn, tuple(args), dict(kwargs)) if tag == _CALL and callable(fn):
            if all(isinstance(key, str) for key in kwargs):
                return fn, args, kwargs
    raise SerializationError(f"the frames do not hold a serialized call ({_what(value)})")


def _what(value: object) -> str:
    if isinstance(value, tuple) and value and isinstance(value[0], str):
        return f"found tag {value[0]!r}"
    return f"found a pickled {type(value).__name__!r}"


def _culprit(fn: object, args: Sequence[object], kwargs: Mapping[str, object]) -> str:
    """Which part of a call does not pickle (called only after the whole call failed)."""
    name = getattr(fn, "__qualname__", type(fn).__name__)
    parts = [
        ("the function", fn),
        *((f"argument {i}", arg) for i, arg in enumerate(args)),
        *((f"keyword argument {key!r}", value) for key, value in kwargs.items()),
    ]
    for part, value in parts:
        if not _pickles(value):
            if part == "the function":
                return f"the function {name}"
            return f"{part} of {name}(){_item_culprit(value)}"
    return f"the call of {name}()"


def _item_culprit(value: object) -> str:
    """Which item of a dict, list or tuple does not pickle (``push({...})``'s namespace,
    a list of arguments), as `` (its item 'key': a T)``; empty for anything else."""
    if isinstance(value, dict):
        items: Iterable[tuple[object, object]] = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return ""
    for key, item in items:
        if not _pickles(item):
            kind = type(item)
            module = "" if kind.__module__ == "builtins" else f"{kind.__module__}."
            return f" (its item {key!r}: a {module}{kind.__qualname__})"
    return ""


def _pickles(value: object) -> bool:
    try:
        _pickle(lambda can: can(value))
    except Exception:  # any failure: this is the part that does not pickle
        return False
    return True
