"""Loom's ``KernelClient`` against the real ipykernel (the "python3" kernelspec).

The read-only checks share one module-scoped kernel (:class:`SharedKernel`): it is
started and shut down by one *owner task* in a dedicated event loop, so the
``start_kernel`` context (and the client's task group inside it) is entered and
left in the same task, and each test runs its scenario in that loop with
``loop.run_until_complete``. Scenarios that break the kernel (SIGSTOP, SIGKILL)
start their own kernel with ``asyncio.run``.

Every wait is bounded by ``asyncio.timeout``; no sleep stands in for an event.
Kernel processes are killed by PID whatever happens, must be gone afterwards, and
no Python thread but the main one may ever exist in this process (the client and
the manager must not start any).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from _support import assert_no_thread_but_main, is_gone, sigkill_and_reap

from kernel import (
    KernelClient,
    KernelDied,
    KernelManager,
    KernelProcess,
    connect_client,
    start_kernel,
)
from kernel.protocol import Message

pytestmark = pytest.mark.peer

Scenario = Callable[[KernelManager, KernelClient], Coroutine[Any, Any, None]]


def kill_by_pid(proc: KernelProcess | None) -> None:
    """Last safety net: SIGKILL the kernel's process group and reap it by PID."""
    if proc is not None and proc.returncode is None:  # never signal a reaped PID
        sigkill_and_reap(proc.pid)


def assert_only_main_thread() -> None:
    assert_no_thread_but_main()


def text_plain(msg: Message) -> str:
    return str(msg.content["data"]["text/plain"])


@pytest.fixture(scope="module", autouse=True)
def kernel_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Private runtime and IPython dirs (connection files, history) for every kernel here."""
    base = tmp_path_factory.mktemp("ipykernel-client")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_RUNTIME_DIR", str(base / "runtime"))
        mp.setenv("IPYTHONDIR", str(base / "ipython"))
        # ipykernel 7 cannot shut down gracefully in asyncio debug mode (see test_manager).
        mp.delenv("PYTHONASYNCIODEBUG", raising=False)
        yield


# -- the shared kernel ---------------------------------------------------------------


class SharedKernel:
    """One ipykernel and a connected client, owned by a task of a private event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.process: KernelProcess | None = None
        self._release = asyncio.Event()
        self._started: asyncio.Future[tuple[KernelManager, KernelClient]] = (
            self.loop.create_future()
        )
        self._owner = self.loop.create_task(self._own())
        try:
            self.manager, self.client = self.loop.run_until_complete(self._wait_started())
        except BaseException:
            with contextlib.suppress(BaseException):
                self.close()
            raise
        self.process = self.manager.process
        assert self.process is not None

    async def _own(self) -> None:
        async with start_kernel("python3") as pair:
            self._started.set_result(pair)
            await self._release.wait()

    async def _wait_started(self) -> tuple[KernelManager, KernelClient]:
        async with asyncio.timeout(90):
            waiters: set[asyncio.Future[Any]] = {self._started, self._owner}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if not self._started.done():
            self._owner.result()  # raises the start error
            raise AssertionError("the owner task ended without starting a kernel")
        return self._started.result()

    def run(self, scenario: Scenario, *, timeout: float = 30.0) -> None:
        """Run ``scenario(manager, client)`` in the kernel's loop, bounded by ``timeout``."""

        async def bounded() -> None:
            async with asyncio.timeout(timeout):
                await scenario(self.manager, self.client)

        assert not self._owner.done(), "the shared kernel's owner task has ended"
        self.loop.run_until_complete(bounded())
        assert_only_main_thread()  # while the kernel and its client are up

    def close(self) -> None:
        try:
            if not self._owner.done():
                if self._started.done():
                    self._release.set()  # shut the kernel down gracefully
                else:
                    self._owner.cancel()  # still starting: start_kernel cleans up

                async def finish() -> None:
                    async with asyncio.timeout(30):
                        await self._owner

                self.loop.run_until_complete(finish())
            self._owner.result()
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            kill_by_pid(self.process)
            self.loop.close()


@pytest.fixture(scope="module")
def shared(kernel_env: None) -> Iterator[SharedKernel]:
    kernel = SharedKernel()
    try:
        yield kernel
    finally:
        kernel.close()
    assert kernel.process is not None
    assert kernel.process.returncode is not None  # reaped
    assert is_gone(kernel.process.pid)
    assert_only_main_thread()


def run_own_kernel(scenario: Scenario, *, timeout: float = 60.0) -> None:
    """Run ``scenario`` against a kernel of its own in a fresh loop; check it is gone after."""
    processes: list[KernelProcess] = []

    async def main() -> None:
        async with asyncio.timeout(timeout), start_kernel("python3") as (km, kc):
            assert km.process is not None
            processes.append(km.process)
            await scenario(km, kc)

    try:
        asyncio.run(main())
    finally:
        for proc in processes:
            kill_by_pid(proc)
    assert processes
    assert is_gone(processes[0].pid)
    assert_only_main_thread()


# -- execute -------------------------------------------------------------------------

CELL = """\
import sys
print("out1")
sys.stdout.flush()
print("err1", file=sys.stderr)
sys.stderr.flush()
from IPython.display import display, HTML
display(HTML('<b>x</b>'))
1+1
"""


def test_execute_delivers_outputs_in_order_before_returning(shared: SharedKernel) -> None:
    async def scenario(km: KernelManager, kc: KernelClient) -> None:
        timeline: list[tuple[str, Message]] = []
        foreign: list[Message] = []
        kc.on_status = lambda state, msg: timeline.append((f"status:{state}", msg))
        kc.on_foreign_output = lambda msg, _own: foreign.append(msg)
        try:
            reply = await kc.execute(CELL, on_output=lambda m: timeline.append(("output", m)))
            # Nothing may come later: once a following request has finished, every
            # earlier iopub message has arrived (iopub is ordered).
            await kc.execute("pass")
        finally:
            kc.on_status = None
            kc.on_foreign_output = None
        assert reply.msg_type == "execute_reply"
        assert reply.content["status"] == "ok"
        request_id = reply.parent_id
        assert request_id is not None
        ours = [(kind, m) for kind, m in timeline if m.parent_id == request_id]
        kinds = [
            kind if kind != "output" else f"{m.msg_type}:{m.content.get('name', '')}"
            for kind, m in ours
        ]
        assert kinds == [
            "status:busy",
            "execute_input:",
            "stream:stdout",
            "stream:stderr",
            "display_data:",
            "execute_result:",
            "status:idle",
        ]
        outputs = [m for kind, m in ours if kind == "output"]
        assert outputs[0].content["code"] == CELL
        assert outputs[1].content["text"] == "out1\n"
        assert outputs[2].content["text"] == "err1\n"
        assert outputs[3].content["data"]["text/html"] == "<b>x</b>"
        assert text_plain(outputs[4]) == "2"
        assert outputs[4].content["execution_count"] == reply.content["execution_count"]
        assert [m for m in foreign if m.parent_id == request_id] == []

    shared.run(scenario)


def test_execute_error_reply_and_traceback(shared: SharedKernel) -> None:
    async def scenario(km: KernelManager, kc: KernelClient) -> None:
        outputs: list[Message] = []
        reply = await kc.execute("1/0", on_output=outputs.append)
        assert reply.content["status"] == "error"
        assert reply.content["ename"] == "ZeroDivisionError"
        errors = [m for m in outputs if m.msg_type == "error"]
        assert len(errors) == 1
        error = errors[0].content
        assert error["ename"] == "ZeroDivisionError"
        assert error["traceback"]
        assert any("ZeroDivisionError" in line for line in error["traceback"])
        assert kc.pending_requests == frozenset()

    shared.run(scenario)


def test_execute_iter_yields_outputs_then_the_reply(shared: SharedKernel) -> None:
    async def scenario(km: KernelManager, kc: KernelClient) -> None:
        got = [m async for m in kc.execute_iter("print('a', flush=True); 40 + 2")]
        assert [m.msg_type for m in got] == [
            "execute_input",
            "stream",
            "execute_result",
            "execute_reply",
        ]
        assert got[1].content["text"] == "a\n"
        assert text_plain(got[2]) == "42"
        assert got[-1].content["status"] == "ok"
        assert {m.parent_id for m in got} == {got[-1].parent_id}

    shared.run(scenario)


def test_execute_iter_cancelled_mid_wait_leaves_no_task(shared: SharedKernel) -> None:
    async def scenario(km: KernelManager, kc: KernelClient) -> None:
        before = asyncio.all_tasks()
        got: list[Message] = []

        async def consume() -> None:
            async with asyncio.timeout(0.3):
                async for msg in kc.execute_iter("import time; time.sleep(0.8)"):
                    got.append(msg)

        with pytest.raises(TimeoutError):
            await consume()
        assert [m.msg_type for m in got] in ([], ["execute_input"])
        left = asyncio.all_tasks() - before
        if left:  # cancelled tasks need a loop iteration or two to finish
            await asyncio.wait(left, timeout=2)
        assert [t for t in left if not t.done()] == []
        assert kc.pending_requests == frozenset()
        assert (await kc.execute("pass", timeout=10)).content["status"] == "ok"

    shared.run(scenario)


# -- introspection and other shell requests ---------------------------------------------


def test_complete_inspect_is_complete(shared: SharedKernel) -> None:
    async def scenario(km: KernelManager, kc: KernelClient) -> None:
        completion = await kc.complete("import o")
        assert completion["status"] == "ok"
        assert "os" in completion["matches"]
        assert completion["cursor_start"] == len("import ")
        assert completion["cursor_end"] == len("import o")

        info = await kc.inspect("len", detail_level=0)
        assert info["status"] == "ok"
        assert info["found"] is True
        assert "len" in info["data"]["text/plain"]

        block = await kc.is_complete("for i in x:")
        assert block["status"] == "incomplete"
        assert block["indent"] == "    "
        assert (await kc.is_complete("1+1"))["status"] == "complete"
        # What ipykernel 7 (IPython's TransformerManager.check_complete) says:
        assert (await kc.is_complete("1+"))["status"] == "invalid"

    shared.run(scenario)


def test_history_tail_and_search(shared: SharedKernel) -> None:
    async def scenario(km: KernelManager, kc: KernelClient) -> None:
        cells = ["hist_a = 101", "hist_b = 102", "hist_c = 103"]
        for code in cells:
            reply = await kc.execute(code, store_history=True)
            assert reply.content["status"] == "ok"
        tail = await kc.history("tail", n=3)
        assert tail["status"] == "ok"
        assert [entry[2] for entry in tail["history"]] == cells
        counts = [entry[1] for entry in tail["history"]]
        assert counts == sorted(counts)
        assert counts[-1] == reply.content["execution_count"]

        found = await kc.history("search", pattern="hist_b*", n=10)
        assert found["status"] == "ok"
        assert [entry[2] for entry in found["history"]] == ["hist_b = 102"]

    shared.run(scenario)


def test_kernel_info_and_comm_info(shared: SharedKernel) -> None:
    async def scenario(km: KernelManager, kc: KernelClient) -> None:
        for channel in ("shell", "control"):
            info = await kc.kernel_info_request(channel=channel)
            assert info["status"] == "ok"
            assert info["protocol_version"].startswith("5.")
            assert info["language_info"]["name"] == "python"
            assert info["implementation"] == "ipython"
        assert kc.kernel_info["language_info"]["name"] == "python"  # from wait_for_ready

        comms = await kc.comm_info()
        assert comms["status"] == "ok"
        assert isinstance(comms["comms"], dict)
        assert (await kc.comm_info("no.such.target"))["comms"] == {}

    shared.run(scenario)


# -- stdin -------------------------------------------------------------------------------


def test_input_and_getpass_reach_the_input_handler(shared: SharedKernel) -> None:
    async def scenario(km: KernelManager, kc: KernelClient) -> None:
        asked: list[tuple[str, bool]] = []

        async def answer(prompt: str, password: bool) -> str:
            asked.append((prompt, password))
            return "secret" if password else "yes"

        outputs: list[Message] = []
        kc.input_handler = answer
        try:
            reply = await kc.execute("print(input('q? '))", on_output=outputs.append)
            assert reply.content["status"] == "ok"
            reply = await kc.execute(
                "import getpass; print(getpass.getpass('pw: '))", on_output=outputs.append
            )
            assert reply.content["status"] == "ok"
        finally:
            kc.input_handler = None
        assert asked == [("q? ", False), ("pw: ", True)]
        streams = "".join(m.content["text"] for m in outputs if m.msg_type == "stream")
        assert "yes\n" in streams
        assert "secret\n" in streams

        # A per-call handler wins over the client's default.
        async def per_call(prompt: str, password: bool) -> str:
            return "per call"

        values: list[Message] = []
        await kc.execute("print(input())", on_input=per_call, on_output=values.append)
        assert [m.content["text"] for m in values if m.msg_type == "stream"] == ["per call\n"]

    shared.run(scenario)


def test_input_without_handler_raises_stdin_not_implemented(shared: SharedKernel) -> None:
    async def scenario(km: KernelManager, kc: KernelClient) -> None:
        assert kc.input_handler is None
        reply = await kc.execute("input('never asked: ')")  # allow_stdin is then False
        assert reply.content["status"] == "error"
        assert reply.content["ename"] == "StdinNotImplementedError"

    shared.run(scenario)


def test_failing_input_handler_answers_empty_and_client_survives(
    shared: SharedKernel, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(km: KernelManager, kc: KernelClient) -> None:
        async def broken(prompt: str, password: bool) -> str:
            raise RuntimeError("handler bug")

        reply = await kc.execute("answer = input('q? ')", on_input=broken, timeout=10)
        assert reply.content["status"] == "ok"
        outputs: list[Message] = []
        await kc.execute("answer", on_output=outputs.append, timeout=10)
        assert [text_plain(m) for m in outputs if m.msg_type == "execute_result"] == ["''"]

    with caplog.at_level("ERROR", logger="loom.client"):
        shared.run(scenario)
    assert any("input handler failed" in r.getMessage() for r in caplog.records)


# -- foreign and late output --------------------------------------------------------------


def test_other_clients_output_is_foreign(shared: SharedKernel) -> None:
    async def scenario(km: KernelManager, kc: KernelClient) -> None:
        seen = asyncio.Event()
        foreign: list[tuple[Message, bool]] = []

        def on_foreign(msg: Message, own_session: bool) -> None:
            foreign.append((msg, own_session))
            if msg.msg_type == "stream" and msg.content.get("text") == "from other\n":
                seen.set()

        kc.on_foreign_output = on_foreign
        try:
            async with connect_client(km.info) as other:
                assert other.session.session_id != kc.session.session_id
                reply = await other.execute('print("from other")')
                assert reply.content["status"] == "ok"
                async with asyncio.timeout(10):
                    await seen.wait()
        finally:
            kc.on_foreign_output = None
        streams = [(m, own) for m, own in foreign if m.msg_type == "stream"]
        assert len(streams) == 1
        msg, own_session = streams[0]
        assert own_session is False
        assert msg.parent_id == reply.parent_id
        assert kc.pending_requests == frozenset()

    shared.run(scenario)


# A thread of the cell prints once the test writes to a FIFO, i.e. certainly after the
# request finished (a timer in the kernel would race the reply on a loaded machine). The
# cell opens the FIFO O_RDWR, which never blocks on Linux, so the test's non-blocking
# open for writing finds a reader. A new thread has no parent of its own in ipykernel,
# so its output carries the kernel's latest parent: this (finished) cell.
LATE_CELL = """\
import os, threading
_late_fd = os.open({fifo!r}, os.O_RDWR)
threading.Thread(target=lambda: (os.read(_late_fd, 1), print("late")), daemon=True).start()
"""


def test_late_output_of_own_cell_is_foreign_own_session(
    shared: SharedKernel, tmp_path: Path
) -> None:
    fifo = tmp_path / "late.fifo"
    os.mkfifo(fifo)

    async def scenario(km: KernelManager, kc: KernelClient) -> None:
        late = asyncio.Event()
        found: list[tuple[Message, bool]] = []

        def on_foreign(msg: Message, own_session: bool) -> None:
            if msg.msg_type == "stream" and "late" in msg.content.get("text", ""):
                found.append((msg, own_session))
                late.set()

        kc.on_foreign_output = on_foreign
        outputs: list[Message] = []
        try:
            reply = await kc.execute(LATE_CELL.format(fifo=str(fifo)), on_output=outputs.append)
            assert reply.content["status"] == "ok"
            assert kc.pending_requests == frozenset()
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(fd, b"x")
            finally:
                os.close(fd)
            async with asyncio.timeout(10):
                await late.wait()
        finally:
            kc.on_foreign_output = None
        assert [m.msg_type for m in outputs] == ["execute_input"]
        assert len(found) == 1
        msg, own_session = found[0]
        assert own_session is True
        assert msg.content["text"] == "late\n"
        assert msg.parent_header.get("session") == kc.session.session_id
        assert msg.parent_id == reply.parent_id

    shared.run(scenario)


# -- timeouts ------------------------------------------------------------------------------


def test_request_timeout_raises_and_client_keeps_working(
    shared: SharedKernel, tmp_path: Path
) -> None:
    go = tmp_path / "go"  # the cell cannot end before this exists

    async def scenario(km: KernelManager, kc: KernelClient) -> None:
        wait = f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.01)"
        with pytest.raises(TimeoutError):
            await kc.execute(wait, timeout=0.2)
        assert kc.pending_requests == frozenset()  # the request was forgotten
        go.touch()
        # The next request queues behind that cell and is answered once it ends.
        outputs: list[Message] = []
        reply = await kc.execute("1", on_output=outputs.append, timeout=15)
        assert reply.content["status"] == "ok"
        assert [text_plain(m) for m in outputs if m.msg_type == "execute_result"] == ["1"]
        assert kc.pending_requests == frozenset()

    shared.run(scenario)


# -- scenarios that break their kernel --------------------------------------------------------


def test_heartbeat_reports_a_stopped_kernel_and_its_return() -> None:
    async def scenario(km: KernelManager, kc: KernelClient) -> None:
        changes: list[bool] = []
        lost, back = asyncio.Event(), asyncio.Event()

        def on_heartbeat(responsive: bool) -> None:
            changes.append(responsive)
            (back if responsive else lost).set()

        kc.on_heartbeat = on_heartbeat
        proc = km.process
        assert proc is not None
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            stopped_at = time.monotonic()
            async with asyncio.timeout(5):
                await lost.wait()
            assert time.monotonic() - stopped_at < 5
            assert proc.is_stopped()
            assert_only_main_thread()
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        async with asyncio.timeout(5):
            await back.wait()
        assert changes == [False, True]
        assert (await kc.execute("1", timeout=10)).content["status"] == "ok"

    run_own_kernel(scenario)


def test_fail_pending_fails_the_cell_of_a_killed_kernel() -> None:
    async def scenario(km: KernelManager, kc: KernelClient) -> None:
        running = asyncio.Event()
        code = "import time; print('sleeping', flush=True); time.sleep(30)"
        cell = asyncio.ensure_future(
            kc.execute(code, on_output=lambda m: running.set() if m.msg_type == "stream" else None)
        )
        try:
            async with asyncio.timeout(10):
                await running.wait()
            proc = km.process
            assert proc is not None
            os.kill(proc.pid, signal.SIGKILL)
            async with asyncio.timeout(5):
                assert await km.wait_exit() == -signal.SIGKILL
            assert not cell.done()
            kc.fail_pending(KernelDied("the kernel was killed"))
            with pytest.raises(KernelDied, match="killed"):
                async with asyncio.timeout(1):
                    await cell
            assert kc.pending_requests == frozenset()
        finally:
            cell.cancel()

    run_own_kernel(scenario)
