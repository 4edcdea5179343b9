"""Everything about kernels: protocol, client, manager (and later Loom's own kernel)."""

from __future__ import annotations

from ._client import InputHandler, KernelClient, OutputHandler, connect_client
from ._errors import KernelDied, KernelError, KernelSpecError, KernelStartError
from ._install import install_kernelspec
from ._kernelspec import (
    KernelSpec,
    builtin_loom_spec,
    find_kernel_specs,
    format_kernel_cmd,
    format_kernelspec_list,
    get_kernel_spec,
)
from ._manager import KernelManager, start_kernel
from ._process import KernelProcess

__version__ = "0.1.0"

__all__ = [
    "InputHandler",
    "KernelClient",
    "KernelDied",
    "KernelError",
    "KernelManager",
    "KernelProcess",
    "KernelSpec",
    "KernelSpecError",
    "KernelStartError",
    "OutputHandler",
    "__version__",
    "builtin_loom_spec",
    "connect_client",
    "find_kernel_specs",
    "format_kernel_cmd",
    "format_kernelspec_list",
    "get_kernel_spec",
    "install_kernelspec",
    "start_kernel",
]
