"""The viewer's bridge over real sockets, without a browser: an in-process engine (metal stage)
publishes, the bridge forwards, a WebSocket client reads what a page would (docs/viewer.md).
The page itself is tested in Chromium (test_viewer_browser.py)."""

from __future__ import annotations

import asyncio
import doctest
import json
import struct
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from websockets.sync.client import connect

from engine.compute.scan_convert import CartesianGrid, DisplayOrientation, ScanConverter
from engine.config import Config
from engine.display import overlay as overlay_module
from engine.display.overlay import display_grey, lmode_cuts
from engine.realtime import server as server_module
from engine.realtime.server import Engine
from engine.viewer import bridge as viewer_module
from engine.viewer.bridge import (
    CONTENT_SECURITY_POLICY,
    FrameEntry,
    ImageCache,
    Page,
    ResultsSource,
    ViewerBridge,
    ViewerError,
    read_results,
)
from streams.files.io import write_pullback
from streams.wire.protocol import LMODE_ANGLES_DEG
from streams.wire.zmq_io import ControlClient, FrameSender, Subscriber
from tests.engine.realtime.test_server import engine_config, small_pullback, wait_for_pullback

pytestmark = pytest.mark.timeout(90)

SIZE = 64  # the test engine's display grid (engine_config)


def test_doctests_pass():
    from engine.viewer import engine_link, feed, live, pages, results, serving
    for module in (viewer_module, pages, serving, feed, live, results, engine_link, server_module, overlay_module):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0


# ------------------------------------------------------------------------------ pure parts ---


def test_lmode_cut_runs_from_the_angle_side_through_the_centre():
    n = 101
    centre = (n - 1) / 2
    for angle in LMODE_ANGLES_DEG:
        grey = np.zeros((n, n), np.uint8)
        r = 30  # a bright dot 30 px from the centre at this screen angle (clockwise from 12)
        x = centre + r * np.sin(np.radians(angle))
        y = centre - r * np.cos(np.radians(angle))
        grey[round(y), round(x)] = 255
        cuts = lmode_cuts(grey)
        assert cuts.shape == (len(LMODE_ANGLES_DEG), n)
        k = LMODE_ANGLES_DEG.index(angle)
        assert abs(int(np.argmax(cuts[k])) - (centre - r)) <= 1  # on the angle side, 30 px out
        assert cuts[(k + 4) % len(LMODE_ANGLES_DEG)].max() == 0  # not on the perpendicular cut


def test_image_cache_drops_oldest_beyond_its_budget_and_counts_it():
    cache = ImageCache(budget_bytes=250)
    for frame in range(5):
        cache.put(frame, bytes(100), (10, 10))
    assert len(cache) == 2 and cache.dropped == 3
    assert cache.get(0) is None and cache.get(4) is not None


def test_page_outbox_keeps_every_record_but_only_the_newest_live_image():
    page = Page(ws=None)
    entries = [FrameEntry({"type": "frame", "frame": i}) for i in range(3)]
    image = (bytes(4), (2, 2))
    page.put_frame(entries[0], image, draw=True)
    page.put_frame(entries[1], None, draw=False)
    page.put_frame(entries[2], image, draw=True)
    kinds = [(item[1].header["frame"], item[2] is not None) for item in page._outbox]
    assert kinds == [(0, False), (1, False), (2, True)]
    assert page.images_stripped == 1


# ------------------------------------------------------------------------------ harness ---


class BridgeThread:
    """A started :class:`ViewerBridge` on its own event loop thread."""

    def __init__(self, bridge: ViewerBridge):
        self.bridge = bridge
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(bridge.start(), self.loop).result(timeout=60)
        self.ws_url = f"ws://127.0.0.1:{bridge.port}/ws?token={bridge.token}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.bridge.stop(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class PageClient:
    """What a page receives, decoded."""

    def __init__(self, url: str):
        # max_queue=None: buffer everything, so a test that does not read for a while (it waits on
        # the browser) still answers the bridge's keepalive pings; with the default 16 the reader
        # thread stops, the pongs go unread and the bridge drops this client (seen on slow CI).
        self._connection = connect(url, max_size=None, max_queue=None)
        self.ws = self._connection.__enter__()  # websockets 17: a connection is a context manager
        self.messages: list[dict] = []

    def next(self, timeout_s: float = 10.0) -> dict:
        data = self.ws.recv(timeout=timeout_s)
        if isinstance(data, str):
            message = json.loads(data)
        else:
            n = struct.unpack_from("<I", data)[0]
            message = json.loads(data[4:4 + n])
            payload = data[4 + n:]
            if message.get("lmode"):
                lm = message["lmode"]
                size = lm["n_angles"] * lm["length_px"]
                message["lmode_bytes"] = payload[lm["offset"]:lm["offset"] + size]
            if message.get("image"):
                im = message["image"]
                size = im["shape"][0] * im["shape"][1]
                message["image_pixels"] = np.frombuffer(
                    payload[im["offset"]:im["offset"] + size], np.uint8).reshape(im["shape"])
        self.messages.append(message)
        return message

    def until(self, done, timeout_s: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"not seen; last messages: {[m.get('type') for m in self.messages[-5:]]}"
            try:
                message = self.next(remaining)
            except TimeoutError:
                continue
            if done(message):
                return message

    def close(self) -> None:
        self._connection.__exit__(None, None, None)


def wait_state(client: PageClient, state: str, timeout_s: float = 30.0) -> dict:
    return client.until(lambda m: m["type"] == "state" and m["state"] == state, timeout_s)


@pytest.fixture
def live(tmp_path):
    """An engine (metal stage, images rendered) and a bridge to it."""
    started = []

    def make(render_image: bool = True, lost_after_s: float = 1.0):
        # A viewer takes two messages per frame (overlay, display): with the default per-display
        # queue of 4 a burst at full speed can overflow it (the bridge then recovers numbers only,
        # test_overlays_lost_in_transport_...); a viewer deployment sets a deeper queue.
        engine = Engine(engine_config(tmp_path / "results", analysis="metal", render_image=render_image,
                                      overlay_hwm=256))
        endpoints = engine.start()
        started.append(engine)
        bridge = BridgeThread(ViewerBridge(endpoints["control"], port=0, lost_after_s=lost_after_s))
        started.append(bridge)
        return engine, endpoints, bridge

    yield make
    for thing in reversed(started):
        thing.stop()


def send(endpoints: dict, pullback, pullback_id: str, fps: float | None = 60.0) -> dict:
    with FrameSender(endpoints["frames"], linger_ms=1000) as sender:
        sender.send_pullback(pullback, fps=fps, pullback_id=pullback_id)
    with ControlClient(endpoints["control"], timeout_s=10.0) as control:
        wait_for_pullback(control, pullback_id, lambda s: s["state"] == "complete")
        _, parts = control.request_parts("results", pullback_id=pullback_id)
    return json.loads(bytes(parts[0].buffer))


def expected_grey(frame) -> np.ndarray:
    """The engine's display image of a frame, computed here with the engine's own functions."""
    converter = ScanConverter(CartesianGrid(SIZE, 4.0), DisplayOrientation())
    converter.start()
    try:
        return display_grey(converter.process(frame))
    finally:
        converter.stop()


# ------------------------------------------------------------------------------ HTTP ---


def test_http_serves_only_the_page_assets_with_a_strict_csp(live):
    _, _, bridge = live()
    base = f"http://127.0.0.1:{bridge.bridge.port}"
    for path, kind in (("/", "text/html"), ("/viewer.js", "text/javascript"), ("/viewer.css", "text/css")):
        with urllib.request.urlopen(base + path, timeout=10) as reply:
            assert reply.status == 200
            assert reply.headers["Content-Type"].startswith(kind)
            assert reply.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
            assert reply.read()
    for path in ("/../engine/viewer/bridge.py", "/bridge.py", "/%2e%2e/pyproject.toml", "/etc/passwd"):
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(base + path, timeout=10)
        assert error.value.code == 404
        error.value.close()


def _handshake_status(url: str, **headers: str) -> int:
    """101 when the WebSocket opened, else the HTTP status the bridge refused it with."""
    from websockets.exceptions import InvalidStatus
    try:
        with connect(url, additional_headers=headers or None, open_timeout=10):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def _raw_handshake_status(port: int, target: str, host: str) -> int:
    """The status line's code of a hand-written WebSocket handshake with exactly this Host."""
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall((f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        return int(sock.recv(4096).split(b" ", 2)[1])


def test_websocket_accepts_only_its_own_origin_host_and_session_token(tmp_path):
    """Issue 13 item 9 over real sockets: a foreign origin, a rebinding Host, a missing or wrong
    token are each refused with 403 and counted; the printed URL's token, the own origin and a
    configured origin open."""
    bridge = BridgeThread(ViewerBridge("tcp://127.0.0.1:9", port=0,
                                       allowed_origins=["http://127.0.0.1:7777"]))
    try:
        b = bridge.bridge
        port, good = b.port, bridge.ws_url
        assert b.url == f"http://127.0.0.1:{port}/?token={b.token}" and len(b.token) >= 24
        assert _handshake_status(good) == 101  # no Origin: a local non-browser client with the token
        assert _handshake_status(good, Origin=f"http://127.0.0.1:{port}") == 101
        assert _handshake_status(good, Origin=f"http://localhost:{port}") == 101
        assert _handshake_status(good, Origin="http://127.0.0.1:7777") == 101  # configured
        assert _raw_handshake_status(port, f"/ws?token={b.token}", f"localhost:{port}") == 101
        refused = [
            _handshake_status(good, Origin="http://evil.example"),
            _handshake_status(good, Origin=f"http://127.0.0.1:{port + 1}"),
            _handshake_status(good, Origin="null"),
            _raw_handshake_status(port, f"/ws?token={b.token}", f"evil.example:{port}"),  # rebinding
            _raw_handshake_status(port, f"/ws?token={b.token}", "127.0.0.1"),  # no port
            _handshake_status(good, Host=f"evil.example:{port}"),  # two Host headers
            _handshake_status(f"ws://127.0.0.1:{port}/ws"),
            _handshake_status(f"ws://127.0.0.1:{port}/ws?token=" + "x" * len(b.token)),
            _handshake_status(f"{good}&token={b.token}"),
        ]
        assert refused == [403] * len(refused)
        assert b.stats["pages_refused"] == len(refused)
    finally:
        bridge.stop()
    other = ViewerBridge("tcp://127.0.0.1:9", port=0)
    assert other.token != b.token  # one per session


def test_page_assets_load_nothing_from_elsewhere():
    for name in viewer_module.ASSET_TYPES:  # the page and every one of its modules
        text = (viewer_module.ASSETS / name).read_text()
        for marker in ("http://", "https://", "//cdn", "@import url("):
            assert marker not in text, f"{name} refers to {marker}"


# ------------------------------------------------------------------------------ live mode ---


def test_live_pullback_reaches_the_page_frame_by_frame_with_images_and_guidance(live):
    _, endpoints, bridge = live()
    page = PageClient(bridge.ws_url)
    hello = page.next()
    assert hello["type"] == "hello" and hello["mode"] == "live"
    wait_state(page, "waiting")
    pullback = small_pullback(n_frames=10, seed=3)
    guidance = send(endpoints, pullback, "pb-view-1", fps=None)  # as fast as possible: backfill too
    page.until(lambda m: m["type"] == "guidance")
    done = wait_state(page, "complete")
    assert done["engine"]["render_image"] is True

    frames = [m for m in page.messages if m["type"] == "frame"]
    assert {m["frame"] for m in frames} == set(range(10))  # every frame, live or backfill
    assert all(m["pullback_id"] == "pb-view-1" and m["overlay"]["frame"] == m["frame"] for m in frames)
    drawn = [m for m in frames if m["draw"]]
    assert drawn and all(m["lane"] == "live" for m in drawn)
    imaged = [m for m in frames if m.get("image_pixels") is not None]
    assert imaged
    for m in imaged + [m for m in frames if m.get("lmode_bytes")]:
        grey = expected_grey(pullback.frame(m["frame"]))
        if m.get("image_pixels") is not None:
            np.testing.assert_array_equal(m["image_pixels"], grey)
        assert m["lmode_bytes"] == lmode_cuts(grey).tobytes()
    assert all(m["sent_unix_ns"] <= m["bridge_unix_ns"] for m in frames)
    message = next(m for m in page.messages if m["type"] == "guidance")
    assert message["guidance"]["pullback_id"] == "pb-view-1"
    assert message["guidance"]["mla"] == guidance["mla"] and message["guidance"]["counts"] == guidance["counts"]

    # A page opened now sees the whole pullback, its newest image and the guidance.
    late = PageClient(bridge.ws_url)
    late.until(lambda m: m["type"] == "guidance")
    got = [m for m in late.messages if m["type"] == "frame"]
    assert {m["frame"] for m in got} == set(range(10))
    assert any(m.get("image_pixels") is not None and m["draw"] for m in got)

    # Scrubbing: every frame, live or backfill, comes back with its own image, not drawn at once.
    for index in range(10):
        late.ws.send(json.dumps({"type": "get_image", "frame": index}))
        reply = late.until(lambda m: m["type"] in ("frame", "no_image"))
        assert reply["type"] == "frame" and reply["frame"] == index and not reply["draw"]
        np.testing.assert_array_equal(reply["image_pixels"], expected_grey(pullback.frame(index)))
    for bad in ("not json", json.dumps({"type": "delete_everything"}), json.dumps([1])):
        late.ws.send(bad)
        assert late.until(lambda m: m["type"] == "error")["error"]
    late.ws.send(json.dumps({"type": "get_image", "frame": 999}))
    assert late.until(lambda m: m["type"] == "no_image")["reason"] == "no such frame"
    page.close()
    late.close()


def test_overlays_lost_in_transport_are_recovered_from_the_engine_results(live):
    _, endpoints, bridge = live()
    deliver = bridge.bridge.feed._on_overlay

    def lossy(topic, envelope, overlay, raw):  # the publisher queue overflowed for frame 3
        if envelope["frame"] != 3:
            deliver(topic, envelope, overlay, raw)

    bridge.bridge.feed._on_overlay = lossy
    page = PageClient(bridge.ws_url)
    wait_state(page, "waiting")
    send(endpoints, small_pullback(n_frames=6, seed=8), "pb-lossy")
    page.until(lambda m: m["type"] == "guidance")
    frames = {m["frame"]: m for m in page.messages if m["type"] == "frame"}
    assert set(frames) == set(range(6))
    assert frames[3]["recovered"] is True and frames[3]["overlay"]["lumen"] is None
    with ControlClient(endpoints["control"], timeout_s=10.0) as control:
        _, parts = control.request_parts("results", pullback_id="pb-lossy")
    record = next(r for r in map(json.loads, bytes(parts[1].buffer).splitlines()) if r["frame"] == 3)
    assert frames[3]["status"] == record["status"] and frames[3]["lane"] == record["lane"]
    assert frames[3]["overlay"]["metrics"]["struts"] == len(record.get("struts") or [])
    assert bridge.bridge.stats["recovered"] == 1
    page.close()


def test_engine_without_images_still_drives_the_page(live):
    _, endpoints, bridge = live(render_image=False)
    page = PageClient(bridge.ws_url)
    wait_state(page, "waiting")
    send(endpoints, small_pullback(n_frames=4, seed=4), "pb-view-2")
    wait_state(page, "complete")
    frames = [m for m in page.messages if m["type"] == "frame"]
    assert {m["frame"] for m in frames} == set(range(4))
    assert all(m["image"] is None and m["lmode"] is None for m in frames)
    assert next(m for m in page.messages if m["type"] == "hello")["render_image"] is False
    page.ws.send(json.dumps({"type": "get_image", "frame": 0}))
    assert "render_image = false" in page.until(lambda m: m["type"] == "no_image")["reason"]
    page.close()


def test_killed_engine_shows_engine_lost_and_a_restarted_one_is_found_again(live, tmp_path):
    engine, endpoints, bridge = live(lost_after_s=1.0)
    page = PageClient(bridge.ws_url)
    wait_state(page, "waiting")
    engine.stop()
    lost = wait_state(page, "engine_lost", timeout_s=10)
    assert "no heartbeat" in lost["detail"]
    same = {f"{k}_endpoint": v for k, v in endpoints.items()}
    again = Engine(engine_config(tmp_path / "results2", analysis="metal", render_image=True, **same))
    again.start()
    try:
        wait_state(page, "waiting", timeout_s=20)
    finally:
        again.stop()
    page.close()


def test_engine_publishes_display_images_and_lmode_only_to_a_display_that_asks(tmp_path):
    engine = Engine(engine_config(tmp_path / "r", analysis="metal", render_image=True))
    endpoints = engine.start()
    try:
        with Subscriber(endpoints["overlay"], (b"overlay", b"backfill")) as plain:
            time.sleep(0.3)
            send(endpoints, small_pullback(n_frames=3, seed=5), "pb-plain")
            messages = [m for m in iter(lambda: plain.recv(0.5), None)]
        assert messages and all(len(m.raw) == 0 and "lmode" not in m.envelope for m in messages)
        assert "lumen_max_diameter_mm" in messages[0].body["metrics"]
        with Subscriber(endpoints["overlay"], (b"overlay", b"backfill", b"display")) as viewer:
            time.sleep(0.3)
            send(endpoints, small_pullback(n_frames=3, seed=6), "pb-viewer")
            messages = [m for m in iter(lambda: viewer.recv(0.5), None)]
        overlays = [m for m in messages if m.topic in (b"overlay", b"backfill")]
        displays = [m for m in messages if m.topic == b"display"]
        assert overlays and all(m.envelope["lmode"]["length_px"] == SIZE for m in overlays)
        assert all(len(m.raw[0].bytes) == len(LMODE_ANGLES_DEG) * SIZE for m in overlays)
        assert displays and all(m.envelope["image"]["colour"] == "GREY" for m in displays)
        assert all(len(m.raw[0].bytes) == SIZE * SIZE for m in displays)
    finally:
        engine.stop()


# ------------------------------------------------------------------------------ results mode ---


@pytest.fixture
def replayed(tmp_path):
    """A pullback run through a real engine (metal stage), its results folder and its file."""
    pullback = small_pullback(n_frames=6, seed=7)
    engine = Engine(engine_config(tmp_path / "engine", analysis="metal"))
    endpoints = engine.start()
    try:
        send(endpoints, pullback, "pb-results")
        with ControlClient(endpoints["control"], timeout_s=10.0) as control:
            _, parts = control.request_parts("results", pullback_id="pb-results")
    finally:
        engine.stop()
    out = tmp_path / "replay"
    out.mkdir()
    (out / "pullback.json").write_bytes(bytes(parts[0].buffer))
    (out / "frames.jsonl").write_bytes(bytes(parts[1].buffer))
    source = tmp_path / "pullback.oct.h5"
    write_pullback(pullback, source)
    return out, source, pullback


def test_results_mode_rebuilds_overlays_and_images_from_the_replayed_pullback(replayed):
    out, source, pullback = replayed
    from engine.viewer.bridge import results_source

    config = Config.from_dict({"server": {"image_size_px": SIZE, "image_fov_mm": 4.0}})
    bridge = BridgeThread(ViewerBridge(None, port=0, results=results_source(out, source, config)))
    try:
        page = PageClient(bridge.ws_url)
        assert page.next()["mode"] == "results"
        guidance = page.until(lambda m: m["type"] == "guidance")["guidance"]
        assert guidance == json.loads((out / "pullback.json").read_text())
        assert any(m["type"] == "state" and m["state"] == "results" for m in page.messages)
        frames = [m for m in page.messages if m["type"] == "frame"]
        assert [m["frame"] for m in frames] == list(range(6))
        records = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
        for m, record in zip(frames, records, strict=True):
            grey = expected_grey(pullback.frame(m["frame"]))
            assert m["lmode_bytes"] == lmode_cuts(grey).tobytes()
            assert m["overlay"]["metrics"]["struts"] == len(record.get("struts") or [])
        page.ws.send(json.dumps({"type": "get_image", "frame": 2}))
        reply = page.until(lambda m: m["type"] == "frame" and m.get("image_pixels") is not None)
        np.testing.assert_array_equal(reply["image_pixels"], expected_grey(pullback.frame(2)))
        page.close()
    finally:
        bridge.stop()


def test_results_without_the_pullback_show_numbers_only(replayed):
    out, _, _ = replayed
    source = ResultsSource(out, None, CartesianGrid(SIZE, 4.0))
    bridge = BridgeThread(ViewerBridge(None, port=0, results=source))
    try:
        page = PageClient(bridge.ws_url)
        page.until(lambda m: m["type"] == "guidance")
        frames = [m for m in page.messages if m["type"] == "frame"]
        assert len(frames) == 6 and all(m["lmode"] is None and m["overlay"]["lumen"] is None for m in frames)
        page.ws.send(json.dumps({"type": "get_image", "frame": 1}))
        assert "not available" in page.until(lambda m: m["type"] == "no_image")["reason"]
        page.close()
    finally:
        bridge.stop()


def test_bad_results_folders_are_refused_with_a_reason(tmp_path, replayed):
    out, _, _ = replayed
    with pytest.raises(ViewerError, match="not a results folder"):
        read_results(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "pullback.json").write_text("{")
    (broken / "frames.jsonl").write_text("")
    with pytest.raises(ViewerError, match="unreadable"):
        read_results(broken)
    short = small_pullback(n_frames=2, seed=7)
    with pytest.raises(ViewerError, match="not the pullback this replay read"):
        ResultsSource(out, short, CartesianGrid(SIZE, 4.0))


def test_busy_port_is_a_clear_error(live):
    _, _, running = live()
    bridge = ViewerBridge("tcp://127.0.0.1:1", port=running.bridge.port)
    with pytest.raises(ViewerError, match="cannot serve"):
        asyncio.run(bridge.start())


def test_view_command_refuses_remote_hosts_without_permission(capsys):
    from engine.commands.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["view", "--host", "0.0.0.0", "--port", "0"])
    assert "no authentication" in str(exit_.value.code) + capsys.readouterr().err


def test_replay_records_what_it_replayed(tmp_path):
    from argparse import Namespace

    from engine.commands.replay import write_replay_spec

    args = Namespace(pullback="phantom:calcified:4", out=tmp_path, frames=12, alines=256, samples=400)
    write_replay_spec(args, "phantom-calcified-4.abc")
    spec = json.loads((tmp_path / "replay.json").read_text())
    assert spec == {"pullback": "phantom:calcified:4", "pullback_id": "phantom-calcified-4.abc",
                    "frames": 12, "alines": 256, "samples": 400}
    args.pullback = "some.dcm"
    write_replay_spec(args, "x")
    assert Path(json.loads((tmp_path / "replay.json").read_text())["pullback"]).is_absolute()


# ------------------------------------------------------------------------------ hostile pages ---


def _bridge_with_frames(n: int) -> BridgeThread:
    """A bridge (no engine behind it) holding a pullback of ``n`` frame records, as after a long
    live pullback."""
    from engine.viewer.bridge import PullbackView
    bridge = BridgeThread(ViewerBridge("tcp://127.0.0.1:9", port=0))
    view = PullbackView("long.pullback", n_frames=4294967295)  # an absurd count the page must survive
    for k in range(n):
        view.frames[k] = FrameEntry({"type": "frame", "pullback_id": view.pullback_id, "frame": k,
                                     "lane": "live", "status": "ok", "sent_unix_ns": None,
                                     "overlay": {"frame": k, "status": "ok"}}, None)

    async def install():
        bridge.bridge.view = view
    asyncio.run_coroutine_threadsafe(install(), bridge.loop).result(timeout=10)
    return bridge


def _replies_until_marker(page: PageClient, timeout_s: float = 10.0) -> list[dict]:
    """Messages up to the answer to the marker request (get_image of frame 0: no_image here),
    less the bridge's periodic state broadcasts."""
    page.ws.send(json.dumps({"type": "get_image", "frame": 0}))
    seen = []
    while True:
        message = page.next(timeout_s)
        if message["type"] == "no_image" and message["frame"] == 0:
            return seen
        if message["type"] != "state":
            seen.append(message)


def _open_page(bridge: BridgeThread, n: int) -> PageClient:
    page = PageClient(bridge.ws_url)
    frames = page.until(lambda m: m["type"] == "pullback")
    assert frames["n_frames"] is None  # 4294967295 is not a count a page can lay out
    got = [page.next()["frame"] for _ in range(n)]
    assert got == list(range(n))
    return page


def test_a_page_opened_after_a_long_pullback_gets_every_frame():
    """Issue 13 item 10: 5000 frames > the 4096-message outbox: sent in bounded chunks, not
    'page outbox full'."""
    bridge = _bridge_with_frames(5000)
    try:
        page = _open_page(bridge, 5000)
        assert bridge.bridge.stats["pages_dropped"] == 0 and len(bridge.bridge.pages) == 1
        page.close()
    finally:
        bridge.stop()


BAD_REQUESTS = ['{"type":"get_image","frame":1e999}', '{"type":"get_image","frame":-1e999}',
                '{"type":"get_image","frame":NaN}', '{"type":"get_image","frame":true}',
                '{"type":"get_image","frame":99999999999999999999999}', '{"type":"get_image","frame":-3}',
                '{"type":"get_image","frame":"1"}', '{"type":"get_image","frame":1,"x":1}',
                '[' * 50000 + ']' * 10, '{"type":' + '[' * 20000, '[]', '"get_image"', '{}',
                '{"type":1e999}', '{"type":"x"}', 'null', '\x00', '{"type":"get_image"}']


def test_every_bad_page_request_is_one_error_reply_and_the_page_lives_on():
    bridge = _bridge_with_frames(3)
    try:
        page = _open_page(bridge, 3)
        for text in BAD_REQUESTS:
            page.ws.send(text)
            replies = _replies_until_marker(page)
            assert [m["type"] for m in replies] == ["error"], (text[:60], replies)
        page.ws.send(b"\x01\x02")  # binary: not a request
        assert [m["type"] for m in _replies_until_marker(page)] == ["error"]
        assert bridge.bridge.stats["bad_requests"] == len(BAD_REQUESTS) + 1
        page.close()
    finally:
        bridge.stop()


def test_websocket_fuzz_never_kills_a_page_loop():
    """Hypothesis over a real WebSocket: any text or bytes is answered by at most one reply
    (error or no_image), and the same page's next request is still answered."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12)
    requests = (st.fixed_dictionaries({"type": st.sampled_from(["get_image", "x"])},
                                      optional={"frame": json_values}).map(json.dumps)
                | json_values.map(json.dumps) | st.text(max_size=200) | st.binary(max_size=64))
    bridge = _bridge_with_frames(3)
    try:
        page = _open_page(bridge, 3)

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(requests)
        def one(request):
            page.ws.send(request)
            replies = _replies_until_marker(page)
            assert len(replies) <= 1 and all(m["type"] in ("error", "no_image") for m in replies), replies

        one()
        assert len(bridge.bridge.pages) == 1
        page.close()
    finally:
        bridge.stop()


def test_uncertainty_overlay_keeps_the_worst_a_line_of_each_group_at_its_screen_angle():
    from engine.display.overlay import screen_deg
    from engine.viewer.bridge import uncertainty_overlay
    from tests.engine.realtime.test_server import small_pullback
    frame = small_pullback(1).frame(0)  # 64 A-lines
    grid, orientation = CartesianGrid(64, 4.0), DisplayOrientation()
    values = [0.1] * 64
    values[5] = 0.95
    values[40] = None
    u = uncertainty_overlay({"uncertainty": values}, frame, grid, orientation, max_points=16)
    assert len(u["values"]) == len(u["angles_deg"]) == 16
    assert u["values"][1] == 0.95 and u["values"].count(0.1) == 15  # rows 4..7: the worst kept
    assert u["angles_deg"][0] == pytest.approx(screen_deg(frame.geometry, grid, orientation, 1.5,
                                                          frame.seam_index), abs=0.01)
    assert uncertainty_overlay({"uncertainty": [None] * 64}, frame, grid, orientation) is None
    assert uncertainty_overlay({}, frame, grid, orientation) is None
    assert uncertainty_overlay({"uncertainty": "x"}, frame, grid, orientation) is None
