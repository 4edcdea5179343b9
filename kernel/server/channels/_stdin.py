"""``input()`` and ``getpass()`` answered by the front end over the stdin channel.

User code runs synchronously on the main thread, so the round trip is
synchronous too: send ``input_request`` to the identity of the client whose
request is running, then block on the stdin socket. The blocking poll is
interruptible: an interrupt (SIGINT) raises ``KeyboardInterrupt`` out of it.
"""

from __future__ import annotations

import builtins
import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import zmq

from kernel.protocol import JSONDict, ProtocolError, Session

__all__ = ["StdinBridge", "StdinNotImplementedError"]


class StdinNotImplementedError(RuntimeError):
    """The front end said it cannot answer input requests (``allow_stdin`` false)."""


class StdinBridge:
    def __init__(self, socket: zmq.Socket[bytes], session: Session) -> None:
        self._socket = socket
        self._session = session

    def request(
        self, prompt: str, password: bool, parent: JSONDict, identities: list[bytes]
    ) -> str:
        """Ask the front end for a line; raises ``EOFError`` if it sends none."""
        # Drop answers to earlier, abandoned requests (e.g. after an interrupt).
        while self._socket.poll(0):
            self._socket.recv_multipart()
        msg = self._session.message(
            "input_request", {"prompt": prompt, "password": password}, parent=parent
        )
        self._socket.send_multipart(self._session.serialize(msg, identities))
        while True:
            frames = self._socket.recv_multipart()
            try:
                reply = self._session.deserialize(frames).message
            except ProtocolError:
                continue
            # A late answer to an abandoned request can still arrive now; clients
            # that set no parent (jupyter_client's ``input()``) are taken at their word.
            answers = reply.parent_header.get("msg_id", msg.msg_id)
            if reply.msg_type == "input_reply" and answers == msg.msg_id:
                return str(reply.content.get("value", ""))

    @contextmanager
    def installed(self, allow: bool, parent: JSONDict, identities: list[bytes]) -> Iterator[None]:
        """Route ``input``/``getpass`` to the requesting front end for one cell."""
        saved_input, saved_getpass = builtins.input, getpass.getpass

        def _input(prompt: Any = "") -> str:
            if not allow:
                raise StdinNotImplementedError("input() is not supported by this front end")
            import sys

            sys.stdout.flush()
            sys.stderr.flush()
            return self.request(str(prompt), False, parent, identities)

        def _getpass(prompt: str = "Password: ", stream: Any = None) -> str:
            if not allow:
                raise StdinNotImplementedError("getpass() is not supported by this front end")
            return self.request(prompt, True, parent, identities)

        builtins.input = _input
        getpass.getpass = _getpass
        try:
            yield
        finally:
            builtins.input, getpass.getpass = saved_input, saved_getpass
