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
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from kernel.protocol import ConnectionFileError, runtime_dir

__all__ = ["find_connection_file"]

_KERNEL_FILES = "kernel-*.json"


def find_connection_file(name_or_path: str | None = None) -> Path:
    """The connection file ``name_or_path`` names, by the module's rules.

    Returns an existing file's path (not read: a file that is not a valid
    connection file is :meth:`ConnectionInfo.read`'s to report). Raises
    :class:`~kernel.protocol.ConnectionFileError` naming what was searched
    when no file matches.
    """
    runtime = runtime_dir()
    if not name_or_path:
        newest = f"no connection files in {runtime} ({_KERNEL_FILES}); start a kernel first"
        return _newest(_kernel_files(runtime), newest)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if path.name != name_or_path:  # it has a directory part: a path, and it is not there
        raise ConnectionFileError(f"no connection file {name_or_path}")
    for candidate in (runtime / name_or_path, runtime / f"kernel-{name_or_path}.json"):
        if candidate.is_file():
            return candidate
    pattern = name_or_path if "*" in name_or_path else f"*{name_or_path}*"
    matches = [p for p in _kernel_files(runtime) if fnmatch.fnmatchcase(p.name, pattern)]
    return _newest(
        matches,
        f"no connection file {name_or_path!r}: it is not a file, and {runtime} holds no "
        f"{name_or_path}, kernel-{name_or_path}.json or {_KERNEL_FILES} matching {pattern!r}",
    )


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
