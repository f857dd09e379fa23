// The cross-section: the frame's grey image (or a disc saying why there is none), its texts,
// the uncertainty ring and the vector overlay (docs/protocol.md 3.1). Owns the canvas's
// conversion buffers; writes only what it drew (setDrawn) and the images' LRU order (useImage).

import { $, C, isNum, rad } from "./common.js";
import { S, setDrawn, updateHook, useImage } from "./state.js";

const EEL_BREAK_PX = 20;  // consecutive EEL points further apart than this are not joined
const DARK_UNDER = "rgba(0,0,0,0.7)";  // under grey dashed contours, so they show on bright walls

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

// centred text on the cross-section, wrapped to 80% of its width (lines go downwards from y)
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

// the canvas's internal size: the display grid (hello.image_size_px); CSS scales it
export function sizeXsection(N) {
  const cv = $("xsection");
  if (cv.width !== N) { cv.width = N; cv.height = N; }
}

// draws frame k (null: nothing yet) as it is now known
export function drawXsection(k) {
  const N = S.imageSize;
  const ctx = xctx;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.setLineDash([]);
  ctx.globalAlpha = 1;
  ctx.fillStyle = "#0b0b0b";
  ctx.fillRect(0, 0, N, N);

  const rec = k === null ? null : S.frames.get(k) || null;
  const img = k === null ? null : useImage(k);
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

  setDrawn({ frame: k, status, hasImage: !!img, lumenPoints, uncertaintySegments,
             reason: status === "low_confidence" || status === "rejected" ? rec.reason || null : null });
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

