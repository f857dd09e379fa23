// octguide live IVOCT viewer: the page end of docs/viewer.md.
//
// One WebSocket to the bridge (/ws). Text messages: hello, state, pullback, guidance, no_image.
// Binary messages: one frame each (u32le header length, JSON header, payload with the L-mode cuts
// and optionally the grey image). The page keeps every frame's overlay and L-mode cuts, at most
// IMAGE_CACHE_MAX images (LRU), and redraws the strips (L-mode, profile, apposition) once per
// animation frame at most. Live frames are drawn on arrival so that display latency is honest.
//
// Engineering software on synthetic data, not a medical device.

const $ = (id) => document.getElementById(id);

const STATE_TEXT = {
  connecting: "Connecting to engine",
  waiting: "Waiting for frames",
  live: "Live",
  complete: "Pullback complete",
  incomplete: "Pullback incomplete",
  engine_lost: "Engine lost",
  bridge_lost: "Viewer connection lost",
  results: "Results",
};

const C = {
  lumen: "rgb(80,220,80)",
  eel: "rgb(60,180,220)",
  lowConf: "rgb(150,150,150)",
  lowConfBand: "rgba(255,200,0,0.22)",   // low-confidence frames on the profile
  lowConfTick: "rgb(255,200,0)",          // and on the apposition bar
  plaque: { calcium: "rgb(255,255,255)", lipid: "rgb(255,200,0)", fibrous: "rgb(170,170,170)" },
  wire: "rgb(255,0,255)",
  wireFill: "rgba(255,0,255,0.25)",
  strut: { apposed: "rgb(80,220,80)", malapposed: "rgb(255,40,40)", unknown: "rgb(255,255,255)" },
  refLine: "rgb(70,140,255)",
  landing: "rgb(60,200,90)",
  mla: "rgb(255,60,60)",
  msa: "rgb(255,150,40)",
};

const IMAGE_CACHE_MAX = 64;
const LATENCY_KEEP = 500;
const EEL_BREAK_PX = 20;
const DARK_UNDER = "rgba(0,0,0,0.7)";  // under grey dashed contours, so they show on bright walls      // consecutive EEL points further apart than this are not joined
const RECONNECT_MS = 1000;
// The longest axis the page lays out (the bridge says its own in hello.max_axis_frames): an
// n_frames above it, or a frame index at or beyond it, is treated as unknown / not drawn, so a
// header announcing 4294967295 frames cannot make the L-mode canvas unallocatable.
let MAX_AXIS_FRAMES = 20000;
const MAX_IMAGE_PX = 4096;
const validCount = (n) => Number.isInteger(n) && n > 0 && n <= MAX_AXIS_FRAMES;

const BASIS_TEXT = {
  eel: "EEL-based (mean EEL diameter at the distal reference, rounded down)",
  lumen: "lumen-based (mean reference lumen diameter, rounded up)",
  undetermined: "undetermined",
};

// ---------------------------------------------------------------------------------------------
// Page state

const S = {
  marks: { profile: [], apposition: [] },  // low-confidence frames marked on the strips
  mode: "live",
  imageSize: 512,
  fovMm: null,
  angles: [],
  angleIndex: 0,
  renderImage: true,
  state: "connecting",
  detail: "",
  engine: null,
  counters: null,
  pullbackId: null,
  nFrames: null,
  spacing: null,
  frames: new Map(),     // frame -> {status, overlay, reason, lmode: Uint8Array|null, nAngles, lengthPx}
  maxFrame: -1,
  lastLive: null,        // last frame with draw: true
  images: new Map(),     // LRU (Map keeps insertion order): frame -> {w, h, grey: Uint8Array}
  noImage: new Map(),    // frame -> reason
  pending: new Set(),    // get_image requests in flight
  guidance: null,
  view: null,            // frame shown in the cross-section
  following: true,
  userMoved: false,
  drawn: { frame: null, status: null, hasImage: false, lumenPoints: 0 },
  latencies: [],
  lastLatency: null,
  lmodeW: 0,             // L-mode width in frames = x-axis of all strips
  lmodeH: 0,
  lmodeImg: null,        // ImageData of the L-mode
};

const isNum = (v) => typeof v === "number" && Number.isFinite(v);
const fmt = (v, d, unit = "") => (isNum(v) ? v.toFixed(d) + unit : "—");
const raw = (v) => (v === null || v === undefined ? "" : String(v));

function setVal(id, text, value) {
  const el = $(id);
  el.textContent = text;
  el.dataset.value = raw(value);
}

// ---------------------------------------------------------------------------------------------
// WebSocket

let ws = null;
const decoder = new TextDecoder();

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  // the session token of the URL octguide view printed; the bridge refuses a socket without it
  const token = new URLSearchParams(location.search).get("token") || "";
  const sock = new WebSocket(`${proto}://${location.host}/ws?token=${encodeURIComponent(token)}`);
  sock.binaryType = "arraybuffer";
  ws = sock;
  sock.onmessage = (ev) => {
    try {
      if (typeof ev.data === "string") onText(JSON.parse(ev.data));
      else onBinary(ev.data);
    } catch (err) {
      console.error("octguide viewer: bad message", err);
    }
  };
  sock.onclose = () => {
    if (ws !== sock) return;
    S.pending.clear();
    setState("bridge_lost", "the page's WebSocket closed; retrying");
    setTimeout(connect, RECONNECT_MS);
  };
}

function send(obj) {
  if (ws && ws.readyState === WebSocket.OPEN) {
    ws.send(JSON.stringify(obj));
    return true;
  }
  return false;
}

function onText(m) {
  switch (m.type) {
    case "hello": onHello(m); break;
    case "state": setState(m.state, m.detail, m); break;
    case "pullback": onPullback(m.pullback_id, m.n_frames, m.frame_spacing_mm); break;
    case "guidance": onGuidance(m); break;
    case "no_image": onNoImage(m); break;
    case "error": console.warn("octguide viewer: the bridge says", m.error); break;
    default: break;  // unknown types are ignored (forward compatibility)
  }
  updateHook();
}

function onBinary(buf) {
  const dv = new DataView(buf);
  const hlen = dv.getUint32(0, true);
  const header = JSON.parse(decoder.decode(new Uint8Array(buf, 4, hlen)));
  if (header.type === "frame") onFrame(header, buf, 4 + hlen);
  updateHook();
}

// ---------------------------------------------------------------------------------------------
// Messages

function onHello(m) {
  S.mode = m.mode === "results" ? "results" : "live";
  S.renderImage = m.render_image !== false;
  S.fovMm = isNum(m.fov_mm) ? m.fov_mm : null;
  if (Number.isInteger(m.max_axis_frames) && m.max_axis_frames > 0) MAX_AXIS_FRAMES = m.max_axis_frames;
  if (Number.isInteger(m.image_size_px) && m.image_size_px > 0 && m.image_size_px <= MAX_IMAGE_PX
      && m.image_size_px !== S.imageSize) {
    S.imageSize = m.image_size_px;
  }
  const cv = $("xsection");
  if (cv.width !== S.imageSize) { cv.width = S.imageSize; cv.height = S.imageSize; }
  const angles = Array.isArray(m.lmode_angles_deg) ? m.lmode_angles_deg : [];
  if (angles.join() !== S.angles.join()) {
    S.angles = angles;
    const sel = $("lmode-angle");
    sel.replaceChildren(...angles.map((a, i) => new Option(`${a}°`, String(i))));
    S.angleIndex = Math.min(S.angleIndex, Math.max(0, angles.length - 1));
    sel.value = String(S.angleIndex);
  }
  if (S.mode === "results") {
    S.following = false;
    setState("results", "");
  }
  $("live-button").hidden = S.mode === "results";
  updateLiveButton();
  redrawView();
}

function setState(state, detail, m = null) {
  S.state = state || "connecting";
  S.detail = detail || "";
  if (m) {
    if (m.engine) S.engine = m.engine;
    if (m.counters) S.counters = m.counters;
  }
  const badge = $("state");
  badge.dataset.state = S.state;
  badge.textContent = STATE_TEXT[S.state] || S.state;
  badge.title = S.detail;
  const lost = S.state === "engine_lost" || S.state === "bridge_lost";
  document.body.classList.toggle("lost", lost);
  const banner = $("banner");
  banner.hidden = !lost;
  if (lost) {
    const last = S.maxFrame < 0 ? "none" : String(S.maxFrame);  // the furthest frame received
    const title = S.state === "engine_lost" ? `ENGINE LOST — last frame ${last}`
      : `VIEWER CONNECTION LOST — last frame ${last}`;
    const sub = document.createElement("div");
    sub.className = "sub";
    sub.textContent = S.detail || (S.state === "bridge_lost" ? "reconnecting…" : "");
    banner.replaceChildren(document.createTextNode(title), sub);
  }
  updateStatusBar();
  updateHook();
}

function resetPullback() {
  S.frames.clear();
  S.images.clear();
  S.noImage.clear();
  S.pending.clear();
  S.maxFrame = -1;
  S.lastLive = null;
  S.guidance = null;
  S.view = null;
  S.following = S.mode === "live";
  S.userMoved = false;
  S.latencies = [];
  S.lastLatency = null;
  S.lmodeW = 0;
  S.lmodeH = 0;
  S.lmodeImg = null;
  lcv.width = 1;
  lcv.height = 1;
}

function onPullback(id, nFrames, spacing) {
  if (id !== S.pullbackId) {
    // A new pullback clears the views; the same id again (page reconnected) keeps what we have
    // and lets the bridge's snapshot overwrite it.
    resetPullback();
    S.pullbackId = id ?? null;
    S.nFrames = null;
    S.spacing = null;
  }
  if (validCount(nFrames)) {
    S.nFrames = nFrames;
    ensureLmode(Math.max(nFrames, S.maxFrame + 1), S.lmodeH);
  }
  if (isNum(spacing)) S.spacing = spacing;
  updateGuidancePanel();
  updateSlider();
  redrawView();
  scheduleStrips();
  updateStatusBar();
  updateLatencyText();
}

function onGuidance(m) {
  const g = m.guidance || null;
  const id = m.pullback_id ?? g?.pullback_id ?? null;
  if (S.pullbackId === null && id !== null) S.pullbackId = id;
  else if (id !== null && id !== S.pullbackId) return;  // guidance of another pullback
  S.guidance = g;
  if (g) {
    if (S.nFrames === null && validCount(g.n_frames)) {
      S.nFrames = g.n_frames;
      // shrink a grown axis to the final frame count
      ensureLmode(Math.max(g.n_frames, S.maxFrame + 1), S.lmodeH);
    }
    if (S.spacing === null && isNum(g.frame_spacing_mm)) S.spacing = g.frame_spacing_mm;
  }
  updateGuidancePanel();
  // results mode opens at the MLA unless the operator already moved
  if (S.mode === "results" && !S.userMoved && g && g.mla && isNum(g.mla.frame)) {
    showFrame(g.mla.frame);
  } else {
    updateFramePanel();
  }
  updateSlider();
  scheduleStrips();
  updateStatusBar();
}

function onNoImage(m) {
  const k = m.frame;
  S.pending.delete(k);
  S.noImage.set(k, m.reason || "no image");
  if (k === S.view) redrawView();
}

function onFrame(h, buf, base) {
  if (h.pullback_id != null && h.pullback_id !== S.pullbackId) {
    if (S.pullbackId === null) S.pullbackId = h.pullback_id;
    else onPullback(h.pullback_id, null, null);  // frames of a pullback we were not told about
  }
  const k = h.frame;
  if (!Number.isInteger(k) || k < 0 || k >= MAX_AXIS_FRAMES) return;
  const ov = h.overlay || null;
  const rec = S.frames.get(k) || { lmode: null };
  rec.status = h.status ?? ov?.status ?? null;
  rec.overlay = ov ?? rec.overlay ?? null;
  rec.reason = ov?.reason ?? h.reason ?? null;
  if (h.lmode && Number.isInteger(h.lmode.n_angles) && h.lmode.n_angles > 0 && h.lmode.n_angles <= 64
      && Number.isInteger(h.lmode.length_px) && h.lmode.length_px > 0 && h.lmode.length_px <= MAX_IMAGE_PX) {
    const n = h.lmode.n_angles * h.lmode.length_px;
    rec.lmode = new Uint8Array(buf.slice(base + h.lmode.offset, base + h.lmode.offset + n));
    rec.nAngles = h.lmode.n_angles;
    rec.lengthPx = h.lmode.length_px;
  }
  S.frames.set(k, rec);
  if (h.image && Array.isArray(h.image.shape) && h.image.shape.every((v) => Number.isInteger(v) && v > 0 && v <= MAX_IMAGE_PX)) {
    const [ih, iw] = h.image.shape;
    const grey = new Uint8Array(buf.slice(base + h.image.offset, base + h.image.offset + ih * iw));
    cachePut(k, { w: iw, h: ih, grey });
    S.pending.delete(k);
    S.noImage.delete(k);
  }
  S.maxFrame = Math.max(S.maxFrame, k);
  writeLmodeColumn(k, rec);
  updateSlider();

  if (h.draw) S.lastLive = k;
  if (h.draw && S.following && S.mode === "live") {
    // a frame the bridge held for long (the snapshot sent to a page opened late) is not a
    // measure of display latency
    const held = isNum(h.bridge_unix_ns) && isNum(h.sent_unix_ns) && h.bridge_unix_ns - h.sent_unix_ns > 1e9;
    const sent = held ? null : h.sent_unix_ns;
    if (h.image || !S.renderImage) {
      drawLive(k, sent);
    } else {
      // The bridge strips the image of a live frame that a newer live frame superseded in a
      // slow page's outbox: that newer frame is right behind, so wait one animation frame
      // before drawing this one without its image (no black flash between two images).
      requestAnimationFrame(() => { if (S.lastLive === k && S.following) drawLive(k, sent); });
    }
  } else if (k === S.view) {
    redrawView();  // new data or the image for the frame on display
    requestImageSoon();
  } else if ((S.mode === "live" && S.following && S.lastLive === null && (S.view === null || k > S.view))
             || (S.mode === "results" && S.view === null)) {
    // a page opened late shows the newest frame of the snapshot until a live one comes;
    // results mode shows the first frame until the guidance names the MLA
    S.view = k;
    $("slider").value = String(k);
    redrawView();
    requestImageSoon();
  }
  scheduleStrips();
  updateStatusBar();
}

function drawLive(k, sentNs) {
  S.view = k;
  drawXsection(k);
  updateFramePanel();
  $("slider").value = String(k);
  scheduleStrips();
  if (isNum(sentNs)) measureLatency(sentNs);
}

// ---------------------------------------------------------------------------------------------
// Image cache (LRU)

function cachePut(k, img) {
  S.images.delete(k);
  S.images.set(k, img);
  while (S.images.size > IMAGE_CACHE_MAX) S.images.delete(S.images.keys().next().value);
}

function cacheGet(k) {
  const img = S.images.get(k);
  if (img) { S.images.delete(k); S.images.set(k, img); }
  return img || null;
}

// the image of the frame on display, asked for once the view has settled (scrubbing, snapshots)
let requestTimer = null;
function requestImageSoon() {
  clearTimeout(requestTimer);
  requestTimer = setTimeout(() => { if (S.view !== null) requestImage(S.view); }, 30);
}

function requestImage(k) {
  if (!S.renderImage || S.images.has(k) || S.pending.has(k) || S.noImage.has(k)) return;
  if (!S.frames.has(k)) return;
  if (send({ type: "get_image", frame: k })) S.pending.add(k);
}

// ---------------------------------------------------------------------------------------------
// Navigation

function showFrame(k, byUser = false) {
  if (!Number.isInteger(k)) return;
  if (byUser) {
    S.following = false;
    S.userMoved = true;
    updateLiveButton();
  }
  S.view = k;
  $("slider").value = String(k);
  if (byUser) requestImageSoon();  // not every frame crossed while dragging
  else requestImage(k);
  redrawView();
  scheduleStrips();
  updateHook();
}

function followLive() {
  S.following = true;
  updateLiveButton();
  const k = S.lastLive ?? (S.maxFrame >= 0 ? S.maxFrame : null);
  if (k !== null) { S.view = k; $("slider").value = String(k); requestImage(k); }
  redrawView();
  scheduleStrips();
  updateHook();
}

function updateLiveButton() {
  const b = $("live-button");
  b.classList.toggle("following", S.following);
  b.textContent = S.following ? "● following" : "▶ Live";
}

function updateSlider() {
  const sl = $("slider");
  const max = Math.max(0, S.maxFrame);
  if (sl.max !== String(max)) sl.max = String(max);
  sl.disabled = S.maxFrame < 0;
}

function redrawView() {
  drawXsection(S.view);
  updateFramePanel();
}

// ---------------------------------------------------------------------------------------------
// Cross-section

// willReadFrequently: a CPU-backed canvas; putImageData of every frame is cheaper there, and
// tools that read pixels back (tests) do not trigger Chromium's readback warning
const xctx = $("xsection").getContext("2d", { willReadFrequently: true });
let greyData = null;  // reused ImageData for the grey -> RGBA conversion
let scratch = null;   // canvas for images whose size differs from the display grid

function putGrey(img, N) {
  if (!greyData || greyData.width !== img.w || greyData.height !== img.h) {
    greyData = new ImageData(img.w, img.h);
  }
  // one 32-bit write per pixel: little-endian RGBA = A<<24 | B<<16 | G<<8 | R
  const out = new Uint32Array(greyData.data.buffer);
  const g = img.grey;
  for (let i = 0; i < out.length; i++) out[i] = 0xff000000 | (g[i] * 0x010101);
  if (img.w === N && img.h === N) {
    xctx.putImageData(greyData, 0, 0);
  } else {
    scratch = scratch || document.createElement("canvas");
    scratch.width = img.w;
    scratch.height = img.h;
    scratch.getContext("2d").putImageData(greyData, 0, 0);
    xctx.drawImage(scratch, 0, 0, N, N);
  }
}

// centred text on the cross-section, wrapped to 80% of its width (lines go downwards from y)
// The model's per-A-line uncertainty (overlay.uncertainty: {angles_deg, values}, 0..1) as a ring
// just inside the image edge: transparent where certain, amber to red where uncertain.
// Returns the number of segments drawn.
function drawUncertainty(u, N) {
  if (!u || !Array.isArray(u.angles_deg) || !Array.isArray(u.values)) return 0;
  const n = Math.min(u.angles_deg.length, u.values.length, 4096);
  if (n < 2) return 0;
  const c = (N - 1) / 2, r = N * 0.47, half = 180 / n + 0.5;
  xctx.lineWidth = Math.max(4, N * 0.02);
  let drawn = 0;
  for (let i = 0; i < n; i++) {
    const a = u.angles_deg[i], v = u.values[i];
    if (!isNum(a) || !isNum(v)) continue;
    const t = Math.max(0, Math.min(1, v));
    xctx.strokeStyle = `rgba(255,${Math.round(220 * (1 - t))},0,${(0.15 + 0.85 * t).toFixed(3)})`;
    xctx.beginPath();
    xctx.arc(c, c, r, rad(a - half), rad(a + half));
    xctx.stroke();
    drawn++;
  }
  return drawn;
}

function centreText(text, y, size, colour) {
  const N = S.imageSize;
  xctx.font = `600 ${size}px system-ui, sans-serif`;
  xctx.textAlign = "center";
  xctx.textBaseline = "middle";
  xctx.lineWidth = 4;
  xctx.strokeStyle = "rgba(0,0,0,0.8)";
  xctx.fillStyle = colour;
  const lines = [];
  let line = "";
  for (const word of String(text).split(/\s+/)) {
    const next = line ? `${line} ${word}` : word;
    if (line && xctx.measureText(next).width > 0.8 * N) { lines.push(line); line = word; } else line = next;
  }
  lines.push(line);
  lines.forEach((l, i) => {
    xctx.strokeText(l, N / 2, y + i * size * 1.25);
    xctx.fillText(l, N / 2, y + i * size * 1.25);
  });
}

function drawXsection(k) {
  const N = S.imageSize;
  const ctx = xctx;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.setLineDash([]);
  ctx.globalAlpha = 1;
  ctx.fillStyle = "#0b0b0b";
  ctx.fillRect(0, 0, N, N);

  const rec = k === null ? null : S.frames.get(k) || null;
  const img = k === null ? null : cacheGet(k);
  const status = rec ? rec.status : null;
  const ov = rec ? rec.overlay : null;
  const s = N / 512;  // text scale for other grid sizes

  // 1. image, or a black disc with the reason there is none
  if (img) {
    putGrey(img, N);
  } else {
    ctx.fillStyle = "#000";
    ctx.strokeStyle = "#333";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.arc(N / 2, N / 2, N / 2 - 2, 0, 2 * Math.PI);
    ctx.fill();
    ctx.stroke();
    if (k === null) {
      centreText(S.mode === "results" ? "loading results…" : "waiting for frames", N * 0.5, 20 * s, "#888");
    } else if (!rec) {
      centreText(`no data for frame ${k}`, N * 0.85, 16 * s, "#888");
    } else if (!S.renderImage) {
      centreText("engine sends no images (server.render_image = false)", N * 0.82, 14 * s, "#888");
    } else {
      centreText("no image for this frame", N * 0.8, 16 * s, "#888");
      const why = S.noImage.get(k) || (S.pending.has(k) ? "requesting…" : "");
      if (why) centreText(why, N * 0.85, 13 * s, "#777");
    }
  }

  // 2. corner texts and labels: drawn before the contours so that nothing covers the lumen
  if (k !== null) {
    ctx.font = `700 ${18 * s}px system-ui, sans-serif`;
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    ctx.fillStyle = "#fff";
    ctx.fillText(`Frame ${k}`, 10 * s, 10 * s);
    if (isNum(S.spacing)) {
      ctx.font = `${13 * s}px system-ui, sans-serif`;
      ctx.fillStyle = "#aaa";
      ctx.fillText(`${(k * S.spacing).toFixed(1)} mm`, 10 * s, 32 * s);
    }
  }
  const pixelMm = ov?.grid?.pixel_mm ?? (isNum(S.fovMm) ? S.fovMm / N : null);
  if (isNum(pixelMm) && pixelMm > 0) drawScaleBar(1 / pixelMm, s);
  if (status === "rejected") {
    centreText("REJECTED", N * 0.42, 34 * s, "rgb(255,40,40)");
    centreText(rec.reason || "no reason given", N * 0.5, 15 * s, "#fff");
  } else if (status === "low_confidence") {
    centreText("LOW CONFIDENCE", N * 0.1, 34 * s, "rgb(255,200,0)");
    // why, one cause per line (the record's reason, "; "-separated)
    const causes = String(rec.reason || "no reason given").split("; ").slice(0, 4);
    causes.forEach((c, i) => centreText(c, N * 0.1 + (30 + 17 * i) * s, 14 * s, "rgb(255,200,0)"));
  }
  let uncertaintySegments = 0;
  if (ov && $("toggle-uncertainty").checked) uncertaintySegments = drawUncertainty(ov.uncertainty, N);

  const overlayOn = $("toggle-overlay").checked;
  let lumenPoints = 0;
  if (ov && status !== "rejected" && overlayOn) {
    drawCutLine(N);
    lumenPoints = drawOverlay(ov, N, status === "low_confidence");
  }

  S.drawn = { frame: k, status, hasImage: !!img, lumenPoints, uncertaintySegments,
              reason: status === "low_confidence" || status === "rejected" ? rec.reason || null : null };
  document.body.dataset.drawnFrame = k === null ? "" : String(k);
  updateHook();
}

function drawScaleBar(len, s) {
  const N = S.imageSize;
  const x1 = N - 16 * s, x0 = x1 - len, y = N - 18 * s;
  xctx.strokeStyle = "#fff";
  xctx.lineWidth = 3 * s;
  xctx.beginPath();
  xctx.moveTo(x0, y - 5 * s); xctx.lineTo(x0, y); xctx.lineTo(x1, y); xctx.lineTo(x1, y - 5 * s);
  xctx.stroke();
  xctx.fillStyle = "#fff";
  xctx.font = `${13 * s}px system-ui, sans-serif`;
  xctx.textAlign = "center";
  xctx.textBaseline = "bottom";
  xctx.fillText("1 mm", (x0 + x1) / 2, y - 6 * s);
}

// the diameter the L-mode cuts along, faint, with a dot on the side shown at the L-mode's top
function drawCutLine(N) {
  if (!S.angles.length) return;
  const a = (S.angles[S.angleIndex] * Math.PI) / 180;
  const dx = Math.sin(a), dy = -Math.cos(a), c = N / 2, r = N / 2 - 4;
  xctx.save();
  xctx.strokeStyle = "rgba(255,255,0,0.35)";
  xctx.lineWidth = 1;
  xctx.setLineDash([4, 6]);
  xctx.beginPath();
  xctx.moveTo(c + dx * r, c + dy * r);
  xctx.lineTo(c - dx * r, c - dy * r);
  xctx.stroke();
  xctx.fillStyle = "rgba(255,255,0,0.6)";
  xctx.beginPath();
  xctx.arc(c + dx * r, c + dy * r, 3, 0, 2 * Math.PI);
  xctx.fill();
  xctx.restore();
}

// strokes the current path 2 px wide; low-confidence contours get a dark line under them
function strokeContour(ctx, colour, dashed, underlay) {
  if (underlay) {
    ctx.setLineDash([]);
    ctx.strokeStyle = DARK_UNDER;
    ctx.lineWidth = 4;
    ctx.stroke();
  }
  ctx.setLineDash(dashed ? [6, 4] : []);
  ctx.strokeStyle = colour;
  ctx.lineWidth = 2;
  ctx.stroke();
  ctx.setLineDash([]);
}

const rad = (deg) => ((deg - 90) * Math.PI) / 180;  // screen degrees -> canvas angle

// Draws the vector overlay (docs/protocol.md 3.1); returns the number of lumen points drawn.
function drawOverlay(ov, N, lowConf) {
  const ctx = xctx;
  const c = (N - 1) / 2;
  ctx.save();
  // overlay pixel centres are at integers; canvas pixel centres at +0.5
  ctx.translate(0.5, 0.5);
  ctx.lineCap = "butt";
  ctx.lineJoin = "round";

  for (const p of ov.plaque || []) {
    if (!isNum(p.start_deg) || !isNum(p.arc_deg)) continue;
    ctx.strokeStyle = C.plaque[p.type] || "#888";
    ctx.lineWidth = 6;
    ctx.beginPath();
    ctx.arc(c, c, 0.46 * N, rad(p.start_deg), rad(p.start_deg + p.arc_deg), false);
    ctx.stroke();
  }

  const gw = ov.guidewire;
  if (gw && isNum(gw.start_deg) && isNum(gw.arc_deg)) {
    const a0 = rad(gw.start_deg), a1 = rad(gw.start_deg + gw.arc_deg);
    ctx.fillStyle = C.wireFill;
    ctx.beginPath();
    ctx.moveTo(c, c);
    ctx.arc(c, c, 0.48 * N, a0, a1, false);
    ctx.closePath();
    ctx.fill();
    ctx.strokeStyle = C.wire;
    ctx.lineWidth = 4;
    ctx.beginPath();
    ctx.arc(c, c, 0.48 * N, a0, a1, false);
    ctx.stroke();
  }

  const eel = ov.eel?.points_px;
  if (Array.isArray(eel) && eel.length > 1) {
    ctx.beginPath();
    let prev = null;
    for (const p of eel) {
      if (!prev || Math.hypot(p[0] - prev[0], p[1] - prev[1]) > EEL_BREAK_PX) ctx.moveTo(p[0], p[1]);
      else ctx.lineTo(p[0], p[1]);
      prev = p;
    }
    const first = eel[0], last = eel[eel.length - 1];
    if ((ov.eel.visible_arc_deg ?? 0) >= 359.5 &&
        Math.hypot(first[0] - last[0], first[1] - last[1]) <= EEL_BREAK_PX) ctx.lineTo(first[0], first[1]);
    strokeContour(ctx, lowConf ? C.lowConf : C.eel, true, lowConf);
  }

  // struts before the lumen, so that the lumen line is the exact colour wherever it runs
  ctx.font = "600 13px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  for (const st of ov.struts || []) {
    if (!isNum(st.x_px) || !isNum(st.y_px)) continue;
    ctx.fillStyle = C.strut[st.state] || C.strut.unknown;
    ctx.beginPath();
    ctx.arc(st.x_px, st.y_px, 4, 0, 2 * Math.PI);
    ctx.fill();
    if (st.state === "malapposed" && isNum(st.distance_um)) {
      // label towards the catheter: a malapposed strut lies inside the lumen, so the text
      // stays off the lumen contour
      const right = st.x_px >= c;
      const text = `${Math.round(st.distance_um)} µm`;
      ctx.textAlign = right ? "right" : "left";
      const tx = st.x_px + (right ? -7 : 7);
      ctx.lineWidth = 3;
      ctx.strokeStyle = "rgba(0,0,0,0.85)";
      ctx.strokeText(text, tx, st.y_px);
      ctx.fillStyle = C.strut.malapposed;
      ctx.fillText(text, tx, st.y_px);
    }
  }
  const lumen = ov.lumen?.points_px;
  let nLumen = 0;
  if (Array.isArray(lumen) && lumen.length > 1) {
    nLumen = lumen.length;
    ctx.beginPath();
    ctx.moveTo(lumen[0][0], lumen[0][1]);
    for (let i = 1; i < lumen.length; i++) ctx.lineTo(lumen[i][0], lumen[i][1]);
    ctx.closePath();
    strokeContour(ctx, lowConf ? C.lowConf : C.lumen, lowConf, lowConf);
    if (!lowConf) {
      // Anti-aliasing blends a 2 px stroke with the image at some pixels; the pixels under the
      // points themselves are painted the exact lumen colour (pixel-aligned, no blending) so that
      // a reader of the canvas finds rgb(80,220,80) at every lumen point.
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.fillStyle = C.lumen;
      for (const p of lumen) ctx.fillRect(Math.floor(p[0]), Math.floor(p[1]), 2, 2);
      ctx.translate(0.5, 0.5);
    }
  } else if (Array.isArray(lumen) && lumen.length === 1) {
    nLumen = 1;
  }

  ctx.restore();
  return nLumen;
}

// ---------------------------------------------------------------------------------------------
// Frame numbers panel

function refAreaFor(k) {
  // reference lumen area for a frame's expansion: the nearer reference, post-PCI only
  const g = S.guidance;
  if (!g || !g.stent) return null;
  const r = g.references || {};
  const pf = r.proximal_frame ?? g.stent.proximal_reference_frame ?? null;
  const df = r.distal_frame ?? g.stent.distal_reference_frame ?? null;
  const pa = r.proximal_lumen_area_mm2 ?? g.stent.proximal_reference_area_mm2 ?? null;
  const da = r.distal_lumen_area_mm2 ?? g.stent.distal_reference_area_mm2 ?? null;
  const usable = (f, a) => isNum(f) && isNum(a) && a > 0;
  if (usable(pf, pa) && (!usable(df, da) || Math.abs(k - pf) < Math.abs(k - df))) return pa;
  return usable(df, da) ? da : null;
}

function updateFramePanel() {
  const k = S.view;
  const rec = k === null ? null : S.frames.get(k) || null;
  const status = rec?.status ?? null;
  const ov = rec?.overlay ?? null;
  const showNumbers = rec && status !== "low_confidence" && status !== "rejected";
  const m = (showNumbers && ov?.metrics) || {};

  setVal("m-frame", k === null ? "—" : String(k), k);
  const pos = k !== null && isNum(S.spacing) ? k * S.spacing : null;
  setVal("m-position", fmt(pos, 2, " mm"), pos);

  const flag = $("m-flag");
  flag.dataset.status = status ?? "";
  flag.textContent = status === "low_confidence" ? `LOW CONFIDENCE: ${rec.reason || "no reason given"}`
    : status === "rejected" ? `REJECTED: ${rec.reason || "no reason given"}` : "";

  setVal("m-lumen-area", fmt(m.lumen_area_mm2, 2, " mm²"), m.lumen_area_mm2);
  setVal("m-min-diam", fmt(m.lumen_min_diameter_mm, 2, " mm"), m.lumen_min_diameter_mm);
  setVal("m-max-diam", fmt(m.lumen_max_diameter_mm, 2, " mm"), m.lumen_max_diameter_mm);
  setVal("m-mean-diam", fmt(m.lumen_mean_diameter_mm, 2, " mm"), m.lumen_mean_diameter_mm);
  setVal("m-stent-area", fmt(m.stent_area_mm2, 2, " mm²"), m.stent_area_mm2);
  const ref = isNum(m.stent_area_mm2) && k !== null ? refAreaFor(k) : null;
  const exp = ref ? (100 * m.stent_area_mm2) / ref : null;
  setVal("m-expansion", fmt(exp, 1, "%"), exp);
  setVal("m-calcium-arc", fmt(m.calcium_arc_deg, 0, "°"), m.calcium_arc_deg);
  setVal("m-lipid-arc", fmt(m.lipid_arc_deg, 0, "°"), m.lipid_arc_deg);
  $("m-tcfa").hidden = m.tcfa !== true;
  const struts = isNum(m.struts)
    ? `${m.struts}${isNum(m.struts_malapposed) ? ` (${m.struts_malapposed} malapposed)` : ""}` : "—";
  setVal("m-struts", struts, m.struts);
  // confidence is the reason a frame is low confidence, so it is shown for those too
  const conf = rec && status !== "rejected" ? ov?.confidence : null;
  setVal("m-confidence", fmt(conf, 2), conf);
}

// ---------------------------------------------------------------------------------------------
// Guidance panel

function updateGuidancePanel() {
  const g = S.guidance;
  $("g-placeholder").hidden = !!g;
  $("g-body").hidden = !g;
  setVal("g-status", g ? (g.status || "—") + (g.reason ? `: ${g.reason}` : "") : "", g?.status);

  const mla = g?.mla || {};
  setVal("g-mla", isNum(mla.area_mm2) ? `${mla.area_mm2.toFixed(2)} mm² @ frame ${mla.frame}` : "—",
    mla.area_mm2);

  const les = g?.lesion || {};
  const hasLesion = isNum(les.distal_edge_frame) && isNum(les.proximal_edge_frame);
  setVal("g-lesion", hasLesion ? `frames ${les.distal_edge_frame}–${les.proximal_edge_frame}` : "—",
    hasLesion ? `${les.distal_edge_frame},${les.proximal_edge_frame}` : null);
  const r = g?.references || {};
  const ref = (name, f, a) => `${name} ${isNum(f) ? `frame ${f} (${fmt(a, 2, " mm²")})` : "—"}`;
  setVal("g-references", g ? `${ref("D", r.distal_frame, r.distal_lumen_area_mm2)}, ` +
    `${ref("P", r.proximal_frame, r.proximal_lumen_area_mm2)}` : "—",
    g ? `${raw(r.distal_frame)},${raw(r.proximal_frame)}` : null);

  const ca = g?.calcium || null;
  setVal("g-calcium-score", ca && isNum(ca.score) ? String(ca.score) : "—", ca?.score);
  const comps = ca && [ca.arc_points, ca.thickness_points, ca.length_points].every(isNum);
  setVal("g-calcium-components",
    comps ? `arc ${ca.arc_points} + thickness ${ca.thickness_points} + length ${ca.length_points}` : "",
    comps ? `${ca.arc_points},${ca.thickness_points},${ca.length_points}` : null);
  $("g-calcium-detail").textContent = ca
    ? `max arc ${fmt(ca.max_arc_deg, 0, "°")}, max thickness ${fmt(ca.max_thickness_mm, 2, " mm")}, ` +
      `length ${fmt(ca.length_mm, 1, " mm")}` : "";
  const prep = !!ca && isNum(ca.score) && ca.score >= 4;
  const vp = $("g-vessel-prep");
  vp.hidden = !prep;
  vp.dataset.value = String(prep);
  vp.textContent = prep ? `Calcium score ${ca.score}: vessel preparation advised` : "";

  const sz = g?.sizing || null;
  $("g-sizing-section").hidden = !sz;
  setVal("g-basis", sz ? BASIS_TEXT[sz.basis] || raw(sz.basis) || "—" : "—", sz?.basis);
  setVal("g-diameter", fmt(sz?.diameter_mm, 2, " mm"), sz?.diameter_mm);
  setVal("g-length", fmt(sz?.length_mm, 1, " mm"), sz?.length_mm);
  const land = sz && isNum(sz.distal_landing_frame) && isNum(sz.proximal_landing_frame);
  setVal("g-landing", land ? `frames ${sz.distal_landing_frame}–${sz.proximal_landing_frame}` : "—",
    land ? `${sz.distal_landing_frame},${sz.proximal_landing_frame}` : null);

  const st = g?.stent || null;
  $("g-stent-section").hidden = !st;
  setVal("g-msa", st && isNum(st.msa_mm2) ? `${st.msa_mm2.toFixed(2)} mm² @ frame ${st.msa_frame}` : "—",
    st?.msa_mm2);
  setVal("g-expansion", fmt(st?.expansion_pct, 1, "%"), st?.expansion_pct);
  setVal("g-expansion-prox", fmt(st?.proximal_expansion_pct, 1, "%"), st?.proximal_expansion_pct);
  setVal("g-expansion-dist", fmt(st?.distal_expansion_pct, 1, "%"), st?.distal_expansion_pct);
  setVal("g-expansion-class", st?.classification ?? "—", st?.classification);
  let mal = "—";
  if (st && isNum(st.struts_malapposed)) {
    mal = `${st.struts_malapposed} of ${raw(st.struts_total) || "?"} struts`;
    if (st.struts_malapposed > 0) {
      mal += `, max ${fmt(st.max_malapposition_um, 0, " µm")}, ${fmt(st.malapposed_length_mm, 1, " mm")}`;
      if (st.clinically_relevant === true) mal += " (clinically relevant)";
    }
  }
  setVal("g-malapposition", mal, st?.struts_malapposed);

  const ul = $("g-warnings");
  const warnings = Array.isArray(g?.warnings) ? g.warnings : [];
  ul.replaceChildren(...warnings.map((w) => {
    const li = document.createElement("li");
    li.textContent = String(w);
    return li;
  }));
  ul.classList.toggle("none", !!g && !warnings.length);  // CSS writes "none": no fake item
}

// ---------------------------------------------------------------------------------------------
// Status bar, latency and the test hook

function updateStatusBar() {
  $("pullback-id").textContent = S.pullbackId ?? "—";
  const n = S.frames.size;
  $("frame-counter").textContent = `frames ${n}${S.nFrames ? ` / ${S.nFrames}` : ""}`;
  // engine counters are numbers or {reason: count} objects (rejected, skipped)
  const count = (v) => (isNum(v) ? v : v && typeof v === "object"
    ? Object.values(v).reduce((a, b) => a + (isNum(b) ? b : 0), 0) : 0);
  const c = S.counters;
  $("counters").textContent = c && isNum(c.received)
    ? `engine: ${c.received} received, ${count(c.rejected)} rejected` : "";
  const model = S.engine?.model || S.guidance?.model || null;
  $("model").textContent = model ? `${model.name ?? "?"} ${model.version ?? ""}`.trim() : "model —";
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

function measureLatency(sentNs) {
  requestAnimationFrame(() => {
    const ms = performance.timeOrigin + performance.now() - sentNs / 1e6;
    S.latencies.push(ms);
    if (S.latencies.length > LATENCY_KEEP) S.latencies.shift();
    S.lastLatency = ms;
    updateLatencyText();
    updateHook();
  });
}

function latencyStats() {
  const sorted = [...S.latencies].sort((a, b) => a - b);
  return { n: sorted.length, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), last: S.lastLatency };
}

function updateLatencyText() {
  const el = $("latency");
  const L = latencyStats();
  el.dataset.n = String(L.n);
  el.dataset.p50 = raw(L.p50);
  el.dataset.p99 = raw(L.p99);
  el.textContent = L.n
    ? `display latency ${L.last.toFixed(1)} ms (p50 ${L.p50.toFixed(1)}, p99 ${L.p99.toFixed(1)}, n ${L.n})`
    : "display latency —";
}

function updateHook() {
  const L = latencyStats();
  window.octguideViewer = {
    state: S.state,
    mode: S.mode,
    pullbackId: S.pullbackId,
    framesReceived: S.frames.size,
    drawn: { ...S.drawn },
    latency: { n: L.n, p50: L.p50, p99: L.p99, last: L.last },
    guidance: S.guidance,
    following: S.following,
    marks: { profile: [...S.marks.profile], apposition: [...S.marks.apposition] },
  };
}

// ---------------------------------------------------------------------------------------------
// L-mode

const lcv = $("lmode");
const lctx = lcv.getContext("2d");

const LMODE_BG = 0xff050505;

// (Re)allocates the L-mode image to w frames by h samples, keeping the columns drawn so far.
function ensureLmode(w, h) {
  if (w <= 0) return;
  if (!h) { S.lmodeW = w; return; }   // height unknown until the first cuts arrive
  if (S.lmodeImg && S.lmodeW === w && S.lmodeH === h) return;
  const old = S.lmodeImg, oldW = S.lmodeW;
  const img = new ImageData(w, h);
  new Uint32Array(img.data.buffer).fill(LMODE_BG);
  S.lmodeImg = img;
  S.lmodeW = w;
  S.lmodeH = h;
  lcv.width = w;
  lcv.height = h;
  if (old && old.height === h) {
    const src = new Uint32Array(old.data.buffer), dst = new Uint32Array(img.data.buffer);
    const cw = Math.min(oldW, w);
    for (let y = 0; y < h; y++) dst.set(src.subarray(y * oldW, y * oldW + cw), y * w);
  } else {
    redrawLmodeColumns();  // first allocation or new height: rebuild from the stored cuts
  }
  lmodeDirty = true;
}

function writeLmodeColumn(k, rec) {
  let w = S.lmodeW;
  if (k >= w) w = S.nFrames && k < S.nFrames ? S.nFrames : Math.max(k + 1, Math.ceil(w * 1.25), 32);
  const h = S.lmodeH || (rec.lmode ? rec.lengthPx : 0);
  if (w !== S.lmodeW || h !== S.lmodeH || (h && !S.lmodeImg)) ensureLmode(w, h);
  if (!rec.lmode || !S.lmodeImg || rec.lengthPx !== S.lmodeH || k >= S.lmodeW) return;
  const a = Math.min(S.angleIndex, rec.nAngles - 1);
  const cut = rec.lmode.subarray(a * rec.lengthPx, (a + 1) * rec.lengthPx);
  const px = new Uint32Array(S.lmodeImg.data.buffer);
  const W = S.lmodeW;
  for (let y = 0; y < cut.length; y++) px[y * W + k] = 0xff000000 | (cut[y] * 0x010101);
  lmodeDirty = true;
}

function redrawLmodeColumns() {
  if (!S.lmodeImg) return;
  new Uint32Array(S.lmodeImg.data.buffer).fill(LMODE_BG);
  for (const [k, rec] of S.frames) if (k < S.lmodeW) writeLmodeColumn(k, rec);
  lmodeDirty = true;
}

// ---------------------------------------------------------------------------------------------
// Strips: L-mode, lumen-area profile, apposition bar (redrawn at most once per animation frame)

let lmodeDirty = false;
let stripsScheduled = false;

function scheduleStrips() {
  if (stripsScheduled) return;
  stripsScheduled = true;
  requestAnimationFrame(() => {
    stripsScheduled = false;
    if (lmodeDirty && S.lmodeImg) { lctx.putImageData(S.lmodeImg, 0, 0); lmodeDirty = false; }
    const W = axisFrames();
    const cur = $("lmode-cursor");
    cur.hidden = S.view === null || !W;
    if (S.view !== null && W) cur.style.left = `${((S.view + 0.5) / W) * 100}%`;
    $("axis-mid").textContent = W ? `frame index 0–${W - 1}${isNum(S.spacing) ? `, ${(W * S.spacing).toFixed(1)} mm` : ""}` : "";
    drawProfile();
    drawApposition();
  });
}

// number of frames the shared x-axis spans
function axisFrames() {
  return S.lmodeW || S.nFrames || S.maxFrame + 1 || 0;
}

// fits a canvas's backing store to its CSS size x devicePixelRatio; returns [ctx, w, h] in CSS px
function fitCanvas(cv) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, cv.clientWidth), h = Math.max(1, cv.clientHeight);
  const bw = Math.round(w * dpr), bh = Math.round(h * dpr);
  if (cv.width !== bw || cv.height !== bh) { cv.width = bw; cv.height = bh; }
  const ctx = cv.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  return [ctx, w, h];
}

function niceStep(range, maxTicks) {
  for (const s of [0.5, 1, 2, 2.5, 5, 10, 20, 50]) if (range / s <= maxTicks) return s;
  return 100;
}

function drawProfile() {
  const cv = $("profile");
  const [ctx, w, h] = fitCanvas(cv);
  // the plot spans exactly the L-mode canvas horizontally
  const x0 = lcv.getBoundingClientRect().left - cv.getBoundingClientRect().left;
  const pw = w - x0;
  const top = 16, bottom = h - 10, ph = bottom - top;
  const W = axisFrames();
  ctx.fillStyle = "#070809";
  ctx.fillRect(x0, 0, pw, h);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#8a9099";
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  ctx.fillText("lumen", 4, h / 2 - 14);
  ctx.fillText("area", 4, h / 2);
  ctx.fillText("mm²", 4, h / 2 + 14);
  ctx.textAlign = "right";
  if (!W) return;

  const X = (f) => x0 + ((f + 0.5) / W) * pw;
  const edge = (f) => x0 + (f / W) * pw;  // left boundary of frame f's column

  // collect the lumen (and stent) areas of frames with status ok
  const ok = [], stent = [];
  let maxA = 0, runMin = null;
  for (const [k, rec] of S.frames) {
    if (rec.status !== "ok") continue;
    const a = rec.overlay?.metrics?.lumen_area_mm2;
    const sa = rec.overlay?.metrics?.stent_area_mm2;
    if (isNum(a)) {
      ok.push([k, a]);
      maxA = Math.max(maxA, a);
      if (!runMin || a < runMin[1]) runMin = [k, a];
    }
    if (isNum(sa)) { stent.push([k, sa]); maxA = Math.max(maxA, sa); }
  }
  ok.sort((p, q) => p[0] - q[0]);
  stent.sort((p, q) => p[0] - q[0]);
  const g = S.guidance;
  const step = niceStep(Math.max(4, maxA * 1.15), 5);
  const ymax = Math.max(2 * step, Math.ceil((maxA * 1.15) / step) * step);
  const Y = (a) => bottom - (a / ymax) * ph;

  // y ticks and grid
  ctx.strokeStyle = "#1c2026";
  ctx.lineWidth = 1;
  for (let t = 0; t <= ymax + 1e-9; t += step) {
    const y = Math.round(Y(t)) + 0.5;
    ctx.beginPath(); ctx.moveTo(x0, y); ctx.lineTo(x0 + pw, y); ctx.stroke();
    ctx.fillStyle = "#8a9099";
    ctx.fillText(String(t), x0 - 6, y);
  }

  const vline = (f, colour, label, row, dash = []) => {
    const x = Math.round(X(f)) + 0.5;
    ctx.strokeStyle = colour;
    ctx.setLineDash(dash);
    ctx.lineWidth = 1.5;
    ctx.beginPath(); ctx.moveTo(x, top - 4); ctx.lineTo(x, bottom); ctx.stroke();
    ctx.setLineDash([]);
    if (label) {
      ctx.fillStyle = colour;
      ctx.font = "600 11px system-ui, sans-serif";
      ctx.textAlign = x > x0 + pw - 60 ? "right" : "left";
      ctx.textBaseline = "top";
      ctx.fillText(label, x + (ctx.textAlign === "left" ? 3 : -3), row);
    }
  };

  if (g) {
    const les = g.lesion || {};
    if (isNum(les.distal_edge_frame) && isNum(les.proximal_edge_frame)) {
      ctx.fillStyle = "rgba(255,120,0,0.14)";
      const a = Math.min(les.distal_edge_frame, les.proximal_edge_frame);
      const b = Math.max(les.distal_edge_frame, les.proximal_edge_frame);
      ctx.fillRect(edge(a), top, edge(b + 1) - edge(a), ph);
    }
    const sz = g.sizing || {};
    const dl = sz.distal_landing_frame, pl = sz.proximal_landing_frame;
    if (isNum(dl) && isNum(pl)) {
      ctx.fillStyle = "rgba(60,200,90,0.13)";
      ctx.fillRect(X(Math.min(dl, pl)), top, Math.abs(X(pl) - X(dl)), ph);
    }
    // one "landing" label per line, unless the two lines are too close for two labels
    const twoLabels = isNum(dl) && isNum(pl) && Math.abs(X(pl) - X(dl)) > 120;
    if (isNum(dl)) vline(dl, C.landing, "landing", top + 14);
    if (isNum(pl) && pl !== dl) vline(pl, C.landing, twoLabels || !isNum(dl) ? "landing" : null, top + 14);
    const r = g.references || {};
    if (isNum(r.distal_frame)) vline(r.distal_frame, C.refLine, "D ref", 1);
    if (isNum(r.proximal_frame)) vline(r.proximal_frame, C.refLine, "P ref", 1);
  }

  // the area lines: segments of consecutive ok frames, gaps elsewhere
  const series = (points, colour, width) => {
    ctx.strokeStyle = colour;
    ctx.lineWidth = width;
    ctx.beginPath();
    let prev = null;
    for (const [k, a] of points) {
      if (prev !== null && k === prev + 1) ctx.lineTo(X(k), Y(a));
      else ctx.moveTo(X(k), Y(a));
      prev = k;
    }
    ctx.stroke();
  };
  if (stent.length) {
    series(stent, C.msa, 1.25);
    ctx.fillStyle = C.msa;
    ctx.textAlign = "left";
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillText("— stent", 4, h / 2 + 30);
  }
  series(ok, "rgb(80,220,80)", 1.5);
  if (pw / W >= 4) {
    ctx.fillStyle = "rgb(80,220,80)";
    for (const [k, a] of ok) ctx.fillRect(X(k) - 1.5, Y(a) - 1.5, 3, 3);
  }
  // low-confidence frames: an amber band over their column (no area is plotted there) and a
  // tick; rejected frames: a red tick
  const marked = [];
  for (const [k, rec] of S.frames) {
    if (rec.status === "low_confidence") {
      ctx.fillStyle = C.lowConfBand;
      ctx.fillRect(edge(k), top, Math.max(1, edge(k + 1) - edge(k)), ph);
      ctx.fillStyle = C.lowConfTick;
      marked.push(k);
    } else if (rec.status === "rejected") ctx.fillStyle = "rgb(170,40,40)";
    else continue;
    ctx.fillRect(X(k) - 1, bottom - 6, 2, 6);
  }
  S.marks.profile = marked.sort((a, b) => a - b);

  // MLA: guidance's once it arrives, else the running minimum so far
  const mla = g?.mla && isNum(g.mla.frame) && isNum(g.mla.area_mm2) ? [g.mla.frame, g.mla.area_mm2] : runMin;
  if (mla) marker(ctx, X(mla[0]), Y(mla[1]), C.mla, `MLA ${mla[1].toFixed(2)} mm²`, x0, pw, true);
  const st = g?.stent;
  if (st && isNum(st.msa_frame)) {
    vline(st.msa_frame, C.msa, null, 0, [3, 3]);
    const label = `MSA ${fmt(st.msa_mm2, 2, " mm²")}`;
    const y = isNum(st.msa_mm2) ? Math.max(top + 24, Y(st.msa_mm2)) : top + 24;
    marker(ctx, X(st.msa_frame), y, C.msa, label, x0, pw, false);
  }

  // cursor
  if (S.view !== null) {
    const x = Math.round(X(S.view)) + 0.5;
    ctx.strokeStyle = "rgba(255,255,0,0.9)";
    ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, h); ctx.stroke();
  }
}

// a triangle pointing at (x, y) (from below when up) with a label beside it
function marker(ctx, x, y, colour, label, x0, pw, up) {
  ctx.fillStyle = colour;
  ctx.beginPath();
  const d = up ? 1 : -1;
  ctx.moveTo(x, y + 2 * d);
  ctx.lineTo(x - 6, y + 12 * d);
  ctx.lineTo(x + 6, y + 12 * d);
  ctx.closePath();
  ctx.fill();
  ctx.font = "700 12px system-ui, sans-serif";
  const right = x < x0 + pw - 120;
  ctx.textAlign = right ? "left" : "right";
  ctx.textBaseline = "middle";
  const tx = x + (right ? 9 : -9), ty = y + 9 * d;
  ctx.lineWidth = 3;
  ctx.strokeStyle = "rgba(0,0,0,0.85)";
  ctx.strokeText(label, tx, ty);
  ctx.fillText(label, tx, ty);
}

function drawApposition() {
  const cv = $("apposition");
  const [ctx, w, h] = fitCanvas(cv);
  const W = axisFrames();
  ctx.fillStyle = "#070809";
  ctx.fillRect(0, 0, w, h);
  let any = false;
  for (const rec of S.frames.values()) if (rec.overlay?.struts?.length) { any = true; break; }
  // low-confidence frames: an amber band on the bar's top third, with or without struts
  const marked = [];
  const markLowConfidence = () => {
    if (!W) return;
    ctx.fillStyle = C.lowConfTick;
    for (const [k, rec] of S.frames) {
      if (rec.status !== "low_confidence") continue;
      const xa = (k / W) * w, xb = ((k + 1) / W) * w;
      ctx.fillRect(xa, 0, Math.max(1, xb - xa), Math.max(3, h / 3));
      marked.push(k);
    }
    S.marks.apposition = marked.sort((a, b) => a - b);
  };
  if (!any || !W) {
    markLowConfidence();
    ctx.fillStyle = "#5c626b";
    ctx.font = "11px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(S.frames.size ? "no stent" : "", w / 2, h / 2);
    return;
  }
  for (const [k, rec] of S.frames) {
    const struts = rec.overlay?.struts || [];
    const mal = struts.some((s) => s.state === "malapposed");
    const known = struts.some((s) => s.state === "apposed" || s.state === "malapposed");
    ctx.fillStyle = mal ? "rgb(255,40,40)" : struts.length && known ? "rgb(80,220,80)" : "rgb(48,52,58)";
    const xa = (k / W) * w, xb = ((k + 1) / W) * w;
    ctx.fillRect(xa, 2, Math.max(1, xb - xa - (xb - xa > 3 ? 1 : 0)), h - 4);
  }
  markLowConfidence();
  if (S.view !== null) {
    const x = Math.round(((S.view + 0.5) / W) * w) + 0.5;
    ctx.strokeStyle = "rgba(255,255,0,0.9)";
    ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, h); ctx.stroke();
  }
}

// ---------------------------------------------------------------------------------------------
// Input

function frameAt(clientX) {
  const r = lcv.getBoundingClientRect();
  const W = axisFrames();
  if (!W || r.width <= 0 || S.maxFrame < 0) return null;
  const f = Math.floor(((clientX - r.left) / r.width) * W);
  return Math.max(0, Math.min(S.maxFrame, f));
}

function scrubbable(el) {
  let active = false;
  const go = (ev) => {
    const f = frameAt(ev.clientX);
    if (f !== null && f !== S.view) showFrame(f, true);
  };
  el.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0) return;
    active = true;
    el.setPointerCapture(ev.pointerId);
    go(ev);
  });
  el.addEventListener("pointermove", (ev) => { if (active) go(ev); });
  const stop = () => { active = false; };
  el.addEventListener("pointerup", stop);
  el.addEventListener("pointercancel", stop);
}

function init() {
  scrubbable(lcv);
  scrubbable($("profile"));
  scrubbable($("apposition"));
  $("slider").addEventListener("input", (ev) => showFrame(Number(ev.target.value), true));
  $("live-button").addEventListener("click", followLive);
  $("toggle-overlay").addEventListener("change", () => drawXsection(S.view));
  $("toggle-uncertainty").addEventListener("change", () => drawXsection(S.view));
  $("lmode-angle").addEventListener("change", (ev) => {
    S.angleIndex = Number(ev.target.value) || 0;
    redrawLmodeColumns();
    drawXsection(S.view);
    scheduleStrips();
  });
  document.addEventListener("keydown", (ev) => {
    // arrows step frames unless a control that uses them has the focus
    const t = ev.target;
    if (t instanceof HTMLSelectElement || (t instanceof HTMLInputElement && t.type !== "checkbox")) return;
    if (S.maxFrame < 0) return;
    const cur = S.view ?? 0;
    if (ev.key === "ArrowLeft") showFrame(Math.max(0, cur - 1), true);
    else if (ev.key === "ArrowRight") showFrame(Math.min(S.maxFrame, cur + 1), true);
    else return;
    ev.preventDefault();
  });
  new ResizeObserver(() => scheduleStrips()).observe($("strips"));
  updateLiveButton();
  updateGuidancePanel();
  updateFramePanel();
  drawXsection(null);
  setState("connecting", "");
  updateLatencyText();
  updateHook();
  scheduleStrips();
  connect();
}

init();
