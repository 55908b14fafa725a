// Shared helpers of the llmroof_widgets front ends (bundled into each widget by esbuild).
//
// Rule for every widget: text that comes from the kernel (model names, operator names,
// formulas, error messages) is written with textContent, never innerHTML.
import css from "./widgets.css";

const STYLE_ID = "llmroof-widgets-style";

/** Put the widgets' stylesheet into the document once (JupyterLab, Notebook, static HTML). */
export function ensureStyle(el) {
  const doc = (el && el.ownerDocument) || document;
  let style = doc.getElementById(STYLE_ID);
  if (style && style.textContent === css) return;
  if (!style) {
    style = doc.createElement("style");
    style.id = STYLE_ID;
    (doc.head || doc.documentElement).appendChild(style);
  }
  style.textContent = css;
}

/**
 * Create an element: h("div", {class: "x", title: "t", dataset: {index: 3}}, child, "text").
 * Strings become text nodes (never parsed as HTML).
 */
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "dataset") for (const [dk, dv] of Object.entries(v)) node.dataset[dk] = String(dv);
      else if (k === "text") node.textContent = String(v);
      else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  return node;
}

/**
 * A selection as a plain array of indices. A selection arrives as a JS Array (set by our
 * widgets), a typed array (bqplot), a DataView (a raw buffer echoed by the kernel) or null.
 */
export function asIndices(sel) {
  if (sel == null) return [];
  if (sel instanceof DataView) {
    const n = Math.floor(sel.byteLength / 4);
    const out = [];
    for (let i = 0; i < n; i++) out.push(sel.getUint32(i * 4, true));
    return out;
  }
  if (Array.isArray(sel) || ArrayBuffer.isView(sel)) return Array.from(sel, Number).filter(Number.isFinite);
  return [];
}

export function sameIndices(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Units (decimal SI, as the engine and the vendors use: 1 GB = 1e9 bytes).

function sig3(x) {
  const a = Math.abs(x);
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

function withPrefix(x, unit, prefixes) {
  if (x == null || !Number.isFinite(x)) return "–";
  if (x === 0) return `0 ${unit}`.trimEnd();
  const a = Math.abs(x);
  let i = 0;
  while (i < prefixes.length - 1 && a >= 1000 ** (i + 1) * 0.9995) i++;
  return `${sig3(x / 1000 ** i)} ${prefixes[i]}${unit}`.trimEnd(); // a bare count has no trailing space
}

const SI = ["", "k", "M", "G", "T", "P", "E"];

export const fmtFlops = (x) => withPrefix(x, "FLOP", SI);
export const fmtBytes = (x) => withPrefix(x, "B", SI);
export const fmtRate = (x, unit) => withPrefix(x, unit, SI);

export function fmtTime(s) {
  if (s == null || !Number.isFinite(s)) return "–";
  if (s === 0) return "0 s";
  const a = Math.abs(s);
  if (a < 1e-6) return `${sig3(s * 1e9)} ns`;
  if (a < 1e-3) return `${sig3(s * 1e6)} µs`;
  if (a < 1) return `${sig3(s * 1e3)} ms`;
  return `${sig3(s)} s`;
}

export function fmtNumber(x) {
  if (x == null || !Number.isFinite(x)) return "–";
  if (Number.isInteger(x)) return x.toLocaleString("en-US");
  return sig3(x);
}

export function fmtIntensity(x) {
  if (x == null || !Number.isFinite(x)) return "–";
  if (x === 0) return "0";
  if (Math.abs(x) < 0.01) return x.toExponential(1);
  return sig3(x);
}

export function fmtPercent(x) {
  if (x == null || !Number.isFinite(x)) return "–";
  const p = x * 100;
  if (p === 0) return "0 %";
  if (Math.abs(p) < 0.1) return "<0.1 %";
  return `${p >= 10 ? p.toFixed(1) : p.toFixed(2)} %`;
}

export const PHASE_LABEL = { prefill: "prefill", decode: "decode" };

/** "decode · decoder · q_proj" */
export function opLabel(row) {
  if (!row) return "";
  return `${row.phase} · ${row.layer_type} · ${row.name}`;
}

/** Draw now, then redraw once per burst of trait changes: one kernel update (hold_sync) sets several
 * traits at once, and the view should paint once, before the next frame. */
export function redrawOn(model, names, draw) {
  let pending = false;
  const schedule = () => {
    if (pending) return;
    pending = true;
    queueMicrotask(() => {
      pending = false;
      draw();
    });
  };
  draw();
  for (const name of names) model.on(`change:${name}`, schedule);
  return schedule;
}
