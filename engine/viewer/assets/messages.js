// The bridge's messages (docs/viewer.md) applied to the page: each handler writes the state
// through state.js and redraws what changed. Text: hello, state, pullback, guidance, no_image,
// error; binary: frame.

import { $, isNum } from "./common.js";
import { ensureLmode, lmodeHeight, resetLmode, writeLmodeColumn } from "./lmode.js";
import {
  drawLive, pointAt, redrawView, requestImageSoon, showFrame, updateLiveButton, updateSlider,
} from "./navigation.js";
import {
  updateFramePanel, updateGuidancePanel, updateLatencyText, updateStateBadge, updateStatusBar,
} from "./panels.js";
import {
  MAX_IMAGE_PX, S, adoptPullbackId, applyHello, clearRequests, putFrame, putImage, setConnection,
  setFollowing, setFrameCount, setGuidance, setLastLive, setNoImage, setSpacing, startPullback,
  updateHook, validCount,
} from "./state.js";
import { scheduleStrips } from "./strips.js";
import { sizeXsection } from "./xsection.js";

export function onText(m) {
  switch (m.type) {
    case "hello": onHello(m); break;
    case "state": setState(m.state, m.detail, m.engine, m.counters); break;
    case "pullback": onPullback(m.pullback_id, m.n_frames, m.frame_spacing_mm); break;
    case "guidance": onGuidance(m); break;
    case "no_image": onNoImage(m); break;
    case "error": console.warn("octguide viewer: the bridge says", m.error); break;
    default: break;  // unknown types are ignored (forward compatibility)
  }
  updateHook();
}

export function onBinary(header, buf, base) {
  if (header.type === "frame") onFrame(header, buf, base);
  updateHook();
}

// the page's own socket closed (the bridge stopped, or refused it): socket.js reconnects
export function onClose() {
  clearRequests();
  setState("bridge_lost", "the page's WebSocket closed; retrying");
}

export function setState(state, detail, engine = null, counters = null) {
  setConnection(state, detail, engine, counters);
  updateStateBadge();
  updateStatusBar();
  updateHook();
}

function onHello(m) {
  const anglesChanged = applyHello(m);
  sizeXsection(S.imageSize);
  if (anglesChanged) {
    const sel = $("lmode-angle");
    sel.replaceChildren(...S.angles.map((a, i) => new Option(`${a}°`, String(i))));
    sel.value = String(S.angleIndex);
  }
  if (S.mode === "results") {
    setFollowing(false);
    setState("results", "");
  }
  $("live-button").hidden = S.mode === "results";
  updateLiveButton();
  redrawView();
}

function onPullback(id, nFrames, spacing) {
  if (id !== S.pullbackId) {
    // A new pullback clears the views; the same id again (page reconnected) keeps what we have
    // and lets the bridge's snapshot overwrite it.
    startPullback(id);
    resetLmode();
  }
  if (validCount(nFrames)) {
    setFrameCount(nFrames);
    ensureLmode(Math.max(nFrames, S.maxFrame + 1), lmodeHeight());
  }
  if (isNum(spacing)) setSpacing(spacing);
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
  if (S.pullbackId === null && id !== null) adoptPullbackId(id);
  else if (id !== null && id !== S.pullbackId) return;  // guidance of another pullback
  setGuidance(g);
  if (g) {
    if (S.nFrames === null && validCount(g.n_frames)) {
      setFrameCount(g.n_frames);
      // shrink a grown axis to the final frame count
      ensureLmode(Math.max(g.n_frames, S.maxFrame + 1), lmodeHeight());
    }
    if (S.spacing === null && isNum(g.frame_spacing_mm)) setSpacing(g.frame_spacing_mm);
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
  setNoImage(k, m.reason || "no image");
  if (k === S.view) redrawView();
}

// frame k's record: the new header's fields over what the page had (its L-mode cuts are kept
// unless the header brings valid new ones)
function frameRecord(h, buf, base) {
  const ov = h.overlay || null;
  const prev = S.frames.get(h.frame);
  const rec = {
    lmode: prev?.lmode ?? null, nAngles: prev?.nAngles, lengthPx: prev?.lengthPx,
    status: h.status ?? ov?.status ?? null,
    overlay: ov ?? prev?.overlay ?? null,
    reason: ov?.reason ?? h.reason ?? null,
  };
  if (h.lmode && Number.isInteger(h.lmode.n_angles) && h.lmode.n_angles > 0 && h.lmode.n_angles <= 64
      && Number.isInteger(h.lmode.length_px) && h.lmode.length_px > 0 && h.lmode.length_px <= MAX_IMAGE_PX) {
    const n = h.lmode.n_angles * h.lmode.length_px;
    rec.lmode = new Uint8Array(buf.slice(base + h.lmode.offset, base + h.lmode.offset + n));
    rec.nAngles = h.lmode.n_angles;
    rec.lengthPx = h.lmode.length_px;
  }
  return rec;
}

function onFrame(h, buf, base) {
  if (h.pullback_id != null && h.pullback_id !== S.pullbackId) {
    if (S.pullbackId === null) adoptPullbackId(h.pullback_id);
    else onPullback(h.pullback_id, null, null);  // frames of a pullback we were not told about
  }
  const k = h.frame;
  if (!Number.isInteger(k) || k < 0 || k >= S.maxAxisFrames) return;
  const rec = frameRecord(h, buf, base);
  putFrame(k, rec);
  if (h.image && Array.isArray(h.image.shape) && h.image.shape.every((v) => Number.isInteger(v) && v > 0 && v <= MAX_IMAGE_PX)) {
    const [ih, iw] = h.image.shape;
    const grey = new Uint8Array(buf.slice(base + h.image.offset, base + h.image.offset + ih * iw));
    putImage(k, { w: iw, h: ih, grey });
  }
  writeLmodeColumn(k, rec);
  updateSlider();

  if (h.draw) setLastLive(k);
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
    pointAt(k);
    redrawView();
    requestImageSoon();
  }
  scheduleStrips();
  updateStatusBar();
}
