"""``reanalyse`` through a real two-node Ray cluster on this machine: tasks run on both nodes
and the results equal the in-process run's bit for bit (timings aside)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from engine.fleet.reanalyse import ReanalysisOptions, reanalyse
from tests.engine.fleet.conftest import RAY_WARNINGS, measured, ray, read_run
from tests.engine.fleet.local_cluster import LocalCluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), RAY_WARNINGS]


def test_two_node_cluster_runs_on_both_nodes_and_equals_the_in_process_run(archive, tmp_path):
    local = tmp_path / "local"
    ray.init(num_cpus=2, object_store_memory=100 * (1 << 20), include_dashboard=False, log_to_driver=False)
    try:
        reanalyse(archive, local, ReanalysisOptions(workers=1, show_progress=False))
    finally:
        ray.shutdown()
    cluster = LocalCluster(tmp_path / "cluster")
    try:
        address = cluster.start()
        ray.init(address=address, _node_ip_address="127.0.0.1", log_to_driver=False)
        cluster.wait_nodes(ray)
        summary = reanalyse(archive, tmp_path / "remote",
                            ReanalysisOptions(workers=2, address=address, show_progress=False))
    finally:
        ray.shutdown()
        cluster.stop()
    assert len(summary["nodes"]) == 2, summary["nodes"]  # an analysis actor on each node
    assert summary["analysed"] == 3 and summary["failed"] == 0
    assert pq.read_table(tmp_path / "remote" / "measurements.parquet").equals(
        pq.read_table(local / "measurements.parquet"))
    ours, theirs = read_run(local), read_run(tmp_path / "remote")
    assert ours.keys() == theirs.keys()
    for pid in ours:
        assert [measured(r) for r in ours[pid][1]] == [measured(r) for r in theirs[pid][1]]
        strip = lambda d: {k: v for k, v in d.items() if k != "timing"}
        assert strip(ours[pid][0]) == strip(theirs[pid][0])
