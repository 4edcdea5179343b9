"""Set-up for the whole test suite: ``tests/`` on ``sys.path``.

``tests/`` has no ``__init__.py``; putting it on ``sys.path`` lets a test module in any
folder below import the shared helpers as ``import _support`` (``tests/_support.py``),
whatever pytest's import mode.
"""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
