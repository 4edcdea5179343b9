"""The ``loom`` command line: argument parsing and dispatch to subcommands."""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence

from kernel import __version__

__all__ = ["main"]


def _parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser; ``loom run``'s options (and their imports) only when ``run`` is used."""
    parser = argparse.ArgumentParser(
        prog="loom",
        description="Loom: a terminal-first interactive Python environment for Jupyter kernels.",
    )
    parser.add_argument("--version", action="version", version=f"loom {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    console = sub.add_parser("console", help="start the interactive console (the default)")
    _add_console_args(parser)
    # Before or after `console` (`loom --vi console`, `loom console --vi`): the
    # subcommand's copies leave unset options alone rather than reset them to defaults.
    _add_console_args(console, defaults=False)

    spec = sub.add_parser("kernelspec", help="list installed kernelspecs")
    spec_sub = spec.add_subparsers(dest="kernelspec_command", metavar="ACTION", required=True)
    spec_sub.add_parser("list", help="list installed kernelspecs and where they live")
    install = spec_sub.add_parser("install", help="register Loom's kernel as kernelspec 'loom'")
    where = install.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for the current user")
    where.add_argument(
        "--sys-prefix", action="store_true", help="install into sys.prefix (the default)"
    )
    where.add_argument("--prefix", metavar="PREFIX", help="install into PREFIX/share/jupyter")

    run = sub.add_parser("run", help="run a script or notebook non-interactively")
    if "run" in argv:  # importing the batch runner would slow the console's start
        from shell.batch._run import add_run_arguments

        add_run_arguments(run)

    cluster = sub.add_parser("cluster", help="start, stop and list engine clusters")
    controller = sub.add_parser("controller", help="run a cluster's controller")
    engine = sub.add_parser("engine", help="run one engine of a cluster")
    if {"cluster", "controller", "engine"} & set(argv):  # keep parallel off the console's start
        from parallel.cluster._cli import add_cluster_arguments

        add_cluster_arguments(cluster, controller, engine)

    kernel = sub.add_parser("kernel", help="run a Loom kernel (Ctrl-C stops it)")
    kernel.add_argument(
        "-f",
        "--connection-file",
        metavar="FILE",
        default=None,
        help="connection file to use (written if missing); default: a new one in the runtime dir",
    )
    return parser


def _add_console_args(parser: argparse.ArgumentParser, *, defaults: bool = True) -> None:
    default = None if defaults else argparse.SUPPRESS
    parser.add_argument(
        "--kernel",
        metavar="NAME",
        default=default,
        help="kernelspec to start (see `loom kernelspec list`)",
    )
    parser.add_argument(
        "--existing",
        metavar="FILE",
        nargs="?",
        const="",
        default=default,
        help="attach to a running kernel by its connection file: a path, or a name or part "
        "of one in the Jupyter runtime dir (default: the newest)",
    )
    parser.add_argument(
        "--vi",
        action="store_true",
        default=default,
        help="vi key bindings at the prompt (also: LOOM_EDITING_MODE=vi)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    args = _parser(argv).parse_args(argv)
    if args.command == "kernelspec":
        return _kernelspec(args)
    if args.command == "run":
        from shell.batch._run import run_batch

        return run_batch(args)
    if args.command == "cluster":
        from parallel.cluster._cli import run_cluster_command

        return run_cluster_command(args)
    if args.command in ("controller", "engine"):
        from parallel.cluster._cli import run_controller_command

        return run_controller_command(args)
    if args.command == "kernel":
        # The kernel runs as a child, so that Ctrl-C here can stop it (a kernel's own
        # SIGINT interrupts cells): see kernel.server._standalone.
        from kernel.server._standalone import supervise

        return supervise(args.connection_file)
    # Start-up allocates much and frees little, so collecting meanwhile only costs
    # time; the console resumes collecting once its first prompt is up.
    gc.disable()
    try:
        import asyncio

        from shell.console._loop import ConsoleLoop
        from shell.console._startup import run_console

        with asyncio.Runner(loop_factory=ConsoleLoop) as runner:
            return runner.run(
                run_console(kernel_name=args.kernel, existing=args.existing, vi_mode=args.vi)
            )
    except KeyboardInterrupt:
        return 130
    finally:
        gc.enable()


def _kernelspec(args: argparse.Namespace) -> int:
    if args.kernelspec_command == "install":
        from kernel import install_kernelspec

        path = install_kernelspec(user=args.user, prefix=args.prefix)
        print(f"Installed kernelspec loom in {path}")
        return 0
    from kernel import format_kernelspec_list

    print(format_kernelspec_list())
    return 0


if __name__ == "__main__":
    sys.exit(main())
