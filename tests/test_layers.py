"""The rooms of docs/architecture.md and their import rules.

Two kinds of check:
- *static*: every ``import`` statement in the packages, including imports inside
  functions and under ``TYPE_CHECKING``, is read with ``ast`` and held against the
  room rules (a function-local import that breaks a layer fails here);
- *start-up budgets*: a module is imported in a fresh interpreter and ``sys.modules``
  is checked, because what start-up pays for is what is actually loaded.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("kernel", "shell", "parallel")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(module: str, path: Path) -> set[str]:
    """Every module ``module`` imports, anywhere in its file, as absolute names."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


MODULES = _modules()
IMPORTS = {module: _imports(module, path) for module, path in MODULES.items()}


def _importers_of(target: str) -> set[str]:
    return {
        module
        for module, names in IMPORTS.items()
        if any(name == target or name.startswith(target + ".") for name in names)
    }


def _in(module: str, *rooms: str) -> bool:
    return any(module == room or module.startswith(room + ".") for room in rooms)


def test_only_the_channels_room_imports_threading() -> None:
    # Thread affinity is a folder: code that runs on a helper thread lives in
    # kernel/server/channels/. The console's LOOM_DEBUG_THREADS check reads
    # threading.enumerate() to prove there are no threads; it starts none. The one
    # exception is an engine's hub link: it must ping the controller and ship task
    # records while a task holds the main thread, and doing that on loom-io would put
    # record encoding between a cell's output and its subscribers (architecture.md,
    # "Task records, restore and the controller's death"). And an MPI rank's start: it
    # imports the engine on a thread, joined at once, while its main thread waits in
    # MPI_Init with the GIL released (parallel/launchers/_node_engine.py). And the loop
    # of `%%script --bg` scripts, started by the first such cell: IPython's background
    # streams flow while a cell holds the main thread (kernel/server/magics/_background.py).
    # And an engine's writes of a large reply into shared memory: one file per thread,
    # started and joined inside one call, because one tmpfs file fills at one thread's
    # speed (parallel/engine/_write_threads.py).
    allowed = (
        "kernel.server.channels",
        "kernel.server.magics._background",
        "shell.console._debug",
        "parallel.engine._hub_link",
        "parallel.engine._write_threads",
        "parallel.launchers._node_engine",
    )
    assert {m for m in _importers_of("threading") if not _in(m, *allowed)} == set()


def test_only_the_console_imports_prompt_toolkit() -> None:
    assert {m for m in _importers_of("prompt_toolkit") if not _in(m, "shell.console")} == set()


def test_zmq_stays_in_transport_client_server_and_parallel() -> None:
    allowed = (
        "kernel.transport",
        "kernel.client",
        "kernel.server._app",
        "kernel.server._server",
        "kernel.server.channels",
        "parallel",
    )
    assert {m for m in _importers_of("zmq") if not _in(m, *allowed)} == set()


def test_the_protocol_imports_only_the_stdlib_and_itself() -> None:
    ours = {m for m in MODULES if _in(m, "kernel.protocol")}
    for module in ours:
        project = {n for n in IMPORTS[module] if n.split(".")[0] in PACKAGES}
        assert {n for n in project if not _in(n, "kernel.protocol", "kernel._lazy")} == set()


def test_the_kernel_never_imports_front_ends_or_parallel() -> None:
    kernel = {m for m in MODULES if _in(m, "kernel")}
    for module in kernel:
        assert not any(_in(n, "shell", "parallel", "prompt_toolkit") for n in IMPORTS[module])


def test_cell_running_rooms_import_no_zmq_and_no_asyncio_sockets() -> None:
    rooms = (
        "kernel.server.interpreter",
        "kernel.server.introspection",
        "kernel.server.magics",
        "shell.render",
    )
    for module in (m for m in MODULES if _in(m, *rooms)):
        assert not any(_in(n, "zmq", "kernel.transport", "kernel.client") for n in IMPORTS[module])


def test_render_imports_no_prompt_toolkit_and_no_asyncio() -> None:
    for module in (m for m in MODULES if _in(m, "shell.render")):
        assert not any(_in(n, "prompt_toolkit", "asyncio") for n in IMPORTS[module]), module


def test_launchers_speak_to_engines_only_through_the_cluster_file() -> None:
    # A launcher starts processes and watches them; it never talks zmq, and it knows the
    # controller, the client and the engine only by name (the "local" launcher lives in
    # the controller, which imports the launchers, never the other way round). The one
    # exception is _node_engine, the engine's entry point under mpiexec and srun: it runs
    # in the engine process and imports the engine.
    others = ("zmq", "parallel.controller", "parallel.client", "parallel.cluster")
    for module in (m for m in MODULES if _in(m, "parallel.launchers")):
        forbidden = others if module.endswith("._node_engine") else (*others, "parallel.engine")
        assert not any(_in(n, *forbidden) for n in IMPORTS[module]), module


def test_no_two_modules_share_a_basename() -> None:
    # Two _heartbeat.py with opposite roles were one file name for two things. Each
    # layer's exception hierarchy is its _errors.py, which is one role, not two.
    shared = {"__init__.py", "__main__.py", "_errors.py"}
    counts = Counter(path.name for path in MODULES.values() if path.name not in shared)
    assert [name for name, n in counts.items() if n > 1] == []


def _modules_after_import(module: str) -> set[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout))


def _top(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


def test_protocol_is_pure_stdlib() -> None:
    loaded = _top(_modules_after_import("kernel.protocol"))
    assert not loaded & {"zmq", "asyncio", "prompt_toolkit", "shell", "parallel", "jupyter_core"}


@pytest.mark.parametrize("module", ["kernel", "kernel.server", "kernel.client"])
def test_kernel_never_imports_front_ends(module: str) -> None:
    loaded = _top(_modules_after_import(module))
    assert not loaded & {"shell", "parallel", "prompt_toolkit"}


@pytest.mark.parametrize(
    "module",
    [
        "kernel.server",
        "kernel.server.channels",
        "kernel.server.interpreter",
        "kernel.server.introspection",
        "kernel.server.magics",
        "kernel.transport",
        "shell.console",
        "shell.render",
        "shell.batch",
    ],
)
def test_every_room_package_loads_lazily(module: str) -> None:
    # A room's __init__ names its exports but imports none of them.
    loaded = _modules_after_import(module)
    assert not {m for m in loaded if _in(m, module) and m != module}


def test_kernel_server_start_imports_stay_light() -> None:
    # Start-up time matters (kernel_info within ~100 ms): heavy modules load lazily.
    loaded = _top(_modules_after_import("kernel.server"))
    assert not loaded & {"jedi", "pygments", "jupyter_client", "IPython"}


def test_building_the_interpreter_imports_neither_ipython_nor_matplotlib() -> None:
    # IPython's display API and inline figures are set up by import hooks: IPython and
    # matplotlib load only when user code imports them (a third of a second otherwise).
    code = (
        "import json, sys, os\n"
        "from kernel.server.interpreter._interpreter import Interpreter\n"
        "Interpreter(lambda t, c: None, history=None)\n"
        "print(json.dumps([sorted(sys.modules), os.environ.get('MPLBACKEND')]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    modules, backend = json.loads(out.stdout)
    assert not _top(set(modules)) & {"IPython", "matplotlib", "traitlets"}
    assert backend is None  # child processes are not told to use the kernel's backend


def test_the_kernel_starts_answering_before_asyncio_is_imported() -> None:
    # kernel.server._app binds and starts the I/O thread (which answers kernel_info)
    # with only these imports; asyncio and the server come after (module docstring).
    loaded = _top(_modules_after_import("kernel.server._app"))
    assert not loaded & {"asyncio", "jedi", "pygments", "sqlite3"}
    assert "zmq" in loaded


def test_the_console_draws_its_first_prompt_without_pyzmq() -> None:
    # Everything the console imports before its first prompt is drawn (the kernel is
    # launched, not yet connected to: shell.console._startup's docstring). pyzmq and
    # the protocol's message modules come after, when it connects.
    loaded = _modules_after_import(
        "shell.cli, shell.console._startup, shell.console._repl, kernel.client._manager"
    )
    assert "prompt_toolkit" in _top(loaded)
    assert "zmq" not in _top(loaded)
    assert not loaded & {
        "kernel.client._client",
        "kernel.protocol._session",
        "kernel.protocol._tracker",
    }
