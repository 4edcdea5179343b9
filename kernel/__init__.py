"""Everything about kernels: protocol, client, manager (and later Loom's own kernel)."""

from __future__ import annotations

from ._client import InputHandler, KernelClient, OutputHandler, connect_client
from ._errors import KernelDied, KernelError, KernelSpecError, KernelStartError

__version__ = "0.1.0"

__all__ = [
    "InputHandler",
    "KernelClient",
    "KernelDied",
    "KernelError",
    "KernelSpecError",
    "KernelStartError",
    "OutputHandler",
    "__version__",
    "connect_client",
]
