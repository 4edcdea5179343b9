"""The errors of ``parallel``, where ipyparallel users look for them (``ipp.error``)."""

from __future__ import annotations

from ._errors import *  # noqa: F403 - this module is the public face of _errors
from ._errors import __all__ as __all__
