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

export * from "./format.js";

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
