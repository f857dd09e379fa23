"""What the viewer serves over HTTP and to whom: the page's files, and the checks a WebSocket
handshake must pass (docs/viewer.md, "Who may read it").

The files are ``index.html``, ``viewer.css`` and the page's ES modules (no bundler: the browser
loads each module itself, which it does only when it is served with a JavaScript MIME type);
any other path is 404. The WebSocket (``/ws``) is refused unless its ``Host`` header names the
bound address (``localhost``/``127.0.0.1``/``[::1]`` interchangeable on loopback), its
``Origin`` - when it has one, as every browser's does - is the viewer's own or one allowed, and
its query carries the per-session token.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from pathlib import Path

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from engine.viewer.errors import ViewerError

ASSETS = Path(__file__).with_name("assets")
#: The page's ES modules (``viewer.js`` imports the others; no bundler): each is served as
#: ``text/javascript``, which a browser requires of a module script.
PAGE_MODULES = ("viewer.js", "common.js", "state.js", "socket.js", "messages.js", "navigation.js",
                "xsection.js", "lmode.js", "strips.js", "panels.js")
#: The page's files: name -> content type. Nothing else is served.
ASSET_TYPES = {"index.html": "text/html; charset=utf-8", "viewer.css": "text/css; charset=utf-8",
               **{name: "text/javascript; charset=utf-8" for name in PAGE_MODULES}}
#: The page loads nothing from anywhere but this server (the cath lab has no internet).
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' blob: data:; "
                           "connect-src 'self' ws: wss:; script-src 'self'; style-src 'self'")


def check_assets() -> None:
    """Raise :class:`ViewerError` when a file of the page is missing (a broken install)."""
    missing = [name for name in ASSET_TYPES if not (ASSETS / name).is_file()]
    if missing:
        raise ViewerError(f"viewer assets missing from {ASSETS}: {', '.join(missing)}")


def asset_response(connection: ServerConnection, path: str) -> Response:
    """The page file at URL ``path`` (``/`` is ``index.html``; the query already removed), or 404."""
    name = "index.html" if path == "/" else path.lstrip("/")
    if name not in ASSET_TYPES:
        return connection.respond(404, "not found\n")
    body = (ASSETS / name).read_bytes()
    headers = Headers([("Content-Type", ASSET_TYPES[name]), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-store"),
                       ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
                       ("X-Content-Type-Options", "nosniff")])
    return Response(200, "OK", headers, body)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 bracketed or not) is this machine only.

    >>> is_loopback("localhost"), is_loopback("[::1]"), is_loopback("127.0.0.2"), is_loopback("10.0.0.1")
    (True, True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_host(host: str) -> str:
    """``host`` as it appears in a URL (IPv6 literals bracketed).

    >>> url_host("::1"), url_host("127.0.0.1")
    ('[::1]', '127.0.0.1')
    """
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class PageGate:
    """Who may open the WebSocket: the session token and the origins allowed besides the
    viewer's own, checked against the address the viewer is bound to.

    Parameters
    ----------
    allowed_origins : iterable of str
        Origins (``scheme://host[:port]``) besides the viewer's own whose pages may connect.
    token : str or None
        The session token pages must present (default: a new random one).
    """

    def __init__(self, allowed_origins: Iterable[str] = (), token: str | None = None):
        self.token = token or secrets.token_urlsafe(24)
        self.allowed_origins = {o.rstrip("/").lower() for o in allowed_origins}

    def url(self, host: str, port: int) -> str:
        """The page's address with the token (what ``octguide view`` prints)."""
        return f"http://{url_host(host)}:{port}/?token={self.token}"

    @staticmethod
    def hosts(host: str, port: int) -> set[str]:
        """``Host`` header values that name the bound address."""
        names = {url_host(host)}
        if is_loopback(host):
            names |= {"localhost", "127.0.0.1", "[::1]"}
        return {f"{n}:{port}".lower() for n in names}

    def refusal(self, request: Request, host: str, port: int) -> str | None:
        """Why a WebSocket handshake is refused, or None when it may go on."""
        own = self.hosts(host, port)
        hosts, origins = request.headers.get_all("Host"), request.headers.get_all("Origin")
        given = hosts[0].strip().lower() if len(hosts) == 1 else ""
        if given not in own:
            return f"Host {', '.join(hosts) or '(none)'} is not this viewer's address"
        if len(origins) > 1:
            return "more than one Origin header"
        if origins:
            origin = origins[0].strip().rstrip("/").lower()
            if origin not in {f"http://{h}" for h in own} | self.allowed_origins:
                return f"Origin {origin} is not allowed (octguide view --allow-origin)"
        query = request.path.split("?", 1)[1] if "?" in request.path else ""
        tokens = [v for k, _, v in (kv.partition("=") for kv in query.split("&")) if k == "token"]
        if len(tokens) != 1 or not hmac.compare_digest(tokens[0].encode(), self.token.encode()):
            return "missing or wrong session token (open the URL octguide view printed)"
        return None


__all__ = ["ASSETS", "ASSET_TYPES", "CONTENT_SECURITY_POLICY", "PAGE_MODULES", "PageGate", "asset_response",
           "check_assets", "is_loopback", "url_host"]
