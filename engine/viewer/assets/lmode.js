// The L-mode (longitudinal) strip: one column per frame, the chosen angle's cut down it. Owns its
// image (frames wide, samples high), which also sets the x-axis every strip shares.

import { $ } from "./common.js";
import { S } from "./state.js";

export const lcv = $("lmode");
const lctx = lcv.getContext("2d");

const LMODE_BG = 0xff050505;

// the L-mode image: w frames by h samples (h 0 until the first cuts arrive), drawn lazily
let width = 0;
let height = 0;
let image = null;  // ImageData
let dirty = false;

// number of frames the shared x-axis spans
export function axisFrames() {
  return width || S.nFrames || S.maxFrame + 1 || 0;
}

export function lmodeHeight() {
  return height;
}

// a new pullback: an empty strip
export function resetLmode() {
  width = 0;
  height = 0;
  image = null;
  lcv.width = 1;
  lcv.height = 1;
}

// (Re)allocates the L-mode image to w frames by h samples, keeping the columns drawn so far.
export function ensureLmode(w, h) {
  if (w <= 0) return;
  if (!h) { width = w; return; }   // height unknown until the first cuts arrive
  if (image && width === w && height === h) return;
  const old = image, oldW = width;
  const img = new ImageData(w, h);
  new Uint32Array(img.data.buffer).fill(LMODE_BG);
  image = img;
  width = w;
  height = h;
  lcv.width = w;
  lcv.height = h;
  if (old && old.height === h) {
    const src = new Uint32Array(old.data.buffer), dst = new Uint32Array(img.data.buffer);
    const cw = Math.min(oldW, w);
    for (let y = 0; y < h; y++) dst.set(src.subarray(y * oldW, y * oldW + cw), y * w);
  } else {
    redrawLmodeColumns();  // first allocation or new height: rebuild from the stored cuts
  }
  dirty = true;
}

export function writeLmodeColumn(k, rec) {
  let w = width;
  if (k >= w) w = S.nFrames && k < S.nFrames ? S.nFrames : Math.max(k + 1, Math.ceil(w * 1.25), 32);
  const h = height || (rec.lmode ? rec.lengthPx : 0);
  if (w !== width || h !== height || (h && !image)) ensureLmode(w, h);
  if (!rec.lmode || !image || rec.lengthPx !== height || k >= width) return;
  const a = Math.min(S.angleIndex, rec.nAngles - 1);
  const cut = rec.lmode.subarray(a * rec.lengthPx, (a + 1) * rec.lengthPx);
  const px = new Uint32Array(image.data.buffer);
  const W = width;
  for (let y = 0; y < cut.length; y++) px[y * W + k] = 0xff000000 | (cut[y] * 0x010101);
  dirty = true;
}

export function redrawLmodeColumns() {
  if (!image) return;
  new Uint32Array(image.data.buffer).fill(LMODE_BG);
  for (const [k, rec] of S.frames) if (k < width) writeLmodeColumn(k, rec);
  dirty = true;
}

// puts the image on the canvas when columns changed since (once per animation frame at most)
export function flushLmode() {
  if (dirty && image) { lctx.putImageData(image, 0, 0); dirty = false; }
}
