// Which frame is on display: following the live frames or where the operator scrubbed to, the
// slider and Live button that show it, the image requests for it, and the display latency of
// live frames drawn on arrival.

import { $, isNum } from "./common.js";
import { updateFramePanel, updateLatencyText } from "./panels.js";
import { S, addLatency, markRequested, markUserMoved, setFollowing, setView, updateHook } from "./state.js";
import { send } from "./socket.js";
import { scheduleStrips } from "./strips.js";
import { drawXsection } from "./xsection.js";

// frame k is the one on display (the slider follows)
export function pointAt(k) {
  setView(k);
  $("slider").value = String(k);
}

export function redrawView() {
  drawXsection(S.view);
  updateFramePanel();
}

// a live frame, drawn on arrival; sentNs: when the engine sent it (null: no latency measured)
export function drawLive(k, sentNs) {
  setView(k);
  drawXsection(k);
  updateFramePanel();
  $("slider").value = String(k);
  scheduleStrips();
  if (isNum(sentNs)) measureLatency(sentNs);
}

function measureLatency(sentNs) {
  requestAnimationFrame(() => {
    addLatency(performance.timeOrigin + performance.now() - sentNs / 1e6);
    updateLatencyText();
    updateHook();
  });
}

// the image of the frame on display, asked for once the view has settled (scrubbing, snapshots)
let requestTimer = null;
export function requestImageSoon() {
  clearTimeout(requestTimer);
  requestTimer = setTimeout(() => { if (S.view !== null) requestImage(S.view); }, 30);
}

export function requestImage(k) {
  if (!S.renderImage || S.images.has(k) || S.pending.has(k) || S.noImage.has(k)) return;
  if (!S.frames.has(k)) return;
  if (send({ type: "get_image", frame: k })) markRequested(k);
}

// shows frame k; byUser: the operator moved, so the page stops following the live frames
export function showFrame(k, byUser = false) {
  if (!Number.isInteger(k)) return;
  if (byUser) {
    setFollowing(false);
    markUserMoved();
    updateLiveButton();
  }
  pointAt(k);
  if (byUser) requestImageSoon();  // not every frame crossed while dragging
  else requestImage(k);
  redrawView();
  scheduleStrips();
  updateHook();
}

export function followLive() {
  setFollowing(true);
  updateLiveButton();
  const k = S.lastLive ?? (S.maxFrame >= 0 ? S.maxFrame : null);
  if (k !== null) { pointAt(k); requestImage(k); }
  redrawView();
  scheduleStrips();
  updateHook();
}

export function updateLiveButton() {
  const b = $("live-button");
  b.classList.toggle("following", S.following);
  b.textContent = S.following ? "● following" : "▶ Live";
}

export function updateSlider() {
  const sl = $("slider");
  const max = Math.max(0, S.maxFrame);
  if (sl.max !== String(max)) sl.max = String(max);
  sl.disabled = S.maxFrame < 0;
}
