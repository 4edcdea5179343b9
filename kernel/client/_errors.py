"""Exceptions of the client/manager layer (above the pure protocol layer)."""

from __future__ import annotations

__all__ = ["KernelDied", "KernelError", "KernelSpecError", "KernelStartError"]


class KernelError(Exception):
    """Base class for problems with a kernel process or connection."""


class KernelDied(KernelError):
    """The kernel exited or stopped answering while a request was outstanding."""


class KernelStartError(KernelError):
    """A kernel could not be launched, or exited before it became ready."""


class KernelSpecError(KernelError):
    """No kernelspec of that name exists, or its kernel.json is invalid."""
