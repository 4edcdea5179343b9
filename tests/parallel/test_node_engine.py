"""An engine on another node (``_node_engine``) binds that node's address but reaches the
hub at the cluster file's (issue 13; no root needed, unlike ``test_partition.py``).

127.0.0.2 stands for "this node's address" (all of 127/8 is local on Linux): the engine
binds it, and its hub link must still dial the controller's 127.0.0.1. Before the fix
the link dialled the engine's own address and never reached the hub, so its task
records never arrived (and a partitioned engine never registered again). With
``durability="sync"`` the engine's reply waits for the hub's commit of its record, so
an answered task proves the link reached the hub.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _launch_fixtures import isolate_launch, kill_pid

from parallel import Cluster

pytestmark = pytest.mark.timeout(120)

#: The engine process: _node_engine with "this node's address" fixed to 127.0.0.2.
ENGINE = (
    "import sys; import parallel.launchers._node_engine as node;"
    " node.address_towards = lambda info: '127.0.0.2';"
    " sys.argv = ['_node_engine', '-f', sys.argv[1]]; sys.exit(node.main())"
)


def test_a_node_engine_binds_its_address_and_its_records_reach_the_hub(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate_launch(monkeypatch, tmp_path)
    cluster = Cluster(n=0, ip="127.0.0.1", transport="tcp", durability="sync")
    engine: subprocess.Popen[bytes] | None = None
    try:
        rc = cluster.start_and_connect_sync(timeout=60)
        argv = [sys.executable, "-P", "-c", ENGINE, str(cluster.cluster_file)]
        engine = subprocess.Popen(argv, start_new_session=True)
        rc = cluster.wait_for_engines(1, timeout=60)
        (engine_id,) = rc.ids
        assert rc._records[engine_id].address == "127.0.0.2"
        done = rc[engine_id].apply_async(lambda: 6 * 7)
        assert done.get(timeout=30) == 42  # sync: answered once the hub had its record
        assert rc.result_status(done.msg_ids)["completed"] == done.msg_ids
    finally:
        cluster.stop_cluster_sync()
        if engine is not None:
            kill_pid(engine.pid)
            engine.wait(10)
