"""What the control channel does to the main thread and the process: interrupt, end.

These run on ``loom-io`` (the control handlers of ``KernelServer``) or at process exit;
they live in this room because they use ``threading`` and signals across threads.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading

import zmq

__all__ = ["exit_later", "flush_sent", "sigint_main_thread"]

#: An interrupt sends SIGINT up to this many times, this many seconds apart,
#: until the main thread's handler has run (see :func:`sigint_main_thread`).
SIGINT_ATTEMPTS = 10
SIGINT_RETRY = 0.05


def sigint_main_thread(handled: int | None) -> None:
    """Send SIGINT to the main thread, again while its handler has not run (<= ~0.5 s).

    ``handled`` is the eventfd the interpreter's SIGINT handler writes to, or ``None``
    when no handler of ours is installed (then one signal is sent). A signal that lands
    while the main thread waits for the GIL is handled at its next bytecode boundary;
    if it is just entering a blocking call such as ``time.sleep(60)``, that is after the
    call, and the interrupt is lost for its duration. A second signal arriving during
    the call interrupts it (EINTR).
    """
    main = threading.main_thread().ident or 0
    if handled is None:
        signal.pthread_kill(main, signal.SIGINT)
        return
    with contextlib.suppress(BlockingIOError):
        os.eventfd_read(handled)  # forget earlier signals
    for _ in range(SIGINT_ATTEMPTS):
        signal.pthread_kill(main, signal.SIGINT)
        if select.select([handled], [], [], SIGINT_RETRY)[0]:
            return


def exit_later(seconds: float, code: int = 0) -> None:
    """End the process after ``seconds`` whatever the main thread does.

    For a shutdown while a cell that swallows ``KeyboardInterrupt`` holds the main thread.
    """
    timer = threading.Timer(seconds, os._exit, args=(code,))
    timer.daemon = True
    timer.start()


def flush_sent(ctx: zmq.Context[zmq.Socket[bytes]], timeout: float = 2.0) -> None:
    """Let libzmq deliver what is queued (the shutdown_reply, the last idle) before exiting.

    ``close()`` returns at once and ``os._exit`` would drop unsent messages; terminating the
    context waits for them (up to each socket's linger) and ends the heartbeat's proxy. It runs
    on a throwaway thread, bounded by ``timeout``: a socket that user code opened on this
    context and never closed would block it forever.
    """
    terminator = threading.Thread(target=ctx.term, name="loom-zmq-term", daemon=True)
    terminator.start()
    terminator.join(timeout)
