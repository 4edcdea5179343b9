"""A minimal console: a line loop that runs code through a kernel.

This is the foundation's stand-in for the full prompt_toolkit console (issue
"The Loom console"). It already follows the console's rules: one asyncio loop,
no threads, output printed as it arrives, plain mode when stdin is not a tty.
"""

from __future__ import annotations

import sys
from contextlib import AsyncExitStack
from pathlib import Path

from prompt_toolkit import PromptSession

from kernel import KernelClient, KernelError, connect_client, start_kernel
from kernel.protocol import ConnectionFileError, ConnectionInfo, Message, runtime_dir

__all__ = ["newest_connection_file", "run_console"]

DEFAULT_KERNEL = "loom"


def newest_connection_file() -> Path:
    """The most recently modified ``kernel-*.json`` in the runtime directory."""
    files = sorted(runtime_dir().glob("kernel-*.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise ConnectionFileError(f"no connection files in {runtime_dir()}; start a kernel first")
    return files[-1]


def print_output(message: Message) -> None:
    """Render one iopub output as plain text."""
    content = message.content
    match message.msg_type:
        case "stream":
            stream = sys.stderr if content.get("name") == "stderr" else sys.stdout
            stream.write(str(content.get("text", "")))
            stream.flush()
        case "execute_result":
            text = content.get("data", {}).get("text/plain", "")
            print(f"Out[{content.get('execution_count')}]: {text}", flush=True)
        case "display_data" | "update_display_data":
            print(content.get("data", {}).get("text/plain", ""), flush=True)
        case "error":
            print("\n".join(content.get("traceback", [])), file=sys.stderr, flush=True)


async def _read_cell(session: PromptSession[str] | None, client: KernelClient, n: int) -> str:
    if session is None:
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line
    lines = [await session.prompt_async(f"In [{n}]: ")]
    while True:
        reply = await client.is_complete("\n".join(lines))
        if reply.get("status") != "incomplete":
            return "\n".join(lines)
        indent = str(reply.get("indent", ""))
        more = await session.prompt_async("   ...: ", default=indent)
        if not more.strip():
            return "\n".join(lines)
        lines.append(more)


async def _input(prompt: str, password: bool) -> str:
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line.rstrip("\n")
    session: PromptSession[str] = PromptSession()
    return await session.prompt_async(prompt, is_password=password)


async def run_console(kernel_name: str | None = None, existing: str | None = None) -> int:
    """Run the line loop until EOF; returns the process exit status."""
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    async with AsyncExitStack() as stack:
        try:
            if existing is not None:
                path = Path(existing) if existing else newest_connection_file()
                info = ConnectionInfo.read(path)
                client = await stack.enter_async_context(connect_client(info))
            else:
                _, client = await stack.enter_async_context(
                    start_kernel(kernel_name or DEFAULT_KERNEL)
                )
        except (KernelError, ConnectionFileError) as exc:
            print(f"loom: {exc}", file=sys.stderr)
            return 1
        client.input_handler = _input
        if interactive:
            print(client.kernel_info.get("banner", ""))
        session: PromptSession[str] | None = PromptSession() if interactive else None
        count = 1
        while True:
            try:
                code = await _read_cell(session, client, count)
            except EOFError:
                return 0
            except KeyboardInterrupt:
                continue
            if not code.strip():
                continue
            reply = await client.execute(code, on_output=print_output)
            count = int(reply.content.get("execution_count", count)) + 1
