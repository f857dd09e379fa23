"""The Ray session a fleet command runs in: a running cluster (``--address``) or a local one
started here with the machine's cores and a small object store (the machine may be shared)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import ray

OBJECT_STORE_BYTES = 160 * (1 << 20)  #: object store of a locally started Ray, bytes (frames stream through it)
READ_CPUS = 0.05  #: CPUs a read/decode task claims: file reads wait on the disk, not the cores


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[dict]:
    """Connect to the cluster at ``address`` (``HOST:PORT`` or ``ray://``), or use the session
    this process already has, or start a local one with ``num_cpus`` (default: the machine's
    cores). Yields ``ray.cluster_resources()``; a session started here is shut down on exit."""
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, object_store_memory=OBJECT_STORE_BYTES,
                     include_dashboard=False, log_to_driver=False)
        started = True
    try:
        yield dict(ray.cluster_resources())
    finally:
        if started:
            ray.shutdown()


def worker_cpus(total_cpus: float, workers: int) -> float:
    """CPUs each analysis actor claims so that ``workers`` actors and two read tasks fit in
    ``total_cpus`` (at most 2 dp; at least 0.1).

    >>> worker_cpus(2, 2), worker_cpus(2, 1), worker_cpus(16, 4)
    (0.95, 1.9, 3.97)
    """
    return max(0.1, int(100 * (total_cpus - 2 * READ_CPUS) / workers) / 100)
