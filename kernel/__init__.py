"""Everything about kernels: protocol, client, manager, and Loom's own kernel.

Public names are loaded lazily (PEP 562), so importing ``kernel.protocol`` or
starting the kernel server does not pay for the client and manager modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "InputHandler": "._client",
    "KernelClient": "._client",
    "OutputHandler": "._client",
    "connect_client": "._client",
    "KernelDied": "._errors",
    "KernelError": "._errors",
    "KernelSpecError": "._errors",
    "KernelStartError": "._errors",
    "install_kernelspec": "._install",
    "KernelSpec": "._kernelspec",
    "builtin_loom_spec": "._kernelspec",
    "find_kernel_specs": "._kernelspec",
    "format_kernel_cmd": "._kernelspec",
    "format_kernelspec_list": "._kernelspec",
    "get_kernel_spec": "._kernelspec",
    "KernelManager": "._manager",
    "start_kernel": "._manager",
    "KernelProcess": "._process",
}

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

if TYPE_CHECKING:
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


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
