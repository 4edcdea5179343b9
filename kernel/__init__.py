"""Everything about kernels: protocol, client, manager, and Loom's own kernel.

Public names are loaded lazily (PEP 562), so importing ``kernel.protocol`` or
starting the kernel server does not pay for the client and manager modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "InputHandler": ".client._client",
    "KernelClient": ".client._client",
    "OutputHandler": ".client._client",
    "connect_client": ".client._client",
    "KernelDied": ".client._errors",
    "KernelError": ".client._errors",
    "KernelSpecError": ".client._errors",
    "KernelStartError": ".client._errors",
    "install_kernelspec": ".client._install",
    "KernelSpec": ".client._kernelspec",
    "builtin_loom_spec": ".client._kernelspec",
    "find_kernel_specs": ".client._kernelspec",
    "format_kernel_cmd": ".client._kernelspec",
    "format_kernelspec_list": ".client._kernelspec",
    "get_kernel_spec": ".client._kernelspec",
    "KernelManager": ".client._manager",
    "start_kernel": ".client._manager",
    "KernelProcess": ".client._process",
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
    from kernel.client._client import InputHandler, KernelClient, OutputHandler, connect_client
    from kernel.client._errors import KernelDied, KernelError, KernelSpecError, KernelStartError
    from kernel.client._install import install_kernelspec
    from kernel.client._kernelspec import (
        KernelSpec,
        builtin_loom_spec,
        find_kernel_specs,
        format_kernel_cmd,
        format_kernelspec_list,
        get_kernel_spec,
    )
    from kernel.client._manager import KernelManager, start_kernel
    from kernel.client._process import KernelProcess


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
