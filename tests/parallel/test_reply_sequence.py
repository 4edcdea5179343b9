"""Reply sequence numbers: a client tells a lost reply (gap) from a late one (issue 13).

- the pure rule (``ReplySequence``): in order, gap (how many missing), duplicate,
  unnumbered;
- a real engine numbers its shell replies to each client session 1, 2, 3...;
- a reply that went elsewhere (a request sent under the client's session on another
  socket: the engine answers there) is a gap the client reports at once as a warning.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from _cluster_support import module_cluster

from kernel.transport._frames import send_frames
from parallel import Client
from parallel.client._sequence import ReplySequence

pytestmark = pytest.mark.timeout(120)


def test_the_rule_in_order_gap_duplicate_unnumbered() -> None:
    sequence = ReplySequence()
    assert [sequence.observe(n) for n in (1, 2, 3)] == ["in-order"] * 3
    assert sequence.observe(6) == "gap"
    assert (sequence.last, sequence.missing) == (6, 2)
    assert sequence.observe(5) == "duplicate"
    assert sequence.observe(6) == "duplicate"
    assert sequence.observe(7) == "in-order"
    assert [sequence.observe(x) for x in (None, "8", 0, -1, True)] == ["unnumbered"] * 5
    assert (sequence.last, sequence.missing) == (7, 2)


def test_an_excused_gap_is_no_news_once_and_only_as_wide_as_excused() -> None:
    """Requests failed because their replies could not come back (a direct shell that
    broke) leave a gap of at most their number before the next reply, and no more."""
    sequence = ReplySequence()
    assert [sequence.observe(n) for n in (1, 2)] == ["in-order"] * 2
    sequence.excuse(2)
    assert sequence.observe(4) == "in-order"  # one of the two got a number, one did not
    assert (sequence.last, sequence.missing, sequence.excused) == (4, 0, 0)
    assert sequence.observe(6) == "gap"  # spent: the next gap is news again
    sequence.excuse(1)
    assert sequence.observe(9) == "gap"  # wider than excused
    assert (sequence.last, sequence.missing) == (9, 2)  # 5, and one of 7 and 8


def test_a_new_link_starts_from_the_first_number_it_sees() -> None:
    """An engine that re-attached keeps counting: its next reply is no gap."""
    sequence = ReplySequence()
    assert sequence.observe(57) == "in-order"
    assert sequence.observe(58) == "in-order"
    assert sequence.observe(60) == "gap"
    assert sequence.missing == 1


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with module_cluster(tmp_path_factory, "sequence", 1) as client:
        yield client


def test_an_engine_numbers_its_replies_to_each_client(client: Client) -> None:
    (engine,) = client.ids
    view = client[engine]
    view.apply_sync(abs, -1)
    first = client.link(engine).sequence.last
    assert first >= 1
    for i in range(3):
        assert view.apply_sync(abs, -i) == i
    assert client.link(engine).sequence.last == first + 3
    assert client.link(engine).sequence.missing == 0


def test_a_reply_that_never_arrives_is_reported_as_a_gap(client: Client, tmp_path: Path) -> None:
    (engine,) = client.ids
    link = client.link(engine)
    client[engine].apply_sync(abs, -1)
    before = link.sequence.last
    # A request under this client's session, sent on another socket: the engine numbers
    # its reply in this client's sequence, and the reply goes to that socket.
    other: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    other.linger = 0
    try:
        other.connect(link.info.url("shell"))
        message = client.session.message("kernel_info_request", {})
        send_frames(other, client.session.serialize(message))
        assert other.poll(30_000), "the engine did not answer"
        other.recv_multipart()
    finally:
        other.close()
    with pytest.warns(RuntimeWarning, match=rf"engine {engine}: 1 reply lost before reply"):
        assert client[engine].apply_sync(abs, -5) == 5
    assert (link.sequence.last, link.sequence.missing) == (before + 2, 1)
