"""The engine's cache of unpickled calls: what it keeps, what it never keeps, and that a
kept call behaves as a fresh unpickle would (pure: serialize_call's real frames)."""

from __future__ import annotations

import textwrap
import types
from collections.abc import Callable
from typing import Any

import pytest

from parallel.engine._apply import interactive_in
from parallel.engine._call_cache import MAX_KEY, CallCache, reusable
from parallel.protocol import deserialize_call, serialize_call


def main_function(source: str, name: str, **globals_: object) -> Callable[..., Any]:
    """``name`` as defined by ``source`` in a fresh ``__main__`` (a script's function)."""
    namespace: dict[str, Any] = {"__name__": "__main__", **globals_}
    exec(compile(textwrap.dedent(source), "<main>", "exec"), namespace)
    return namespace[name]  # type: ignore[no-any-return]


def engine_call(
    cache: CallCache, frames: list[bytes], namespace: dict[str, object]
) -> tuple[Callable[..., object], tuple[object, ...], dict[str, object], bool]:
    """What the engine's handler does with a request's frames; the last item: a hit."""
    key = cache.key(frames)
    cached = None if key is None else cache.get(key, namespace)
    if cached is not None:
        return cached.fn, cached.args, cached.kwargs, True
    fn, args, kwargs = deserialize_call(frames)
    bound = interactive_in(fn, namespace) if isinstance(fn, types.FunctionType) else fn
    if key is not None:
        cache.put(key, fn, bound, args, kwargs)
    return bound, args, kwargs, False


def test_the_same_plain_call_is_unpickled_once_and_sees_the_engine_namespace() -> None:
    zero = main_function("def zero(k, s='x'):\n    return (a, k, s, len(s))", "zero")
    cache, namespace = CallCache(), dict[str, object](a=1)
    frames = serialize_call(zero, (5,), {"s": "yz"})
    assert serialize_call(zero, (5,), {"s": "yz"}) == frames  # the client's bytes repeat
    hits = []
    for a in (1, 2):
        namespace["a"] = a
        fn, args, kwargs, hit = engine_call(cache, frames, namespace)
        hits.append(hit)
        assert fn(*args, **kwargs) == (a, 5, "yz", 2)
    assert hits == [False, True]
    assert len(cache) == 1


def test_a_hit_copies_the_functions_pickled_globals_the_namespace_lacks() -> None:
    fn = main_function("def f():\n    return limit, math.floor(2.5)", "f", limit=7)
    fn.__globals__["math"] = __import__("math")
    cache, namespace = CallCache(), dict[str, object]()
    frames = serialize_call(fn, (), {})
    assert engine_call(cache, frames, namespace)[0]() == (7, 2)
    assert namespace["limit"] == 7
    namespace["limit"] = 8  # the engine's own value is kept...
    call, _, _, hit = engine_call(cache, frames, namespace)
    assert hit
    assert call() == (8, 2)
    del namespace["limit"]  # ...and one a task deleted comes back, as from a fresh unpickle
    call, _, _, hit = engine_call(cache, frames, namespace)
    assert hit
    assert call() == (7, 2)


def test_another_namespace_is_a_miss() -> None:
    fn = main_function("def f():\n    return 1", "f")
    cache = CallCache()
    frames = serialize_call(fn, (), {})
    engine_call(cache, frames, {})
    assert engine_call(cache, frames, {})[3] is False


@pytest.mark.parametrize(
    "why",
    [
        "a closure",
        "a mutable argument",
        "a mutable keyword argument",
        "a mutable default",
        "a function attribute",
        "a mutable pickled global",
        "a helper function",
        "a module's function",
        "a lambda over a list in a tuple",
    ],
)
def test_calls_that_could_carry_a_change_to_the_next_task_are_never_kept(why: str) -> None:
    fn: Callable[..., object] = main_function("def f(*a, **k):\n    return 1", "f")
    args: tuple[object, ...] = ()
    kwargs: dict[str, object] = {}
    match why:
        case "a closure":
            fn = main_function(
                "def outer():\n    n = 0\n    def f():\n        nonlocal n\n"
                "        n += 1\n        return n\n    return f",
                "outer",
            )()
        case "a mutable argument":
            args = ([],)
        case "a mutable keyword argument":
            kwargs = {"x": {1: 2}}
        case "a mutable default":
            fn = main_function("def f(x=[]):\n    x.append(1)\n    return len(x)", "f")
        case "a function attribute":
            fn.calls = 0  # type: ignore[attr-defined]
        case "a mutable pickled global":
            fn = main_function("def f():\n    seen.append(1)\n    return seen", "f", seen=[])
        case "a helper function":
            fn = main_function("def h():\n    return 1\ndef f():\n    return h()", "f")
        case "a module's function":
            fn = textwrap.dedent
            args = ("x",)
        case "a lambda over a list in a tuple":
            args = ((1, [2]),)
    frames = serialize_call(fn, args, kwargs)
    got_fn, got_args, got_kwargs = deserialize_call(frames)
    assert not reusable(got_fn, got_args, got_kwargs)
    cache = CallCache()
    engine_call(cache, frames, {})
    assert len(cache) == 0


def test_out_of_band_buffers_and_large_pickles_are_never_keys() -> None:
    fn = main_function("def f(b):\n    return len(b)", "f")
    assert CallCache.key(serialize_call(fn, (b"x" * 4096,), {})) is None  # a buffer frame
    assert CallCache.key([memoryview(b"abc")]) is None  # a view of a received frame
    big = serialize_call(fn, ("x" * (MAX_KEY + 1),), {})
    assert len(big) == 1
    assert CallCache.key(big) is None


def test_the_cache_keeps_a_bounded_number_of_calls() -> None:
    fn = main_function("def f(i):\n    return i", "f")
    cache = CallCache(entries=3)
    namespace: dict[str, object] = {}
    for i in range(10):
        engine_call(cache, serialize_call(fn, (i,), {}), namespace)
    assert len(cache) == 3
    assert engine_call(cache, serialize_call(fn, (9,), {}), namespace)[3] is True
    assert engine_call(cache, serialize_call(fn, (0,), {}), namespace)[3] is False
