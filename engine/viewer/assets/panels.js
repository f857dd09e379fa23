// The DOM panels: the status bar (state badge, lost banner, counters, model, latency), the
// displayed frame's numbers and the pullback's guidance. They read the state and write only
// the DOM.

import { $, fmt, isNum, raw, setVal } from "./common.js";
import { S, latencyStats } from "./state.js";

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

const BASIS_TEXT = {
  eel: "EEL-based (mean EEL diameter at the distal reference, rounded down)",
  lumen: "lumen-based (mean reference lumen diameter, rounded up)",
  undetermined: "undetermined",
};

// ---------------------------------------------------------------------------------------------
// Status bar

// the state badge and, when the engine or the bridge is lost, the banner over the page
export function updateStateBadge() {
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
}

export function updateStatusBar() {
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


export function updateLatencyText() {
  const el = $("latency");
  const L = latencyStats();
  el.dataset.n = String(L.n);
  el.dataset.p50 = raw(L.p50);
  el.dataset.p99 = raw(L.p99);
  el.textContent = L.n
    ? `display latency ${L.last.toFixed(1)} ms (p50 ${L.p50.toFixed(1)}, p99 ${L.p99.toFixed(1)}, n ${L.n})`
    : "display latency —";
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

export function updateFramePanel() {
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

export function updateGuidancePanel() {
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
