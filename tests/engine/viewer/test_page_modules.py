"""The page's ES modules as the bridge serves them, without a browser (issue 12 item 7): every
module the page imports is served, as JavaScript (a browser refuses a module script of any other
MIME type), under the page's CSP; every module in the assets folder is one the page imports;
nothing else is served; and only ``state.js`` writes the page's state. The page running them in
Chromium with no console errors is test_browser.py's."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest

from engine.viewer import bridge as viewer_module
from engine.viewer.bridge import ASSET_TYPES, CONTENT_SECURITY_POLICY, PAGE_MODULES, ViewerBridge
from tests.engine.viewer.test_bridge import BridgeThread

pytestmark = pytest.mark.timeout(60)

ASSETS = viewer_module.ASSETS
#: static imports and re-exports: ``import ... from "./x.js"``, ``import "./x.js"``, ``export ... from``
IMPORT = re.compile(r"""^\s*(?:import|export)\b[^;]*?["'](\.{0,2}/[^"']+)["']""", re.MULTILINE | re.DOTALL)
SCRIPT = re.compile(r"""<script\b[^>]*\bsrc=["']([^"']+)["'][^>]*>""")


def _imports(name: str) -> set[str]:
    text = (ASSETS / name).read_text()
    found = set()
    for spec in IMPORT.findall(text):
        assert spec.startswith("./") and "/" not in spec[2:], f"{name}: import {spec} is not a sibling module"
        found.add(spec[2:])
    return found


def _reachable_modules() -> set[str]:
    """The modules the page loads: index.html's module scripts and what they import, transitively."""
    html = (ASSETS / "index.html").read_text()
    entries = SCRIPT.findall(html)
    assert entries == ["viewer.js"], entries
    assert '<script type="module" src="viewer.js">' in html  # a module script, so its imports load
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        assert (ASSETS / name).is_file(), f"the page imports {name}, which is not in {ASSETS}"
        seen.add(name)
        todo.extend(_imports(name) - seen)
    return seen


def test_the_served_modules_are_exactly_the_ones_the_page_imports():
    on_disk = {p.name for p in ASSETS.glob("*.js")}
    assert _reachable_modules() == set(PAGE_MODULES) == on_disk
    assert len(PAGE_MODULES) > 1  # split, not one script


def test_the_import_scanner_sees_every_kind_of_import(tmp_path, monkeypatch):
    """The scanner above is what proves reachability: it must find each form of static import
    (and not a string that merely says "import")."""
    (tmp_path / "a.js").write_text('import { x } from "./b.js";\nimport "./c.js";\n'
                                   'export { y } from "./d.js";\nimport {\n  z,\n} from "./e.js";\n'
                                   'const s = "import nothing";\n')
    monkeypatch.setitem(globals(), "ASSETS", tmp_path)
    assert _imports("a.js") == {"b.js", "c.js", "d.js", "e.js"}


@pytest.fixture(scope="module")
def served():
    bridge = BridgeThread(ViewerBridge("tcp://127.0.0.1:9", port=0))
    yield f"http://127.0.0.1:{bridge.bridge.port}"
    bridge.stop()


@pytest.mark.parametrize("name", PAGE_MODULES)
def test_each_module_is_served_as_javascript_under_the_page_csp(served, name):
    with urllib.request.urlopen(f"{served}/{name}", timeout=10) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"] == "text/javascript; charset=utf-8"
        assert reply.headers["X-Content-Type-Options"] == "nosniff"  # no sniffing a wrong type into JS
        assert reply.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert reply.read() == (ASSETS / name).read_bytes()


@pytest.mark.parametrize("path", ["/nosuch.js", "/state.mjs", "/js/state.js", "/STATE.JS", "/state.js/",
                                  "/viewer.js.map", "/.state.js.swp", "/assets/state.js", "/bridge.py",
                                  "/%2e%2e/bridge.py", "/..%2fbridge.py"])
def test_an_unknown_asset_path_is_404(served, path):
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(served + path, timeout=10)
    assert error.value.code == 404
    error.value.close()


def test_every_served_asset_exists_and_nothing_else_is_listed():
    assert set(ASSET_TYPES) == {"index.html", "viewer.css", *PAGE_MODULES}
    assert all((ASSETS / name).is_file() for name in ASSET_TYPES)


#: a write to the state outside state.js: ``S.x = ``, ``S.x.y += ``, ``S.frames.set(`` ...
STATE_WRITE = re.compile(r"\bS\.\w+(?:\.\w+)*\s*(?:[-+*/|&]?=(?!=)|\+\+|--)"
                         r"|\bS\.\w+(?:\.\w+)*\.(?:set|delete|clear|add|push|pop|shift|unshift|splice|sort|fill)\(")


def test_only_the_state_module_writes_the_state():
    offenders = []
    for name in PAGE_MODULES:
        if name == "state.js":
            continue
        code = re.sub(r"//[^\n]*", "", (ASSETS / name).read_text())
        offenders += [f"{name}: {m.group(0)}" for m in STATE_WRITE.finditer(code)]
    assert not offenders, offenders
    state = (ASSETS / "state.js").read_text()
    assert "export const S = new Proxy(state, { set: refuse" in state  # assignment through S throws
    assert not re.search(r"^export (?:const|let) state\b", state, re.MULTILINE)  # the raw object stays private


def test_the_state_write_pattern_catches_writes():
    for code in ("S.view = 3", "S.marks.profile = []", "S.maxFrame += 1", "S.frames.set(1, r)", "S.pending.clear()",
                 "S.latencies.push(2)", "S.n++"):
        assert STATE_WRITE.search(code), code
    for code in ("S.view === 3", "x = S.view", "S.frames.get(1)", "S.images.has(k)", "S.view !== null"):
        assert not STATE_WRITE.search(code), code


NODE_CHECK = """
const m = await import(process.argv[1]);
const out = {};
try { m.S.view = 3; out.write = "written"; } catch (e) { out.write = e.name; }
try { delete m.S.frames; out.remove = "removed"; } catch (e) { out.remove = e.name; }
m.startPullback("pb.1");
for (let k = 0; k < m.IMAGE_CACHE_MAX + 2; k++) m.putImage(k, { w: 1, h: 1, grey: new Uint8Array(1) });
out.cached = m.S.images.size;
out.oldestGone = !m.S.images.has(0) && !m.S.images.has(1);
m.useImage(2);  // most recently used now: survives the next insertion
m.putImage(999, { w: 1, h: 1, grey: new Uint8Array(1) });
out.usedKept = m.S.images.has(2) && !m.S.images.has(3);
m.markRequested(7); m.setNoImage(7, "why");
out.noImage = [m.S.pending.has(7), m.S.noImage.get(7)];
m.putFrame(5, { status: "ok" }); m.putFrame(2, { status: "ok" });
out.maxFrame = m.S.maxFrame;
m.setView(5);
m.startPullback("pb.2");
out.reset = [m.S.pullbackId, m.S.frames.size, m.S.images.size, m.S.maxFrame, m.S.view];
out.hello = [m.applyHello({ mode: "results", image_size_px: 99999, lmode_angles_deg: [0, 45] }),
             m.S.mode, m.S.imageSize, m.applyHello({ lmode_angles_deg: [0, 45] })];
for (let i = 0; i < m.LATENCY_KEEP + 10; i++) m.addLatency(i);
const L = m.latencyStats();
out.latency = [L.n, L.last, L.p50];
console.log(JSON.stringify(out));
"""


def test_the_state_module_refuses_outside_writes_and_keeps_its_bounds_in_node():
    """state.js on its own (it touches no DOM until its hook is published): assignment through
    ``S`` throws; the image LRU, the latency window and a new pullback's reset do what the page
    relies on."""
    import json
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("no node on PATH (the browser tests run state.js in Chromium)")
    result = subprocess.run([node, "--input-type=module", "-e", NODE_CHECK, "--", (ASSETS / "state.js").as_uri()],
                            check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["write"] == "TypeError" and out["remove"] == "TypeError"
    assert out["cached"] == 64 and out["oldestGone"] and out["usedKept"]
    assert out["noImage"] == [False, "why"]
    assert out["maxFrame"] == 5
    assert out["reset"] == ["pb.2", 0, 0, -1, None]
    assert out["hello"] == [True, "results", 512, False]  # an absurd image size is not taken
    assert out["latency"] == [500, 509, 259]
