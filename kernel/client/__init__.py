"""The client side of kernels: connect to, launch, watch and stop any Jupyter kernel.

asyncio only, no threads. ``kernel``'s own ``__init__`` re-exports the public names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

__all__ = [
    "DEFAULT_KERNEL_NAME",
    "FoundKernel",
    "HeartbeatBack",
    "HeartbeatLost",
    "HeartbeatMonitor",
    "InputHandler",
    "KernelClient",
    "KernelDied",
    "KernelError",
    "KernelExited",
    "KernelManager",
    "KernelProcess",
    "KernelSpec",
    "KernelSpecError",
    "KernelStartError",
    "KernelWatcher",
    "OutputHandler",
    "ProcessExited",
    "WatchEvent",
    "builtin_loom_spec",
    "connect_client",
    "describe_exit",
    "exited_within",
    "find_connection_file",
    "find_kernel_specs",
    "find_running_kernel",
    "format_kernel_cmd",
    "format_kernelspec_list",
    "get_kernel_spec",
    "install_kernelspec",
    "start_kernel",
    "until_exit",
    "wait_for_heartbeat",
    "wait_pid_exit",
]

_EXPORTS = {
    "InputHandler": "._client",
    "KernelClient": "._client",
    "OutputHandler": "._client",
    "connect_client": "._client",
    "find_connection_file": "._connection_files",
    "find_running_kernel": "._connection_files",
    "FoundKernel": "._connection_files",
    "KernelDied": "._errors",
    "KernelError": "._errors",
    "KernelSpecError": "._errors",
    "KernelStartError": "._errors",
    "HeartbeatMonitor": "._heartbeat_monitor",
    "wait_for_heartbeat": "._heartbeat_monitor",
    "DEFAULT_KERNEL_NAME": "._install",
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
    "ProcessExited": "._process",
    "describe_exit": "._process",
    "exited_within": "._process",
    "until_exit": "._process",
    "wait_pid_exit": "._process",
    "HeartbeatBack": "._watch",
    "HeartbeatLost": "._watch",
    "KernelExited": "._watch",
    "KernelWatcher": "._watch",
    "WatchEvent": "._watch",
}

if TYPE_CHECKING:
    from ._client import InputHandler, KernelClient, OutputHandler, connect_client
    from ._connection_files import FoundKernel, find_connection_file, find_running_kernel
    from ._errors import KernelDied, KernelError, KernelSpecError, KernelStartError
    from ._heartbeat_monitor import HeartbeatMonitor, wait_for_heartbeat
    from ._install import DEFAULT_KERNEL_NAME, install_kernelspec
    from ._kernelspec import (
        KernelSpec,
        builtin_loom_spec,
        find_kernel_specs,
        format_kernel_cmd,
        format_kernelspec_list,
        get_kernel_spec,
    )
    from ._manager import KernelManager, start_kernel
    from ._process import (
        KernelProcess,
        ProcessExited,
        describe_exit,
        exited_within,
        until_exit,
        wait_pid_exit,
    )
    from ._watch import HeartbeatBack, HeartbeatLost, KernelExited, KernelWatcher, WatchEvent


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
