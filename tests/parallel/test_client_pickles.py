"""A function's pickle kept between calls (``parallel/client/_pickles.py``), pure.

Kept only while nothing it carries can differ: each test changes one captured part and
checks that the next call carries the change, as a fresh cloudpickle would.
"""

from __future__ import annotations

import textwrap
import types
from typing import Any

import cloudpickle
import pytest

from parallel import SerializationError
from parallel.client._pickles import _pickled, serialize_apply
from parallel.protocol._serialize import deserialize_call, serialize_call


def _main(source: str) -> dict[str, Any]:
    """A fresh ``__main__``-like namespace (functions pickled by value) running ``source``."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(textwrap.dedent(source), "<main>", "exec"), namespace)
    return namespace


def _run(fn: Any, *args: object, **kwargs: object) -> object:
    """What an engine does with the frames: unpickle the call and make it."""
    call, args_, kwargs_ = deserialize_call(serialize_apply(fn, args, kwargs))
    return call(*args_, **kwargs_)


def test_a_function_of_atomic_globals_is_pickled_once_and_runs_the_same() -> None:
    ns = _main("X = 1\ndef f(a, b=2):\n    return X + a + b\n")
    once = _pickled(ns["f"])
    assert once is not None
    assert _pickled(ns["f"]) is once
    assert _run(ns["f"], 10, b=5) == 16
    assert serialize_apply(ns["f"], (1,), {}) == serialize_apply(ns["f"], (1,), {})


def test_a_lambda_made_anew_in_a_loop_shares_the_pickle_of_its_code() -> None:
    ns = _main("def make():\n    return lambda: 7\n")
    first, second = ns["make"](), ns["make"]()
    assert first is not second
    assert _pickled(first) is _pickled(second)
    assert _run(second) == 7


def test_a_rebound_global_makes_a_new_pickle() -> None:
    ns = _main("X = 1\ndef f():\n    return X\n")
    before = _pickled(ns["f"])
    assert _run(ns["f"]) == 1
    ns["X"] = 2
    assert _pickled(ns["f"]) is not before
    assert _run(ns["f"]) == 2
    ns["X"] = True  # equal to 1, pickled otherwise: compared by identity
    assert _run(ns["f"]) is True


def test_a_global_defined_later_makes_a_new_pickle() -> None:
    ns = _main("def f():\n    try:\n        return Y\n    except NameError:\n        return None\n")
    assert _run(ns["f"]) is None
    ns["Y"] = 5
    assert _run(ns["f"]) == 5


def test_mutable_or_rich_captures_are_pickled_at_every_call() -> None:
    ns = _main(
        """
        DATA = [1]
        class K: pass
        def reads_list():
            return DATA
        def reads_class():
            return K
        def outer():
            box = [1]
            return lambda: box
        def calls_other():
            return reads_list()
        def annotated(a: int) -> int:
            return a
        """
    )
    for name in ("reads_list", "reads_class", "calls_other", "annotated"):
        assert _pickled(ns[name]) is None, name
    assert _pickled(ns["outer"]()) is None
    ns["DATA"].append(2)  # changed inside: the next call carries it
    assert _run(ns["reads_list"]) == [1, 2]
    fn = ns["reads_list"]
    fn.attribute = 1
    assert _pickled(fn) is None


def test_closure_cells_and_defaults_are_compared_each_call() -> None:
    ns = _main(
        """
        def counter():
            n = 1
            def read():
                return n
            def bump():
                nonlocal n
                n += 1
            return read, bump
        def f(a=1):
            return a
        """
    )
    read, bump = ns["counter"]()
    assert _run(read) == 1
    bump()
    assert _run(read) == 2
    assert _run(ns["f"]) == 1
    ns["f"].__defaults__ = (3,)
    assert _run(ns["f"]) == 3


def test_a_module_global_is_kept_until_more_modules_are_imported() -> None:
    ns = _main("import os\ndef f():\n    return os.sep\n")
    once = _pickled(ns["f"])
    assert once is not None
    assert _pickled(ns["f"]) is once
    fake = types.ModuleType("loom_test_fresh_module")
    import sys

    sys.modules[fake.__name__] = fake
    try:
        assert _pickled(ns["f"]) is not once  # cloudpickle may name new submodules
    finally:
        del sys.modules[fake.__name__]
    assert _run(ns["f"]) == "/"


def test_nothing_is_kept_while_cloudpickles_by_value_registry_is_used() -> None:
    module = types.ModuleType("loom_test_by_value")
    import sys

    sys.modules[module.__name__] = module
    try:
        cloudpickle.register_pickle_by_value(module)
        try:
            assert _pickled(_main("def f():\n    return 1\n")["f"]) is None
        finally:
            cloudpickle.unregister_pickle_by_value(module)
    finally:
        del sys.modules[module.__name__]


def test_other_arguments_go_through_cloudpickle_with_their_buffers_out_of_band() -> None:
    ns = _main("def f(data, key=None):\n    return len(data), key\n")
    blob = b"x" * 4096
    frames = serialize_apply(ns["f"], (blob,), {"key": [1, 2]})
    assert blob in frames[1:]  # a frame of its own
    call, args, kwargs = deserialize_call(frames)
    assert call(*args, **kwargs) == (4096, [1, 2])


def test_an_unpicklable_argument_is_named_with_the_functions_name() -> None:
    ns = _main("def work(a):\n    return a\n")
    import threading

    with pytest.raises(SerializationError, match=r"argument 0 of work\(\)"):
        serialize_apply(ns["work"], (threading.Lock(),), {})
    with pytest.raises(SerializationError, match=r"argument 0 of work\(\)"):
        serialize_call(ns["work"], (threading.Lock(),), {})
