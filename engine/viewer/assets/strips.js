// The strips under the cross-section, sharing one x-axis (frame index, distal on the left): the
// L-mode (lmode.js), the lumen-area profile with the guidance's landmarks, and the apposition
// bar. Redrawn at most once per animation frame (scheduleStrips).

import { $, C, fmt, isNum } from "./common.js";
import { axisFrames, flushLmode, lcv } from "./lmode.js";
import { S, setMarks } from "./state.js";

let stripsScheduled = false;

export function scheduleStrips() {
  if (stripsScheduled) return;
  stripsScheduled = true;
  requestAnimationFrame(() => {
    stripsScheduled = false;
    flushLmode();
    const W = axisFrames();
    const cur = $("lmode-cursor");
    cur.hidden = S.view === null || !W;
    if (S.view !== null && W) cur.style.left = `${((S.view + 0.5) / W) * 100}%`;
    $("axis-mid").textContent = W ? `frame index 0–${W - 1}${isNum(S.spacing) ? `, ${(W * S.spacing).toFixed(1)} mm` : ""}` : "";
    drawProfile();
    drawApposition();
  });
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
  setMarks("profile", marked.sort((a, b) => a - b));

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
    setMarks("apposition", marked.sort((a, b) => a - b));
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

