"""Registering Loom's kernel as a Jupyter kernelspec named ``loom``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = [
    "DEFAULT_KERNEL_NAME",
    "LOOM_DISPLAY_NAME",
    "LOOM_KERNEL_NAME",
    "install_kernelspec",
    "loom_kernel_argv",
    "loom_kernel_json",
]

LOOM_KERNEL_NAME = "loom"
#: The kernelspec Loom's front ends (``loom``, ``loom run``) start when none is named.
DEFAULT_KERNEL_NAME = LOOM_KERNEL_NAME

LOOM_DISPLAY_NAME = "Loom (Python 3)"


def loom_kernel_argv() -> list[str]:
    """The command that runs this interpreter's Loom kernel (before substitution)."""
    # -P: a kernel.py (or zmq.py...) in the working directory must not replace Loom's
    # own modules; the kernel puts the directory on sys.path for user code itself.
    return [sys.executable, "-P", "-m", "kernel", "-f", "{connection_file}"]


def loom_kernel_json() -> dict[str, object]:
    """The kernel.json for this interpreter's Loom kernel."""
    return {
        "argv": loom_kernel_argv(),
        "display_name": LOOM_DISPLAY_NAME,
        "language": "python",
        "interrupt_mode": "signal",
        # supported_encryption: jupyter_client (>= 8.9) with transport_encryption "auto"
        # or "required" writes Curve keys into the connection file only for a kernel
        # that declares "curve" here; Loom's kernel then serves every channel with Curve.
        "metadata": {"debugger": False, "supported_encryption": ["curve"]},
    }


def kernelspec_dir(*, user: bool = False, prefix: str | None = None) -> Path:
    """Where ``install_kernelspec`` writes, following jupyter's conventions.

    ``user``: the user's Jupyter data dir; ``prefix``: ``PREFIX/share/jupyter``;
    neither: ``sys.prefix`` (the environment Loom is installed in).
    """
    if user:
        from jupyter_core.paths import jupyter_data_dir

        base = Path(jupyter_data_dir())
    else:
        base = Path(prefix if prefix is not None else sys.prefix) / "share" / "jupyter"
    return base / "kernels" / LOOM_KERNEL_NAME


def install_kernelspec(*, user: bool = False, prefix: str | None = None) -> Path:
    """Write the ``loom`` kernelspec and return its directory."""
    target = kernelspec_dir(user=user, prefix=prefix)
    target.mkdir(parents=True, exist_ok=True)
    (target / "kernel.json").write_text(json.dumps(loom_kernel_json(), indent=1) + "\n")
    return target
