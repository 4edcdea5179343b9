"""End to end: the Loom kernel under load — output floods, a stalled subscriber,
pipelined requests and a hundred clients at once."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
import zmq
from _kernel_e2e import (
    REPO_ROOT,
    Kernel,
    assert_bracketed,
    isolate_kernel_env,
    kill_and_reap,
    loom_kernel,
    pipe_reader,
    raw_socket,
    read_line,
    wait_exit,
)
from _support import Reaper, run

from kernel.protocol import Message, Session

TIMEOUT = 10.0
GIB = 1 << 30


@pytest.fixture(autouse=True)
def _kernel_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_kernel_env(monkeypatch, tmp_path)


def peak_rss(pid: int) -> int:
    """The process's peak resident set size in bytes (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


class LineCounter:
    """Counts stdout lines as they arrive, keeping only the last one."""

    def __init__(self) -> None:
        self.lines = 0
        self.last = ""
        self.results: list[str] = []
        self._partial = ""

    def __call__(self, message: Message) -> None:
        if message.msg_type == "stream" and message.content["name"] == "stdout":
            text = self._partial + message.content["text"]
            self.lines += text.count("\n")
            head, _, self._partial = text.rpartition("\n")
            if head:
                self.last = head.rsplit("\n", 1)[-1]
        elif message.msg_type == "execute_result":
            self.results.append(message.content["data"]["text/plain"])


async def flood(k: Kernel, lines: int, timeout: float) -> LineCounter:
    counter = LineCounter()

    def on_output(message: Message) -> None:
        counter(message)
        k.log.add(message)

    code = f"for i in range({lines}): print(i)\n'done'"
    reply = await k.client.execute(code, on_output=on_output, timeout=timeout)
    assert reply.content["status"] == "ok"
    assert counter.results == ["'done'"]
    assert counter.lines == lines
    assert counter.last == str(lines - 1)
    # the result and idle come after every line
    outputs = assert_bracketed(k.log, reply)
    assert outputs[-1].msg_type == "execute_result"
    return counter


@pytest.mark.timeout(240)
def test_ten_million_lines_reach_a_reading_client() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:
            await flood(k, 10_000_000, timeout=200)
            assert peak_rss(k.pid) < GIB
            reply = await k.client.execute("1", timeout=TIMEOUT)
            assert reply.content["status"] == "ok"

    run(scenario, timeout=220)


def test_a_subscriber_that_never_reads_does_not_stall_the_kernel() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:
            stalled = raw_socket(k.info, "iopub", zmq.SUB)
            try:
                stalled.rcvhwm = 10
                stalled.subscribe(b"")
                # Read only the welcome, proving the subscription is live; then never again.
                session = Session(k.info.key, k.info.signature_scheme)
                async with asyncio.timeout(TIMEOUT):
                    welcome = session.deserialize(await stalled.recv_multipart()).message
                assert welcome.msg_type == "iopub_welcome"
                await flood(k, 2_000_000, timeout=60)
                reply = await k.client.execute("'still answering'", timeout=TIMEOUT)
                assert reply.content["status"] == "ok"
                assert peak_rss(k.pid) < GIB
            finally:
                stalled.close(linger=0)

    run(scenario, timeout=90)


def test_ten_thousand_pipelined_requests() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:
            replies = await asyncio.gather(
                *(k.client.execute("pass", timeout=60) for _ in range(10_000))
            )
            assert all(r.content["status"] == "ok" for r in replies)
            counts = [r.content["execution_count"] for r in replies]
            assert counts == list(range(1, 10_001))  # answered in the order sent
            assert len({r.parent_id for r in replies}) == 10_000

    run(scenario, timeout=90)


# -- a hundred clients -------------------------------------------------------------

WORKERS = 4
CLIENTS_PER_WORKER = 25
REQUESTS_PER_CLIENT = 5  # at once, each: every subscriber sees 4 messages of each of 500
SENTINEL = "all-clients-done"

# Each worker process connects CLIENTS_PER_WORKER clients (each with its own iopub
# subscription), reports "ready", waits for "go", sends every client's requests at
# once, reports "sent", waits until every subscription has seen the sentinel cell go
# idle (or gives up after a while), and prints what each subscription saw as one JSON
# line, so a missing message fails the test by name instead of hanging it. The cell's
# idle marks the end, not its stream text: print() writes its text and its newline
# separately, and a loaded kernel may flush them as two stream messages.
WORKER = r"""
import asyncio, json, sys
from collections import Counter
from contextlib import AsyncExitStack
from kernel import connect_client
from kernel.protocol import ConnectionInfo

SENTINEL = sys.argv[5]

def tag(worker, client, request):
    return f"w{worker}c{client}r{request}"

async def main():
    info = ConnectionInfo.read(sys.argv[1])
    worker, clients, requests = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    async with AsyncExitStack() as stack:
        subs = []
        for c in range(clients):
            client = await stack.enter_async_context(connect_client(info, ready_timeout=60))
            seen = Counter()  # (msg_type, detail, parent msg_id) -> times seen
            texts = {}  # parent msg_id -> stream text
            sentinel = set()  # the sentinel cell's msg_id, once its input is seen
            done = asyncio.Event()
            def record(msg, seen=seen, texts=texts, sentinel=sentinel, done=done):
                if msg.msg_type == "status":
                    state = msg.content["execution_state"]
                    key = ("status", state, msg.parent_id)
                    if state == "idle" and msg.parent_id in sentinel:
                        done.set()
                elif msg.msg_type == "stream":
                    texts[msg.parent_id] = texts.get(msg.parent_id, "") + msg.content["text"]
                    key = ("stream", "", msg.parent_id)
                else:
                    key = (msg.msg_type, "", msg.parent_id)
                    if msg.msg_type == "execute_input" and SENTINEL in msg.content["code"]:
                        sentinel.add(msg.parent_id)
                seen[key] += 1
            client.on_status = lambda state, msg, record=record: record(msg)
            client.on_foreign_output = lambda msg, own, record=record: record(msg)
            subs.append((client, record, seen, texts, done))
        print("ready", flush=True)
        assert (await stdin.readline()).strip() == b"go"

        async def one(c, r):
            client, record = subs[c][0], subs[c][1]
            code = f"print({tag(worker, c, r)!r} + '\\n', end='')"  # one write
            inputs = []
            def on_output(msg):
                record(msg)
                if msg.msg_type == "execute_input":
                    inputs.append(msg)
            reply = await client.execute(code, on_output=on_output, timeout=60)
            assert reply.content["status"] == "ok", reply.content
            # routed to its sender: the reply answers the request whose input we saw
            assert [m.content["code"] for m in inputs] == [code]
            assert reply.parent_id == inputs[0].parent_id
            return reply.parent_id

        ids = await asyncio.gather(
            *(one(c, r) for c in range(clients) for r in range(requests))
        )
        print("sent " + json.dumps(ids), flush=True)
        try:
            await asyncio.wait_for(asyncio.gather(*(s[4].wait() for s in subs)), 40)
        except TimeoutError:
            pass  # the report names what is missing
        report = []
        for client, record, seen, texts, done in subs:
            report.append({
                "seen": [[*key, n] for key, n in seen.items()],
                "texts": texts,
                "sentinel_idle": done.is_set(),
            })
        print("report " + json.dumps(report), flush=True)

asyncio.run(main())
"""


def spawn_worker(argv: list[str], reaper: Reaper) -> subprocess.Popen[bytes]:
    popen = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
        start_new_session=True,
    )
    reaper.track_popen(popen)
    return popen


@pytest.mark.timeout(200)  # above the scenario's own limit, which names the stage
def test_a_hundred_clients_get_their_own_replies_and_every_output_once(
    tmp_path: Path,
) -> None:
    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:
            connection_file = tmp_path / "kernel.json"
            k.info.write(connection_file)
            workers: list[subprocess.Popen[bytes]] = []
            try:
                for w in range(WORKERS):
                    argv = [
                        sys.executable,
                        "-c",
                        WORKER,
                        str(connection_file),
                        str(w),
                        str(CLIENTS_PER_WORKER),
                        str(REQUESTS_PER_CLIENT),
                        SENTINEL,
                    ]
                    workers.append(spawn_worker(argv, reaper))
                outs = [await pipe_reader(p.stdout) for p in workers]
                for out in outs:
                    assert await read_line(out, 60) == "ready"
                for p in workers:
                    assert p.stdin is not None
                    p.stdin.write(b"go\n")
                    p.stdin.flush()
                sent: dict[str, tuple[int, int, int]] = {}
                for w, out in enumerate(outs):
                    line = await read_line(out, 70)
                    assert line.startswith("sent ")
                    ids = json.loads(line.removeprefix("sent "))
                    assert len(ids) == CLIENTS_PER_WORKER * REQUESTS_PER_CLIENT
                    for i, msg_id in enumerate(ids):
                        c, r = divmod(i, REQUESTS_PER_CLIENT)
                        sent[msg_id] = (w, c, r)
                assert len(sent) == WORKERS * CLIENTS_PER_WORKER * REQUESTS_PER_CLIENT
                # iopub is ordered per subscriber: once a subscriber sees this cell's
                # output, it has seen everything published before it.
                reply = await k.client.execute(f"print({SENTINEL!r})", timeout=TIMEOUT)
                assert reply.content["status"] == "ok"
                reports = []
                for out in outs:
                    line = await read_line(out, 50)
                    assert line.startswith("report ")
                    reports.extend(json.loads(line.removeprefix("report ")))
                for p in workers:
                    await wait_exit(p.pid, TIMEOUT)
                    assert p.wait() == 0
            finally:
                for p in workers:
                    kill_and_reap(p)

            assert len(reports) == WORKERS * CLIENTS_PER_WORKER
            for report in reports:
                seen = {(t, d, parent): n for t, d, parent, n in report["seen"]}
                assert report["sentinel_idle"], "a subscriber never saw the sentinel cell end"
                assert report["texts"][reply.parent_id] == SENTINEL + "\n"
                for msg_id, (w, c, r) in sent.items():
                    # every subscriber saw every request's messages exactly once
                    for key in (
                        ("status", "busy", msg_id),
                        ("execute_input", "", msg_id),
                        ("stream", "", msg_id),
                        ("status", "idle", msg_id),
                    ):
                        assert seen.get(key) == 1, (key, seen.get(key))
                    assert report["texts"][msg_id] == f"w{w}c{c}r{r}\n"

    run(scenario, timeout=180)
