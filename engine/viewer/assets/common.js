// Small pure helpers and the page's colours, shared by every module. Holds no state.

export const $ = (id) => document.getElementById(id);

export const isNum = (v) => typeof v === "number" && Number.isFinite(v);
export const fmt = (v, d, unit = "") => (isNum(v) ? v.toFixed(d) + unit : "—");
export const raw = (v) => (v === null || v === undefined ? "" : String(v));

// an element's text and, in data-value, the raw number it shows ("" when none): what tests read
export function setVal(id, text, value) {
  const el = $(id);
  el.textContent = text;
  el.dataset.value = raw(value);
}

export const rad = (deg) => ((deg - 90) * Math.PI) / 180;  // screen degrees -> canvas angle

export const C = {
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
