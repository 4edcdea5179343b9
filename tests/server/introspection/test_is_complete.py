"""Tests for kernel.server.introspection._is_complete (rules as IPython's check_complete)."""

from __future__ import annotations

from typing import Any

import pytest

from kernel.server.introspection._is_complete import is_complete

COMPLETE: dict[str, Any] = {"status": "complete"}
INVALID: dict[str, Any] = {"status": "invalid"}


def incomplete(indent: int) -> dict[str, Any]:
    return {"status": "incomplete", "indent": " " * indent}


CASES: list[tuple[str, dict[str, Any]]] = [
    # plain statements
    ("", COMPLETE),
    ("   \n  ", COMPLETE),
    ("x = 1", COMPLETE),
    ("x = 1\n", COMPLETE),
    ("# only a comment", COMPLETE),
    ("x = [\n1,\n2]", COMPLETE),
    ("await asyncio.sleep(0)", COMPLETE),
    # open brackets, strings, continuations
    ("(1,", incomplete(0)),
    ("[1,\n 2", incomplete(1)),
    ("foo(\n", incomplete(0)),
    ("x = '''abc", incomplete(0)),
    ("x = 1 + \\", incomplete(0)),
    ("def f(:", incomplete(0)),
    # blocks
    ("for i in range(3):", incomplete(4)),
    ("for i in range(3):\n", incomplete(4)),
    ("if x:\n    if y:", incomplete(8)),
    ("if (a and\n    b):", incomplete(4)),
    ("if x:\n    pass\nelse:", incomplete(4)),
    ("for i in range(3):\n    print(i)", incomplete(4)),
    ("class A:\n    def f(self):\n        return 1", incomplete(8)),
    ("if True:\n\tx = 1", incomplete(4)),
    ("for i in range(3):\n    print(i)\n", COMPLETE),
    ("for i in range(3):\n    print(i)\n    ", COMPLETE),
    ("@decorator", incomplete(0)),
    ("try:\n    x\n", incomplete(4)),
    # invalid whatever comes next
    ("x = )", INVALID),
    ("x = (1))", INVALID),
    ("(]", INVALID),
    ("return", INVALID),
    ("1 +", INVALID),
    ("x = 1\n    y = 2", INVALID),
    ("'abc", INVALID),
    ("lambda:", INVALID),
    ("if x:\n    a\n  b", INVALID),
    # IPython syntax
    ("%time x = 1", COMPLETE),
    ("!ls -l", COMPLETE),
    ("files = !ls", COMPLETE),
    ("x = %who_ls", COMPLETE),
    ("obj?", COMPLETE),
    ("os.path.join??", COMPLETE),
    ("?obj", COMPLETE),
    ("!ls \\", incomplete(0)),
    ("for i in x:\n    %time f(i)", incomplete(4)),
    ("for i in x:\n    %time f(i)\n", COMPLETE),
    ("x = (10\n%3)", COMPLETE),
    ("%%time", incomplete(0)),
    ("%%time\n", incomplete(0)),
    ("%%time\nx = 1", incomplete(0)),
    ("%%time\nx = 1\n", COMPLETE),
    ("%%bash\necho \\\n", incomplete(0)),
    # line endings
    ("x = 1\r\nif y:\r\n", incomplete(4)),
]


@pytest.mark.parametrize(("code", "expected"), CASES)
def test_is_complete(code: str, expected: dict[str, Any]) -> None:
    assert is_complete(code) == expected


def test_trailing_comment_backslash_is_not_a_continuation() -> None:
    assert is_complete("x = 1  # ends with \\") == COMPLETE


def test_warnings_in_code_do_not_matter() -> None:
    # An invalid escape sequence is a DeprecationWarning/SyntaxWarning, not a syntax error.
    assert is_complete("x = '\\d'") == COMPLETE
