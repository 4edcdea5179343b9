"""Can/uncan of apply calls and results: round trips, out-of-band frames, bad frames."""

from __future__ import annotations

import gc
import pickle
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parallel import SerializationError
from parallel.protocol import (
    OUT_OF_BAND_MIN,
    deserialize_call,
    deserialize_object,
    serialize_call,
    serialize_object,
)

BIG = OUT_OF_BAND_MIN


def _round_trip(obj: object) -> object:
    return deserialize_object(serialize_object(obj))


def _call(frames: list[bytes]) -> object:
    fn, args, kwargs = deserialize_call(frames)
    return fn(*args, **kwargs)


def module_level_power(x: int, *, exponent: int = 2) -> int:
    return int(x**exponent)


# -- round trips ------------------------------------------------------------------------


def test_a_lambda_call_round_trips() -> None:
    frames = serialize_call(lambda x, y=1: x + y, (2,), {"y": 3})
    assert len(frames) == 1
    assert _call(frames) == 5


def test_a_closure_travels_with_its_cells() -> None:
    def make_adder(n: int) -> Callable[[int], int]:
        return lambda x: x + n

    assert _call(serialize_call(make_adder(10), [5], {})) == 15


def test_a_function_defined_in_the_test_module_round_trips() -> None:
    fn, args, kwargs = deserialize_call(serialize_call(module_level_power, (3,), {"exponent": 3}))
    assert fn(*args, **kwargs) == 27
    assert (args, kwargs) == ((3,), {"exponent": 3})


def test_nested_containers_round_trip() -> None:
    value = {"a": [1, (2.5, None), {"b": {3, 4}}], "c": frozenset({"x"}), "d": (b"raw", "text")}
    assert _round_trip(value) == value


def test_frames_may_arrive_as_memoryviews_or_bytearrays() -> None:
    frames = serialize_object([b"x" * BIG, "small"])
    assert len(frames) == 2
    assert deserialize_object([memoryview(frames[0]), bytearray(frames[1])]) == [
        b"x" * BIG,
        "small",
    ]


# -- out-of-band frames -----------------------------------------------------------------


def test_large_bytes_become_a_frame_of_their_own_without_a_copy() -> None:
    payload = b"\x01" * (BIG * 4)
    frames = serialize_call(len, (payload,), {})
    assert len(frames) == 2
    assert frames[1] is payload
    assert len(frames[0]) < 200
    assert _call(frames) == BIG * 4


def test_small_buffers_stay_in_the_pickle() -> None:
    assert len(serialize_object([b"x" * (BIG - 1), np.zeros(4)])) == 1


def test_large_bytes_one_level_down_go_out_of_band_once_per_object() -> None:
    blob = b"\x02" * BIG
    other = bytes(range(256)) * 8
    frames = serialize_object([blob, blob, other, (blob,)])
    assert len(frames) == 3
    assert frames[1:] == [blob, other]
    restored: Any = deserialize_object(frames)
    assert restored == [blob, blob, other, (blob,)]
    assert restored[0] is restored[1]


def test_arguments_and_their_items_go_out_of_band_deeper_bytes_stay_in_the_pickle() -> None:
    blob, other, deep = b"\x02" * BIG, b"\x03" * BIG, b"\x04" * BIG
    frames = serialize_call(max, ([blob],), {"key": {"x": other, "y": [deep]}})
    assert frames[1:] == [blob, other]
    assert deep in frames[0]
    _, args, kwargs = deserialize_call(frames)
    assert (args, kwargs) == (([blob],), {"key": {"x": other, "y": [deep]}})


def test_a_memoryview_two_levels_down_arrives_as_bytes() -> None:
    # cloudpickle reduces a memoryview to its bytes; only the top levels keep the type
    assert _round_trip({"x": [memoryview(b"m")]}) == {"x": [b"m"]}


def test_a_bytearray_stays_a_mutable_bytearray() -> None:
    data = bytearray(b"\x03" * BIG)
    frames = serialize_object(data)
    assert len(frames) == 2
    restored = deserialize_object(frames)
    assert isinstance(restored, bytearray)
    assert restored == data
    restored[0] = 0


def test_a_bytes_subclass_keeps_its_type() -> None:
    restored = _round_trip(np.bytes_(b"\x04" * BIG))
    assert type(restored) is np.bytes_


def test_a_memoryview_keeps_its_format_and_shape() -> None:
    array = np.arange(BIG, dtype=np.float64).reshape(32, 32)
    frames = serialize_object(memoryview(array))
    gc.collect()  # a memoryview still exporting to a PickleBuffer here used to crash CPython
    assert len(frames) == 2
    restored = deserialize_object(_off_the_wire(frames))
    assert isinstance(restored, memoryview)
    assert (restored.format, restored.shape, restored.readonly) == ("d", (32, 32), True)
    assert restored.tolist() == array.tolist()


def test_small_and_strided_memoryviews_round_trip_by_value() -> None:
    small = memoryview(b"abc")
    assert len(serialize_object(small)) == 1
    assert _round_trip(small) == small
    strided = memoryview(bytes(range(256)) * 16)[::3]
    restored = _round_trip(strided)
    assert isinstance(restored, memoryview)
    assert restored.tobytes() == strided.tobytes()


def test_numpy_arrays_travel_out_of_band_and_arrive_read_only() -> None:
    array = np.random.default_rng(0).random((100, 50))
    fortran = np.asfortranarray(array)
    frames = serialize_call(np.dot, (array, fortran), {})
    assert len(frames) == 3
    fn, (a, b), _ = deserialize_call(_off_the_wire(frames))
    assert np.array_equal(a, array)
    assert np.array_equal(b, fortran)
    assert b.flags.f_contiguous
    assert not a.flags.writeable  # it lives in an immutable frame
    assert np.allclose(fn(a, b.T), array @ array.T)


def test_a_non_contiguous_array_round_trips() -> None:
    array = np.arange(10_000, dtype=np.int32)[::7]
    assert np.array_equal(_round_trip(array), array)  # type: ignore[arg-type]


def test_out_of_band_frames_are_views_of_their_data_not_copies() -> None:
    array = np.ones(BIG)
    frames = serialize_call(print, (array, bytearray(BIG), memoryview(b"m" * BIG)), {})
    assert len(frames) == 4
    assert [type(frame) for frame in frames] == [bytes, memoryview, memoryview, memoryview]
    view = frames[1]
    assert isinstance(view, memoryview)
    assert view.nbytes == array.nbytes
    array[0] = 7.0  # the frame shares the array's memory: zero-copy on send
    assert np.frombuffer(view, dtype=array.dtype)[0] == 7.0


def _off_the_wire(frames: list[bytes]) -> list[bytes]:
    """The frames as a receiver gets them from ZeroMQ: each its own ``bytes``."""
    return [bytes(frame) for frame in frames]


# -- what cannot be serialized ----------------------------------------------------------


def _generator() -> Iterator[int]:
    yield 1


def test_an_unpicklable_argument_is_named() -> None:
    with pytest.raises(SerializationError) as caught:
        serialize_call(module_level_power, (1, _generator()), {})
    assert str(caught.value) == (
        "cannot serialize argument 1 of module_level_power(): "
        "TypeError: cannot pickle 'generator' object"
    )
    assert isinstance(caught.value.__cause__, TypeError)


def test_the_item_that_does_not_pickle_in_a_dict_list_or_tuple_argument_is_named() -> None:
    def fails(argument: object) -> str:
        with pytest.raises(SerializationError) as caught:
            serialize_call(module_level_power, (1, argument), {})
        return str(caught.value)

    assert fails({"fine": 1, "gen": _generator()}).startswith(
        "cannot serialize argument 1 of module_level_power() (its item 'gen': a generator): "
    )
    assert "(its item 2: a generator)" in fails([1, 2, _generator()])
    assert "(its item 0: a generator)" in fails((_generator(),))
    # A dict whose items all pickle alone: the dict is named, no item.
    assert "argument 1 of module_level_power(): " in fails(_Unpicklable())


class _Unpicklable(dict[str, int]):
    def __reduce__(self) -> object:
        raise TypeError("this dict refuses")


def test_an_unpicklable_keyword_argument_or_function_is_named() -> None:
    with pytest.raises(SerializationError, match="keyword argument 'gen' of module_level_power"):
        serialize_call(module_level_power, (), {"gen": _generator()})
    gen = _generator()

    def uses_gen() -> object:
        return gen

    with pytest.raises(SerializationError, match=r"the function .*uses_gen: TypeError"):
        serialize_call(uses_gen, (), {})


def test_an_unpicklable_result_is_a_serialization_error() -> None:
    with pytest.raises(SerializationError, match="cannot serialize a generator: TypeError"):
        serialize_object(_generator())


def test_a_memoryview_of_a_non_native_format_is_refused() -> None:
    with pytest.raises(SerializationError, match="a memoryview of format '>i'"):
        serialize_object(memoryview(np.zeros(3, dtype=">i4")))


# -- malformed frames -------------------------------------------------------------------


def test_no_frames_at_all() -> None:
    with pytest.raises(SerializationError, match="no frames"):
        deserialize_object([])


def test_a_frame_that_is_not_a_pickle() -> None:
    with pytest.raises(SerializationError, match="cannot deserialize: UnpicklingError") as caught:
        deserialize_call([b"not a pickle at all"])
    assert isinstance(caught.value.__cause__, pickle.UnpicklingError)


def test_a_truncated_pickle_frame() -> None:
    frames = serialize_object({"a": list(range(100))})
    with pytest.raises(SerializationError, match="cannot deserialize: UnpicklingError"):
        deserialize_object([frames[0][:20]])


def test_missing_out_of_band_frames() -> None:
    frames = serialize_object([b"a" * BIG, b"b" * BIG])
    with pytest.raises(SerializationError, match="truncated: the pickle needs more than the 1 "):
        deserialize_object(frames[:2])


def test_frames_left_over() -> None:
    frames = serialize_object(b"a" * BIG)
    with pytest.raises(SerializationError, match=r"1 frame\(s\) left over after the pickle's 1"):
        deserialize_object([*frames, b"extra"])


def test_a_result_is_not_a_call_and_a_call_is_not_a_result() -> None:
    with pytest.raises(SerializationError, match=r"not hold a serialized call.*'loom-object/1'"):
        deserialize_call(serialize_object(len))
    with pytest.raises(SerializationError, match=r"not hold a serialized object.*'loom-call/1'"):
        deserialize_object(serialize_call(len, (), {}))
    with pytest.raises(SerializationError, match="found a pickled 'int'"):
        deserialize_object([pickle.dumps(42)])


def test_a_call_whose_function_is_not_callable_is_refused() -> None:
    with pytest.raises(SerializationError, match="not hold a serialized call"):
        deserialize_call([pickle.dumps(("loom-call/1", 42, (), {}))])


def test_a_forged_pickle_with_a_persistent_id_is_refused() -> None:
    class Forger(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            return ("nope",) if obj == "forged" else None

    import io

    stream = io.BytesIO()
    Forger(stream, protocol=5).dump(("loom-object/1", "forged"))
    with pytest.raises(SerializationError, match="cannot deserialize: UnpicklingError"):
        deserialize_object([stream.getvalue()])


def test_a_module_missing_on_the_receiving_side() -> None:
    module = types.ModuleType("loom_vanishing_module")
    exec("class Thing:\n    pass\n", module.__dict__)
    sys.modules[module.__name__] = module
    try:
        frames = serialize_object(module.Thing())
    finally:
        del sys.modules[module.__name__]
    with pytest.raises(SerializationError, match="ModuleNotFoundError") as caught:
        deserialize_object(frames)
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)


# -- properties -------------------------------------------------------------------------

_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.binary(min_size=BIG, max_size=BIG + 64)
)
_values = st.recursive(
    _leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(args=st.lists(_values, max_size=4), kwargs=st.dictionaries(st.text(max_size=8), _values))
def test_nested_arguments_round_trip(args: list[object], kwargs: dict[str, object]) -> None:
    frames = serialize_call(module_level_power, args, kwargs)
    assert all(type(frame) is bytes for frame in frames)
    fn, got_args, got_kwargs = deserialize_call(frames)
    assert fn is module_level_power
    assert got_args == tuple(args)
    assert got_kwargs == kwargs


def test_a_function_pickled_once_unpickles_as_itself_in_every_call() -> None:
    from parallel.protocol._serialize import PickledOnce

    scale = 3
    once = PickledOnce(lambda x: x * scale)  # a closure: pickled by value, once
    for arg in (1, 2):
        fn, args, _ = deserialize_call(serialize_call(lambda f, x: f(x), (once, arg), {}))
        assert isinstance(args[0], types.FunctionType)
        assert fn(*args) == arg * scale
    lock = __import__("threading").Lock()
    with pytest.raises(SerializationError, match="cannot pickle the function"):
        PickledOnce(lambda: lock)  # a closure over a lock


# -- a map's tasks by the standard pickler ---------------------------------------------


def test_a_plain_map_task_pickles_as_serialize_call_does() -> None:
    from parallel.client._remote import map_chunk
    from parallel.protocol._serialize import PickledOnce, serialize_plain_call

    once = PickledOnce(lambda x, y: (x, y))  # by value, once: what a map's tasks carry
    chunks: list[list[object]] = [[1, 2.5, "é", None, True, 3j], [10**30, "b", 0, 1, 2, 3]]
    plain = serialize_plain_call(map_chunk, [once, *chunks])
    assert plain is not None
    assert plain == serialize_call(map_chunk, (once, *chunks), {})  # the same pickle
    assert _call(plain) == list(zip(*chunks, strict=True))


@pytest.mark.parametrize(
    "why",
    ["a __main__ function", "a lambda", "a non-plain element", "bytes", "a plain argument"],
)
def test_what_the_standard_pickler_could_send_differently_is_left_to_cloudpickle(
    why: str,
) -> None:
    from parallel.client._remote import map_chunk
    from parallel.protocol._serialize import PickledOnce, serialize_plain_call

    once = PickledOnce(abs)
    fn: Callable[..., object] = map_chunk
    args: list[object] = [once, [1, 2]]
    match why:
        case "a __main__ function":
            fn = types.FunctionType(map_chunk.__code__, {"__name__": "__main__"}, "map_chunk")
            fn.__module__ = "__main__"
        case "a lambda":
            fn = lambda *a: a  # noqa: E731 - not importable by name
        case "a non-plain element":
            args = [once, [1, [2]]]
        case "bytes":  # out of band in serialize_call, one level down
            args = [once, [b"x" * BIG]]
        case "a plain argument":
            args = [once, 5]
    assert serialize_plain_call(fn, args) is None


@pytest.mark.parametrize("value", [0, -(10**40), 2.5, float("nan"), 3j, "é" * 5000, True, None])
def test_a_plain_result_pickles_as_cloudpickle_would(value: object) -> None:
    """serialize_object takes the standard pickler for plain values (an engine's trivial
    results): the frames must be the ones cloudpickle's Pickler writes."""
    import io

    import cloudpickle

    from parallel.protocol._serialize import _OBJECT

    stream = io.BytesIO()
    cloudpickle.Pickler(stream, protocol=5).dump((_OBJECT, value))
    assert serialize_object(value) == [stream.getvalue()]
    got = _round_trip(value)
    assert got == value or (value != value and got != got)  # nan
