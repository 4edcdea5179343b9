"""Kernelspecs: finding installed kernels and turning one into a command line.

A kernelspec is a directory holding ``kernel.json``; its lower-cased name is
the kernel's name. Directories are searched in ``jupyter_path("kernels")``
order and the first directory providing a name wins, as in jupyter_client.

Deliberate differences from jupyter_client's ``KernelSpecManager``:

- directories whose names break the naming rule are skipped (jupyter_client
  warns and keeps them, but then refuses to look them up);
- ``~/.ipython/kernels`` is not searched, and no ``python3`` spec is
  synthesized from an importable ipykernel when none is installed;
- a malformed ``kernel.json`` is reported as :class:`KernelSpecError` naming
  the file and the fault instead of a bare ``ValueError``/``TraitError``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from jupyter_core.paths import jupyter_path

from ._errors import KernelSpecError
from ._install import LOOM_DISPLAY_NAME, LOOM_KERNEL_NAME, loom_kernel_argv

__all__ = [
    "KernelSpec",
    "find_kernel_specs",
    "format_kernel_cmd",
    "format_kernelspec_list",
    "get_kernel_spec",
    "kernel_dirs",
]

InterruptMode = Literal["signal", "message"]

# jupyter_client's rule: ASCII letters, digits and the separators - . _
_VALID_NAME = re.compile(r"^[a-z0-9._\-]+$", re.IGNORECASE)
# A ``{name}`` template in argv; unknown names are left as they are (jupyter_client does too).
_TEMPLATE = re.compile(r"\{([A-Za-z0-9_]+)\}")
# argv[0] values meaning "the Python running us"; jupyter_client replaces them with
# sys.executable for *every* spec, so a kernel started from an unactivated env runs there.
_PYTHON_NAMES = frozenset(
    {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
)


@dataclass(frozen=True)
class KernelSpec:
    """A parsed ``kernel.json`` and the directory it came from."""

    name: str
    resource_dir: Path
    argv: list[str]
    display_name: str = ""
    language: str = ""
    interrupt_mode: InterruptMode = "signal"
    env: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_resource_dir(cls, name: str, resource_dir: Path) -> KernelSpec:
        """Read and validate ``resource_dir/kernel.json``.

        Raises :class:`KernelSpecError` naming the file and what is wrong with it.
        """
        path = resource_dir / "kernel.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise KernelSpecError(f"cannot read {path}: {exc.strerror}") from exc
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise KernelSpecError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise KernelSpecError(f"{path} must hold a JSON object")
        try:
            return cls._from_dict(name, resource_dir, data)
        except KernelSpecError as exc:
            raise KernelSpecError(f"invalid kernelspec {path}: {exc}") from None

    @classmethod
    def _from_dict(cls, name: str, resource_dir: Path, data: dict[str, Any]) -> KernelSpec:
        argv = data.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise KernelSpecError(f"'argv' must be a non-empty list of strings, got {argv!r}")
        raw_mode = data.get("interrupt_mode", "signal")
        # jupyter_client's trait is a caseless enum.
        mode: InterruptMode
        if isinstance(raw_mode, str) and raw_mode.lower() == "message":
            mode = "message"
        elif isinstance(raw_mode, str) and raw_mode.lower() == "signal":
            mode = "signal"
        else:
            raise KernelSpecError(
                f"'interrupt_mode' must be 'signal' or 'message', not {raw_mode!r}"
            )
        env = data.get("env", {})
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise KernelSpecError(f"'env' must map strings to strings, got {env!r}")
        metadata = data.get("metadata", {})
        if not isinstance(metadata, dict):
            raise KernelSpecError(f"'metadata' must be an object, got {metadata!r}")
        strings: dict[str, str] = {}
        for key, default in (("display_name", name), ("language", "")):
            value = data.get(key, default)
            if not isinstance(value, str):
                raise KernelSpecError(f"{key!r} must be a string, got {value!r}")
            strings[key] = value
        return cls(
            name=name,
            resource_dir=resource_dir,
            argv=list(argv),
            interrupt_mode=mode,
            env=dict(env),
            metadata=dict(metadata),
            **strings,
        )


def kernel_dirs() -> list[Path]:
    """The directories searched for kernelspecs, highest priority first."""
    return [Path(p) for p in jupyter_path("kernels")]


def _scan() -> dict[str, tuple[int, Path]]:
    """``name -> (index of its search directory, resource dir)``; first directory wins."""
    found: dict[str, tuple[int, Path]] = {}
    for index, directory in enumerate(kernel_dirs()):
        try:
            entries = sorted(directory.iterdir())
        except OSError:  # missing or unreadable directory: nothing installed there
            continue
        for entry in entries:
            name = entry.name.lower()
            if _VALID_NAME.match(name) and name not in found and (entry / "kernel.json").is_file():
                found[name] = (index, entry)
    return found


def find_kernel_specs() -> dict[str, Path]:
    """Map each installed kernel name (lower case) to its resource directory."""
    return {name: path for name, (_, path) in _scan().items()}


def builtin_loom_spec() -> KernelSpec:
    """The ``loom`` kernelspec for this interpreter, as ``loom kernelspec install`` writes it."""
    return KernelSpec(
        name=LOOM_KERNEL_NAME,
        resource_dir=Path(sys.prefix),
        argv=loom_kernel_argv(),
        display_name=LOOM_DISPLAY_NAME,
        language="python",
        interrupt_mode="signal",
    )


def get_kernel_spec(name: str) -> KernelSpec:
    """The kernelspec called ``name`` (case-insensitive).

    Raises :class:`KernelSpecError` if the name is invalid, no such spec is
    installed (the message lists those that are), or its ``kernel.json`` is bad.
    """
    if not _VALID_NAME.match(name):
        raise KernelSpecError(
            f"invalid kernel name {name!r}: "
            "only ASCII letters, digits, '-', '.' and '_' are allowed"
        )
    specs = find_kernel_specs()
    key = name.lower()
    if key not in specs and key == LOOM_KERNEL_NAME:
        # Loom's own kernel needs no installation to be started by Loom.
        return builtin_loom_spec()
    if key not in specs:
        # Loom's own kernel is always available to Loom, installed or not.
        names = sorted(specs.keys() | {LOOM_KERNEL_NAME})
        available = "available: " + ", ".join(names)
        if not specs:
            searched = ", ".join(str(d) for d in kernel_dirs())
            available += f" (no others are installed; searched {searched})"
        raise KernelSpecError(f"no kernelspec named {name!r}; {available}")
    return _with_safe_path(KernelSpec.from_resource_dir(key, specs[key]))


#: The argv (after the interpreter) of a ``loom`` kernelspec written before Loom ran ``-P``.
_UNSAFE_LOOM_ARGV = ["-m", "kernel", "-f", "{connection_file}"]


def _with_safe_path(spec: KernelSpec) -> KernelSpec:
    """``spec``, with ``-P`` added if it is a Loom kernelspec installed before Loom used it.

    Such a kernel would import a ``kernel.py`` in the working directory instead of
    Loom (issue 15). Only the interpreter running us, or one named as jupyter_client
    substitutes it, is known to accept ``-P`` (Python 3.11+); Jupyter's own tools
    still read the old file: ``loom kernelspec install`` rewrites it.
    """
    python = spec.argv[0]
    if spec.argv[1:] == _UNSAFE_LOOM_ARGV and (python == sys.executable or python in _PYTHON_NAMES):
        return replace(spec, argv=[python, "-P", *_UNSAFE_LOOM_ARGV])
    return spec


def format_kernel_cmd(spec: KernelSpec, connection_file: str | os.PathLike[str]) -> list[str]:
    """The command line that starts ``spec``'s kernel on ``connection_file``.

    As jupyter_client does: ``argv[0]`` of ``python``, ``pythonX`` or
    ``pythonX.Y`` (our version) becomes ``sys.executable``; ``{connection_file}``
    (made absolute and symlink-free), ``{resource_dir}`` and ``{prefix}``
    (``sys.prefix``) are substituted; other ``{...}`` are left alone; ``~``
    is expanded in every argument.
    """
    cmd = list(spec.argv)
    if cmd[0] in _PYTHON_NAMES:
        cmd[0] = sys.executable
    values = {
        "connection_file": os.path.realpath(connection_file),
        "resource_dir": str(spec.resource_dir),
        "prefix": sys.prefix,
    }

    def substitute(match: re.Match[str]) -> str:
        return values.get(match.group(1), match.group(0))

    return [os.path.expanduser(_TEMPLATE.sub(substitute, arg)) for arg in cmd]


#: Where ``loom kernelspec list`` says Loom's own kernel is, when it is not installed.
BUILTIN_LOCATION = "(built in; `loom kernelspec install` registers it for other Jupyter tools)"


def format_kernelspec_list(*, builtin: bool = True) -> str:
    """The text ``jupyter kernelspec list`` prints (without the final newline).

    Kernels are ordered by search-directory priority, then path, and names are
    padded to the longest, exactly like jupyter_client's ``ListKernelSpecs``.
    With ``builtin``, a ``loom`` that is not installed is listed last anyway, as
    :data:`BUILTIN_LOCATION`: Loom's front ends start it without installation.
    """
    found = _scan()
    rows = [
        (name, str(path))
        for name, (_, path) in sorted(found.items(), key=lambda item: (item[1][0], str(item[1][1])))
    ]
    if builtin and LOOM_KERNEL_NAME not in found:
        rows.append((LOOM_KERNEL_NAME, BUILTIN_LOCATION))
    if not rows:
        return "No kernels available"
    width = max(len(name) for name, _ in rows)
    lines = ["Available kernels:"]
    lines += [f"  {name.ljust(width)}    {where}" for name, where in rows]
    return "\n".join(lines)
