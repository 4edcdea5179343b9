"""Finding the connection file of a running kernel (what ``--existing`` names).

One rule for every front end (``loom --existing``, ``loom run --existing``),
modelled on ``jupyter_client.find_connection_file``, which ``jupyter console``
uses:

1. ``None`` or ``""``: the newest ``kernel-*.json`` in the Jupyter runtime dir.
2. A path that exists (absolute, or relative to the working directory;
   ``~`` is expanded): that file.
3. A bare name (no directory part) that exists in the runtime dir, as given or
   as ``kernel-NAME.json``: that file. So ``kernel-1234.json`` and ``1234``
   both find ``RUNTIME/kernel-1234.json``.
4. A bare name used as a pattern in the runtime dir: a name with ``*`` is a
   glob; any other is matched as a substring (``1234`` -> ``*1234*``), as
   jupyter_client does. Only ``kernel-*.json`` files are candidates (the
   runtime dir also holds Jupyter servers' files); of several, the newest wins.

"Newest" is by modification time, not access time as in jupyter_client:
many filesystems do not update access times (``noatime``, ``relatime``).
A name with a directory part is never looked up elsewhere: it is a path.

Stale files
-----------
A kernel that was SIGKILLed (or ``loom kernel`` before it removed its file on
SIGTERM) leaves its connection file behind. :func:`find_running_kernel` is what
``--existing`` uses: the same rules, but a candidate's heartbeat endpoint is
probed first, and a kernel is *gone* when nothing accepts a connection there
(a refused TCP connection, or an ``ipc`` socket file that is missing or refused).
A stopped kernel still accepts (the operating system answers for it), so only
death is detected, in milliseconds; a probe that times out proves nothing. Rules
1 and 4 (a choice among several files) pass over the files of gone kernels and
say which; a file named exactly (rules 2 and 3) is reported stale at once, with
the command that removes it.
"""

from __future__ import annotations

import fnmatch
import socket
from dataclasses import dataclass
from pathlib import Path

from kernel.protocol import ConnectionFileError, ConnectionInfo, runtime_dir

__all__ = ["FoundKernel", "find_connection_file", "find_running_kernel", "kernel_is_gone"]

#: Seconds a probe of a heartbeat endpoint may take before it proves nothing.
PROBE_TIMEOUT = 0.5

_KERNEL_FILES = "kernel-*.json"


def find_connection_file(name_or_path: str | None = None) -> Path:
    """The connection file ``name_or_path`` names, by the module's rules.

    Returns an existing file's path (not read: a file that is not a valid
    connection file is :meth:`ConnectionInfo.read`'s to report). Raises
    :class:`~kernel.protocol.ConnectionFileError` naming what was searched
    when no file matches.
    """
    runtime = runtime_dir()
    exact = _exact_file(name_or_path, runtime)
    if exact is not None:
        return exact
    if not name_or_path:
        error = f"no connection files in {runtime} ({_KERNEL_FILES}); start a kernel first"
    else:
        pattern = _pattern(name_or_path)
        error = (
            f"no connection file {name_or_path!r}: it is not a file, and {runtime} holds no "
            f"{name_or_path}, kernel-{name_or_path}.json or {_KERNEL_FILES} matching {pattern!r}"
        )
    return _newest(_candidates(name_or_path, runtime), error)


@dataclass(frozen=True)
class FoundKernel:
    """A connection file whose kernel is not known to be gone, read; and the stale
    files passed over to find it (newest first)."""

    path: Path
    info: ConnectionInfo
    skipped: tuple[Path, ...] = ()


def find_running_kernel(
    name_or_path: str | None = None, *, probe_timeout: float = PROBE_TIMEOUT
) -> FoundKernel:
    """The connection file ``name_or_path`` names, of a kernel that is not gone.

    The rules of :func:`find_connection_file`; where they choose among several
    files, those of gone kernels (and unreadable ones) are passed over and listed in
    :attr:`FoundKernel.skipped`. Raises :class:`~kernel.protocol.ConnectionFileError`
    when nothing matches, when a file named exactly is unreadable or its kernel is
    gone, or when every candidate's kernel is gone (naming the stale files and the
    command that removes them).
    """
    runtime = runtime_dir()
    exact = _exact_file(name_or_path, runtime)
    if exact is not None:
        info = ConnectionInfo.read(exact)
        if kernel_is_gone(info, probe_timeout):
            raise ConnectionFileError(
                f"the kernel of {exact} is gone (nothing listens on its ports); "
                f"the file is stale, remove it with: rm {exact}"
            )
        return FoundKernel(exact, info)
    newest_first = _by_age(_candidates(name_or_path, runtime))
    if not newest_first:
        find_connection_file(name_or_path)  # raises, saying what was searched
    skipped: list[Path] = []
    for path in newest_first:
        try:
            info = ConnectionInfo.read(path)
        except ConnectionFileError:
            skipped.append(path)
            continue
        if not kernel_is_gone(info, probe_timeout):
            return FoundKernel(path, info, tuple(skipped))
        skipped.append(path)
    stale = " ".join(str(p) for p in skipped)
    raise ConnectionFileError(
        f"no running kernel: the kernels of all {len(skipped)} matching connection files "
        f"in {runtime} are gone; remove the stale files with: rm {stale}"
    )


def kernel_is_gone(info: ConnectionInfo, timeout: float = PROBE_TIMEOUT) -> bool:
    """True if nothing accepts connections on the heartbeat endpoint of ``info``.

    False when something does, and when the probe cannot tell (a timeout, an
    unreachable network): only a refusal proves the kernel is gone.
    """
    port = info.port("hb")
    address: tuple[str, int] | str
    if info.transport == "tcp":
        host = "127.0.0.1" if info.ip in ("", "0.0.0.0", "*") else info.ip
        family, address = (socket.AF_INET6 if ":" in host else socket.AF_INET), (host, port)
    else:
        family, address = socket.AF_UNIX, f"{info.ip}-{port}"
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout)
        try:
            probe.connect(address)
        except (ConnectionRefusedError, FileNotFoundError):
            return True
        except OSError:  # a timeout, no route...: proves nothing
            return False
    return False


def _exact_file(name_or_path: str | None, runtime: Path) -> Path | None:
    """The file rules 2 and 3 name, if they name one."""
    if not name_or_path:
        return None
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if path.name != name_or_path:
        raise ConnectionFileError(f"no connection file {name_or_path}")
    for candidate in (runtime / name_or_path, runtime / f"kernel-{name_or_path}.json"):
        if candidate.is_file():
            return candidate
    return None


def _candidates(name_or_path: str | None, runtime: Path) -> list[Path]:
    """The files rules 1 and 4 choose among."""
    files = _kernel_files(runtime)
    if not name_or_path:
        return files
    pattern = _pattern(name_or_path)
    return [p for p in files if fnmatch.fnmatchcase(p.name, pattern)]


def _pattern(name: str) -> str:
    """A name with ``*`` is a glob; any other is matched as a substring (jupyter_client)."""
    return name if "*" in name else f"*{name}*"


def _by_age(files: list[Path]) -> list[Path]:
    """``files`` newest first (those removed meanwhile left out)."""
    dated: list[tuple[float, Path]] = []
    for path in files:
        try:
            dated.append((path.stat().st_mtime, path))
        except OSError:
            continue
    return [path for _, path in sorted(dated, reverse=True)]


def _kernel_files(directory: Path) -> list[Path]:
    try:
        return [p for p in directory.glob(_KERNEL_FILES) if p.is_file()]
    except OSError:  # the runtime dir does not exist or cannot be read
        return []


def _newest(files: list[Path], error: str) -> Path:
    dated: list[tuple[float, Path]] = []
    for path in files:
        try:
            dated.append((path.stat().st_mtime, path))
        except OSError:  # removed meanwhile (its kernel shut down): not a candidate
            continue
    if not dated:
        raise ConnectionFileError(error)
    return max(dated)[1]
