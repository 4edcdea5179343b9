"""The heartbeat echo (messaging spec, "Heartbeat for kernels").

It runs ``zmq.proxy`` on one ROUTER socket in a dedicated thread: the echo
loop is inside libzmq with the GIL released, so it keeps answering even while
user code holds the GIL in a long C call (where the I/O thread, being Python,
could not run). That is the one reason this is a separate thread.
"""

from __future__ import annotations

import signal
import threading

import zmq

__all__ = ["start_heartbeat"]


def start_heartbeat(socket: zmq.Socket[bytes]) -> threading.Thread:
    """Start echoing on ``socket`` (already bound) until the context terminates."""

    def echo() -> None:
        # SIGINT is for the main thread (see _iothread._send): never let this thread take it.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            zmq.proxy(socket, socket)
        except zmq.ContextTerminated:
            pass
        finally:
            socket.close(linger=0)

    thread = threading.Thread(target=echo, name="loom-heartbeat", daemon=True)
    thread.start()
    return thread
