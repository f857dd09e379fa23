// The page's state: what the bridge told it and what the operator chose. Every module reads it
// through `S`; only the functions below write it (`S` refuses assignment, and its Maps and Sets
// are changed here only), so each field has named writers:
//
//   session (hello)        mode, renderImage, fovMm, imageSize, angles, maxAxisFrames
//                            applyHello                          <- messages.js
//                          angleIndex: applyHello, setAngleIndex  <- viewer.js (angle select)
//   connection (state)     state, detail, engine, counters: setConnection <- messages.js, socket close
//   pullback               pullbackId, nFrames, spacing, frames, maxFrame, lastLive, guidance
//                            startPullback, adoptPullbackId, setFrameCount, setSpacing, putFrame,
//                            setLastLive, setGuidance                         <- messages.js
//   images                 images (LRU), pending, noImage
//                            putImage, useImage, markRequested, clearRequests, setNoImage
//                            <- messages.js, navigation.js, xsection.js (useImage: LRU order)
//   navigation             view, following, userMoved: setView, setFollowing, markUserMoved
//                            <- navigation.js, messages.js
//   drawn / marks          drawn: setDrawn <- xsection.js; marks: setMarks <- strips.js
//   latency                latencies, lastLatency: addLatency <- navigation.js
//
// Canvas-private buffers (the L-mode image, the grey conversion buffer) live in their modules.

import { isNum } from "./common.js";

export const IMAGE_CACHE_MAX = 64;
export const LATENCY_KEEP = 500;
export const MAX_IMAGE_PX = 4096;

const state = {
  marks: { profile: [], apposition: [] },  // low-confidence frames marked on the strips
  mode: "live",
  imageSize: 512,
  fovMm: null,
  angles: [],
  angleIndex: 0,
  renderImage: true,
  // The longest axis the page lays out (the bridge says its own in hello.max_axis_frames): an
  // n_frames above it, or a frame index at or beyond it, is treated as unknown / not drawn, so a
  // header announcing 4294967295 frames cannot make the L-mode canvas unallocatable.
  maxAxisFrames: 20000,
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
};

const refuse = (_target, key) => {
  throw new TypeError(`octguide viewer: state.${String(key)} is written only through state.js`);
};

// read-only view of the state
export const S = new Proxy(state, { set: refuse, deleteProperty: refuse, defineProperty: refuse });

export const validCount = (n) => Number.isInteger(n) && n > 0 && n <= state.maxAxisFrames;

// ---------------------------------------------------------------------------------------------
// session and connection

// Takes the hello's session fields (validated); returns whether the L-mode angles changed.
export function applyHello(m) {
  state.mode = m.mode === "results" ? "results" : "live";
  state.renderImage = m.render_image !== false;
  state.fovMm = isNum(m.fov_mm) ? m.fov_mm : null;
  if (Number.isInteger(m.max_axis_frames) && m.max_axis_frames > 0) state.maxAxisFrames = m.max_axis_frames;
  if (Number.isInteger(m.image_size_px) && m.image_size_px > 0 && m.image_size_px <= MAX_IMAGE_PX) {
    state.imageSize = m.image_size_px;
  }
  const angles = Array.isArray(m.lmode_angles_deg) ? m.lmode_angles_deg : [];
  if (angles.join() === state.angles.join()) return false;
  state.angles = angles;
  state.angleIndex = Math.min(state.angleIndex, Math.max(0, angles.length - 1));
  return true;
}

export function setAngleIndex(i) {
  state.angleIndex = i;
}

export function setConnection(name, detail, engine = null, counters = null) {
  state.state = name || "connecting";
  state.detail = detail || "";
  if (engine) state.engine = engine;
  if (counters) state.counters = counters;
}

// ---------------------------------------------------------------------------------------------
// the pullback

// A new pullback: everything of the previous one is forgotten.
export function startPullback(id) {
  state.frames.clear();
  state.images.clear();
  state.noImage.clear();
  state.pending.clear();
  state.maxFrame = -1;
  state.lastLive = null;
  state.guidance = null;
  state.view = null;
  state.following = state.mode === "live";
  state.userMoved = false;
  state.latencies = [];
  state.lastLatency = null;
  state.pullbackId = id ?? null;
  state.nFrames = null;
  state.spacing = null;
}

// the id of frames or guidance that came before any pullback message
export function adoptPullbackId(id) {
  if (state.pullbackId === null) state.pullbackId = id;
}

export function setFrameCount(n) {
  state.nFrames = n;
}

export function setSpacing(mm) {
  state.spacing = mm;
}

export function putFrame(k, rec) {
  state.frames.set(k, rec);
  state.maxFrame = Math.max(state.maxFrame, k);
}

export function setLastLive(k) {
  state.lastLive = k;
}

export function setGuidance(g) {
  state.guidance = g;
}

// ---------------------------------------------------------------------------------------------
// images (LRU of IMAGE_CACHE_MAX) and get_image requests

export function putImage(k, img) {
  state.images.delete(k);
  state.images.set(k, img);
  while (state.images.size > IMAGE_CACHE_MAX) state.images.delete(state.images.keys().next().value);
  state.pending.delete(k);
  state.noImage.delete(k);
}

// frame k's image, or null; marks it most recently used
export function useImage(k) {
  const img = state.images.get(k);
  if (img) { state.images.delete(k); state.images.set(k, img); }
  return img || null;
}

export function markRequested(k) {
  state.pending.add(k);
}

export function clearRequests() {
  state.pending.clear();
}

export function setNoImage(k, reason) {
  state.pending.delete(k);
  state.noImage.set(k, reason);
}

// ---------------------------------------------------------------------------------------------
// navigation, what was drawn, latency

export function setView(k) {
  state.view = k;
}

export function setFollowing(on) {
  state.following = on;
}

export function markUserMoved() {
  state.userMoved = true;
}

export function setDrawn(drawn) {
  state.drawn = drawn;
}

export function setMarks(strip, frames) {
  state.marks[strip] = frames;
}

export function addLatency(ms) {
  state.latencies.push(ms);
  if (state.latencies.length > LATENCY_KEEP) state.latencies.shift();
  state.lastLatency = ms;
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

export function latencyStats() {
  const sorted = [...state.latencies].sort((a, b) => a - b);
  return { n: sorted.length, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), last: state.lastLatency };
}

// window.octguideViewer: a copy of what tests (and a curious operator) read
export function updateHook() {
  const L = latencyStats();
  window.octguideViewer = {
    state: state.state,
    mode: state.mode,
    pullbackId: state.pullbackId,
    framesReceived: state.frames.size,
    drawn: { ...state.drawn },
    latency: { n: L.n, p50: L.p50, p99: L.p99, last: L.last },
    guidance: state.guidance,
    following: state.following,
    marks: { profile: [...state.marks.profile], apposition: [...state.marks.apposition] },
  };
}
