"""A real two-node Ray cluster on this machine for tests and benchmarks: ``ray start --head``
and ``ray start --address`` on loopback, each node with its own temp dir and free ports, run
niced with ``--block`` so each node is one process of ours, stopped by PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
NODE_OBJECT_STORE_BYTES = 80_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout_s: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode} (see the node's log)")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.25)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:.0f} s")


class LocalCluster:
    """``nodes`` Ray nodes (1 CPU each) on 127.0.0.1; ``address`` is the head's GCS."""

    def __init__(self, root: Path, nodes: int = 2, cpus_per_node: int = 1):
        self.root, self.nodes, self.cpus = Path(root), nodes, cpus_per_node
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []
        self.logs: list = []
        self.temps: list[str] = []

    def _start(self, k: int, head: bool) -> None:
        temp = tempfile.mkdtemp(prefix=f"og-ray{k}-", dir="/tmp")  # AF_UNIX paths: < 108 bytes
        self.temps.append(temp)
        args = ["nice", "-n", "10", RAY, "start", "--block", "--node-ip-address=127.0.0.1",
                f"--num-cpus={self.cpus}", f"--object-store-memory={NODE_OBJECT_STORE_BYTES}",
                f"--temp-dir={temp}", f"--dashboard-agent-listen-port={free_port()}",
                f"--dashboard-agent-grpc-port={free_port()}", f"--metrics-export-port={free_port()}",
                f"--runtime-env-agent-port={free_port()}"]
        args += (["--head", f"--port={self.port}", "--include-dashboard=false"] if head
                 else [f"--address={self.address}"])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / f"node{k}.log", "wb")  # noqa: SIM115 (closed in stop())
        self.logs.append(log)
        self.procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                           start_new_session=True))

    def start(self, timeout_s: float = 120.0) -> str:
        self._start(0, head=True)
        _wait_port(self.port, timeout_s, self.procs[0])
        for k in range(1, self.nodes):
            self._start(k, head=False)
        return self.address

    def wait_nodes(self, ray, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while sum(n["Alive"] for n in ray.nodes()) < self.nodes:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.nodes} nodes not alive after {timeout_s:.0f} s")
            time.sleep(0.5)

    def stop(self) -> None:
        """SIGTERM each node's process group (its ``ray start`` and the processes it started),
        by PID, then SIGKILL what is left."""
        for proc in reversed(self.procs):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for proc in self.procs:  # workers the raylet forked stay in its group
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for log in self.logs:
            log.close()
        for temp in self.temps:
            shutil.rmtree(temp, ignore_errors=True)
