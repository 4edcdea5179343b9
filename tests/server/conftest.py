"""Fixtures shared by the kernel server's in-process tests: an Interpreter whose published
messages are collected in a list."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kernel.server.interpreter import Interpreter

Published = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def published() -> Published:
    return []


@pytest.fixture
def interp(published: Published) -> Iterator[Interpreter]:
    interpreter = Interpreter(lambda msg_type, content: published.append((msg_type, content)))
    yield interpreter
    interpreter.history.close()
