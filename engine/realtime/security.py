"""Who may talk to the engine: loopback by default, CurveZMQ with an allow-list otherwise.

Patient images are sensitive, so the rules are:

* every endpoint on loopback (``tcp://127.0.0.0/8``, ``tcp://[::1]``, ``tcp://localhost``) or
  ``ipc://`` / ``inproc://`` needs nothing more;
* binding any other address (a NIC, ``*``, ``0.0.0.0``) requires CurveZMQ: the engine's secret
  certificate and a folder of allowed client public certificates (both written by
  ``octguide keys``); a ZAP authenticator (pyzmq's ``ThreadAuthenticator``) then refuses every
  client whose key is not in the folder, and the connection is counted as an authentication
  failure;
* ``server.insecure = true`` (``octguide serve --insecure``) allows non-loopback binds without
  Curve: a decision logged as a warning and reported on the status channel, never a default.

Nothing on the wire is pickled: frames are raw buffers behind a fixed binary header, everything
else is JSON (``streams.wire.protocol``).
"""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from streams.errors import OctguideError

log = logging.getLogger(__name__)

SERVER_CERT = "engine"  #: certificate name of the engine (``engine.key`` / ``engine.key_secret``)


class SecurityError(OctguideError):
    """A bind that the security rules forbid, or keys that are missing or unreadable."""


def is_local_endpoint(endpoint: str) -> bool:
    """Whether a ZeroMQ endpoint is reachable only from this machine.

    >>> [is_local_endpoint(e) for e in ("tcp://127.0.0.1:5555", "tcp://[::1]:*", "ipc:///tmp/x",
    ...                                 "tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://eth0:5555")]
    [True, True, True, False, False, False]
    """
    transport, sep, address = endpoint.partition("://")
    if not sep:
        return False
    if transport in ("ipc", "inproc"):
        return True
    if transport not in ("tcp", "ws", "wss"):
        return False
    host = (address.rpartition(":")[0] if ":" in address else address).strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an interface name or "*": could be any address


@dataclass(frozen=True)
class SecurityPolicy:
    """The decided security of an engine's sockets.

    Attributes
    ----------
    mode : str
        "loopback" (all endpoints local, no Curve), "curve" (every socket a Curve server with the
        allow-list) or "insecure" (non-local binds without Curve, explicitly allowed).
    public_endpoints : tuple of str
        The endpoints that are not loopback/IPC.
    """

    mode: str
    public_endpoints: tuple[str, ...] = ()

    def describe(self) -> dict:
        return {"mode": self.mode, "public_endpoints": list(self.public_endpoints)}


def decide(endpoints: list[str], *, curve: bool, insecure: bool) -> SecurityPolicy:
    """Apply the rules (module docstring) to the endpoints the engine will bind.

    Raises
    ------
    SecurityError
        A non-local endpoint without ``curve`` or ``insecure``.

    >>> decide(["tcp://127.0.0.1:5555"], curve=False, insecure=False).mode
    'loopback'
    >>> try:
    ...     decide(["tcp://0.0.0.0:5555"], curve=False, insecure=False)
    ... except SecurityError as exc:
    ...     print(str(exc)[:60])
    tcp://0.0.0.0:5555 is not a loopback or IPC endpoint: bindin
    """
    public = tuple(e for e in endpoints if not is_local_endpoint(e))
    if curve:
        return SecurityPolicy("curve", public)
    if public and not insecure:
        raise SecurityError(
            f"{public[0]} is not a loopback or IPC endpoint: binding it needs CurveZMQ "
            "(server.curve = true with keys from 'octguide keys') or an explicit --insecure")
    if public:
        log.warning("INSECURE: binding %s without CurveZMQ (--insecure): patient images travel "
                    "unencrypted and unauthenticated", ", ".join(public))
        return SecurityPolicy("insecure", public)
    return SecurityPolicy("loopback")


class CurveServer:
    """The engine side of CurveZMQ: its key pair and the ZAP authenticator with the allow-list.

    Parameters
    ----------
    secret_file : str or Path
        The engine's ``engine.key_secret``.
    authorized_dir : str or Path
        Folder of the allowed clients' public certificates (``*.key``).
    """

    def __init__(self, secret_file: str | Path, authorized_dir: str | Path):
        self.secret_file = Path(secret_file)
        self.authorized_dir = Path(authorized_dir)
        self.public: bytes = b""
        self.secret: bytes = b""
        self._auth: ThreadAuthenticator | None = None

    def start(self, context: zmq.Context) -> None:
        """Load the keys and start the authenticator on ``context`` (before any socket binds)."""
        if not zmq.has("curve"):
            raise SecurityError("this libzmq was built without CURVE support")
        if not self.secret_file.is_file():
            raise SecurityError(f"{self.secret_file}: no engine secret certificate "
                                "(create one with 'octguide keys --name engine')")
        if not self.authorized_dir.is_dir():
            raise SecurityError(f"{self.authorized_dir}: no folder of authorized client keys")
        public, secret = zmq.auth.load_certificate(str(self.secret_file))
        if not secret:
            raise SecurityError(f"{self.secret_file}: holds no secret key")
        self.public, self.secret = public, secret
        auth = ThreadAuthenticator(context, log=log.getChild("zap"))
        auth.start()
        auth.configure_curve(domain="*", location=str(self.authorized_dir))
        self._auth = auth

    def apply(self, sock: zmq.Socket) -> None:
        """Make ``sock`` a Curve server (before binding)."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True

    def stop(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    def authorized_keys(self) -> int:
        """How many client certificates the allow-list holds."""
        return len(list(self.authorized_dir.glob("*.key")))


def generate_keys(out_dir: str | Path, name: str) -> tuple[Path, Path]:
    """Create ``NAME.key`` (public) and ``NAME.key_secret`` (pair, mode 0600) in ``out_dir``.

    Raises
    ------
    SecurityError
        The files exist already (keys are never overwritten silently).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    public, secret = out / f"{name}.key", out / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise SecurityError(f"{path} exists; remove it first to replace the key")
    old_umask = os.umask(0o077)
    try:
        zmq.auth.create_certificates(str(out), name)
    finally:
        os.umask(old_umask)
    secret.chmod(0o600)
    return public, secret
