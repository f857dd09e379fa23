"""A real PACS for the tests: Orthanc (Debian packages ``orthanc``, ``orthanc-dicomweb``) started
on free loopback ports with its own temporary storage and configuration.

Both ports listen on 127.0.0.1 only. Orthanc 1.10 has no setting for the address it binds
(``DicomPort`` and ``HttpPort`` are bare port numbers, bound to 0.0.0.0), so it runs with
``loopback_bind.c`` preloaded (built here with the system C compiler, cached by its source's
hash): a bind to the any-address becomes a bind to loopback. :meth:`Orthanc.listening` reads
the kernel's table to prove it (tested). Behind that, a second wall: ``RemoteAccessAllowed:
false`` (HTTP refuses non-loopback clients), stores only from the AE titles configured here at
127.0.0.1 (``DicomAlwaysAllowStore: false``, ``DicomCheckModalityHost: true``), no echo from
strangers. Without a C compiler the shim is not built, and the tests skip (fail when
``OCTGUIDE_REQUIRE_ORTHANC=1``) rather than open ports on every interface.
Where Orthanc is not installed the tests skip, or fail when ``OCTGUIDE_REQUIRE_ORTHANC=1``
(CI: ``.ci/install-orthanc.sh`` installs it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

DICOMWEB_PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc")
ORTHANC_AE = "ORTHANC"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unavailable(message: str) -> None:
    if os.environ.get("OCTGUIDE_REQUIRE_ORTHANC") == "1":
        pytest.fail(message + "; OCTGUIDE_REQUIRE_ORTHANC=1")
    pytest.skip(message)


def orthanc_binary() -> str:
    path = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if os.path.exists("/usr/sbin/Orthanc") else None)
    if path is None:
        _unavailable("Orthanc is not installed (.ci/install-orthanc.sh installs it)")
    return path


SHIM_SOURCE = Path(__file__).with_name("loopback_bind.c")


def loopback_shim() -> str:
    """The shared object that turns Orthanc's binds to the any-address into loopback binds."""
    source = SHIM_SOURCE.read_bytes()
    name = f"octguide-loopback-bind-{hashlib.sha256(source).hexdigest()[:16]}.so"
    target = Path(tempfile.gettempdir()) / name
    if target.exists():
        return str(target)
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        _unavailable("no C compiler to build the loopback-bind shim for Orthanc")
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    run = subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(partial),
                          str(SHIM_SOURCE), "-ldl"],
                         capture_output=True, text=True, timeout=120, check=False)
    if run.returncode != 0:
        _unavailable(f"the loopback-bind shim did not build: {run.stderr.strip()[-300:]}")
    os.replace(partial, target)
    return str(target)


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # state 0A: LISTEN
                raw = bytes.fromhex(address)
                # the kernel prints each 32-bit word in host (little-endian) order
                packed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(socket.inet_ntop(family, packed))
    return found


def _dicomweb_plugin() -> str | None:
    for folder in DICOMWEB_PLUGIN_DIRS:
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
            if name.startswith("libOrthancDicomWeb.so"):
                return os.path.join(folder, name)
    return None


class Orthanc:
    """One Orthanc process; :meth:`start` and :meth:`stop` may be called repeatedly (the
    storage survives, as a PACS that was down and comes back)."""

    def __init__(self, folder: Path, calling_aes: tuple[str, ...], dicom_port: int | None = None):
        self.folder = folder
        self.binary = orthanc_binary()
        self.shim = loopback_shim()
        self.http_port = free_port()
        self.dicom_port = dicom_port or free_port()
        self.process: subprocess.Popen | None = None
        folder.mkdir(parents=True, exist_ok=True)
        plugin = _dicomweb_plugin()
        config = {
            "Name": "octguide-test", "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "index"), "HttpPort": self.http_port,
            "DicomPort": self.dicom_port, "DicomAet": ORTHANC_AE, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "DicomCheckCalledAet": True,
            "DicomAlwaysAllowStore": False, "DicomAlwaysAllowEcho": False,
            "DicomCheckModalityHost": True,
            "DicomModalities": {ae.lower(): [ae, "127.0.0.1", 104] for ae in calling_aes},
            "HttpThreadsCount": 4, "DicomThreadsCount": 4, "StableAge": 1,
            "Plugins": [plugin] if plugin else [],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "SaveJobs": False, "ConcurrentJobs": 1,
        }
        (folder / "orthanc.json").write_text(json.dumps(config, indent=2))
        self.has_dicomweb = plugin is not None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb service root (STOW-RS, WADO-RS, QIDO-RS)."""
        return f"{self.url}/dicom-web"

    @property
    def destination(self) -> str:
        return f"{ORTHANC_AE}@127.0.0.1:{self.dicom_port}"

    def start(self, timeout_s: float = 60.0) -> None:
        with open(self.folder / "orthanc.log", "ab") as log:
            self.process = subprocess.Popen([self.binary, str(self.folder / "orthanc.json")],
                                            stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, "LD_PRELOAD": self.shim})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}: "
                                   f"{(self.folder / 'orthanc.log').read_text()[-2000:]}")
            try:
                self.get("/system")
                with socket.create_connection(("127.0.0.1", self.dicom_port), timeout=1.0):
                    return
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        raise RuntimeError("Orthanc did not start within the timeout")

    def listening(self) -> dict[str, set[str]]:
        """``{"http": addresses, "dicom": addresses}`` the running Orthanc listens on."""
        return {"http": listening_addresses(self.http_port),
                "dicom": listening_addresses(self.dicom_port)}

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def get(self, path: str, accept: str | None = None) -> bytes:
        request = urllib.request.Request(self.url + path, headers={"Accept": accept} if accept else {})
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()

    def json(self, path: str) -> object:
        return json.loads(self.get(path))

    def instances(self) -> list[dict]:
        """Every stored instance's main DICOM tags (SOPInstanceUID, ...)."""
        return [self.json(f"/instances/{i}") for i in self.json("/instances")]

    def sop_instance_uids(self) -> list[str]:
        return [i["MainDicomTags"]["SOPInstanceUID"] for i in self.instances()]


@pytest.fixture
def orthanc(tmp_path):
    server = Orthanc(tmp_path / "orthanc", calling_aes=("OCTGUIDE", "OCTSEND"))
    server.start()
    yield server
    server.stop()
