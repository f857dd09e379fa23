// octguide live IVOCT viewer: the page end of docs/viewer.md. Engineering software on synthetic
// data, not a medical device.
//
// ES modules, no bundler (the bridge serves each with a JavaScript MIME type):
//   state.js       the page's state; the only module that writes it (named writers)
//   socket.js      the WebSocket to the bridge, reconnecting
//   messages.js    the bridge's messages applied to the state and the views
//   navigation.js  the frame on display: live following, scrubbing, image requests, latency
//   xsection.js    the cross-section canvas (image, texts, overlay)
//   lmode.js       the L-mode strip and the x-axis every strip shares
//   strips.js      the lumen-area profile and apposition bar (and the strips' redraw)
//   panels.js      status bar, frame numbers, guidance
//   common.js      formatting helpers and colours
// This module wires the operator's input and starts the page.
//
// The page keeps every frame's overlay and L-mode cuts, at most IMAGE_CACHE_MAX images (LRU),
// and redraws the strips once per animation frame at most. Live frames are drawn on arrival so
// that display latency is honest.

import { $ } from "./common.js";
import { axisFrames, lcv, redrawLmodeColumns } from "./lmode.js";
import { onBinary, onClose, onText, setState } from "./messages.js";
import { followLive, showFrame, updateLiveButton } from "./navigation.js";
import { updateFramePanel, updateGuidancePanel, updateLatencyText } from "./panels.js";
import { S, setAngleIndex, updateHook } from "./state.js";
import { connect } from "./socket.js";
import { scheduleStrips } from "./strips.js";
import { drawXsection } from "./xsection.js";

// the frame under a pointer at clientX on any strip (they share the L-mode's x-axis)
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
    setAngleIndex(Number(ev.target.value) || 0);
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
  connect({ onText, onFrame: onBinary, onClose });
}

init();
