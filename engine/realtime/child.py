"""``octguide serve`` as a child process on free loopback ports, for replay and benchmarks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from streams.errors import OctguideError

ENGINE_START_TIMEOUT_S = 120.0


class ChildEngineError(OctguideError):
    """The child engine did not start."""


class ChildEngine:
    """``octguide serve`` in a child process on free loopback ports (a fresh interpreter: no
    fork after a zmq.Context)."""

    def __init__(self, config: Path | None, overrides: list[str], results_dir: Path, block: bool):
        self.config = config
        self.overrides = list(overrides)
        self.results_dir = results_dir
        self.block = block
        self.process: subprocess.Popen | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="octguide-replay-")

    def start(self) -> str:
        endpoints_file = Path(self._tmp.name) / "endpoints.json"
        command = [sys.executable, "-m", "engine.commands.cli", "serve", "--endpoints-file", str(endpoints_file),
                   "--log-level", "WARNING"]
        if self.config:
            command += ["--config", str(self.config)]
        defaults = {f"server.{name}_endpoint": "tcp://127.0.0.1:*"
                    for name in ("frames", "overlay", "status", "control")}
        defaults["server.results_dir"] = str(self.results_dir)
        if self.block:
            defaults["server.overload_policy"] = "block"
        for key, value in defaults.items():
            command += ["--set", f"{key}={json.dumps(value)}"]
        for text in self.overrides:  # the user's --set wins over replay's defaults
            command += ["--set", text]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [
            str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")])))
        self.process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + ENGINE_START_TIMEOUT_S
        while not endpoints_file.exists():
            if self.process.poll() is not None:
                raise ChildEngineError(f"the engine exited with status {self.process.returncode} while starting")
            if time.monotonic() > deadline:
                self.stop()
                raise ChildEngineError(f"the engine did not start within {ENGINE_START_TIMEOUT_S:.0f} s")
            time.sleep(0.05)
        return json.loads(endpoints_file.read_text())["control"]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._tmp.cleanup()
