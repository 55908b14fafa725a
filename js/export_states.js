// The exported page's state switcher (llmroof_widgets/export_states.py builds its payload).
//
// The payload holds, for every precomputed setting (state), the synced traits a live kernel would
// have sent to the browser after that recomputation. When a control changes, the page reads every
// live control's value, finds the state with exactly those values and puts its traits into the
// models (deserialized like a kernel update). A value outside the grid shows a notice and dims the
// figures: they are never silently stale.
import { ensureStyle, h } from "./common.js";

const NUM = (x) => (typeof x === "string" ? Number(x) : x); // "NaN", "Infinity" travel as strings

/** base64 → gzip → JSON, with the browser's own DecompressionStream. */
async function inflate(b64) {
  let body;
  try {
    // the browser's own base64 decoder (a data: URL, read locally: no network)
    body = (await fetch(`data:application/gzip;base64,${b64}`)).body;
  } catch (_e) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    body = new Blob([bytes]).stream();
  }
  const stream = body.pipeThrough(new DecompressionStream("gzip"));
  return JSON.parse(await new Response(stream).text());
}

const TYPED = {
  float64: Float64Array,
  float32: Float32Array,
  int32: Int32Array,
  uint32: Uint32Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int8: Int8Array,
  uint8: Uint8Array,
};

/** A stored value back as the kernel's JSON: numbers from the list, binary arrays as DataViews. */
export function rebuild(payload, vid) {
  const [tid, nums] = payload.values[vid];
  let k = 0;
  const walk = (t, parent) => {
    if (typeof t === "number") return NUM(nums[k++]);
    if (Array.isArray(t)) return t.map((x) => walk(x, null));
    if (t && typeof t === "object") {
      if (t.__lr_nd__) {
        const Typed = TYPED[parent && parent.dtype] || Float64Array;
        const arr = new Typed(t.__lr_nd__.length);
        for (let i = 0; i < arr.length; i++) arr[i] = NUM(nums[k++]);
        return new DataView(arr.buffer);
      }
      if (typeof t.__lr_b64__ === "string") {
        const bin = atob(t.__lr_b64__);
        const u = new Uint8Array(bin.length);
        for (let i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i);
        return new DataView(u.buffer);
      }
      const out = {};
      for (const [key, x] of Object.entries(t)) out[key] = walk(x, t);
      return out;
    }
    return t;
  };
  return walk(payload.templates[tid], null);
}

// decompression starts at page parse (the export's inline script) or when the model is created, render awaits it
let inflating = null;
let inflatingFor = null;
const keyOf = (b64) => `${b64.length}:${b64.slice(0, 64)}${b64.slice(-64)}`;
function initialize({ model }) {
  inflatingFor = model.get("payload");
  // the page's inline script (llmroof_widgets/export.py) may have started it already, at parse time
  const early = typeof window !== "undefined" ? window.__lrInflating : null;
  inflating =
    early && early.key === keyOf(inflatingFor) ? early.promise.catch(() => inflate(inflatingFor)) : inflate(inflatingFor);
}

async function render({ model, el }) {
  ensureStyle(el);
  el.classList.add("lr-export-states");
  const line = h("div", { class: "lr-export-summary", text: model.get("summary") });
  const notice = h("div", { class: "lr-export-notice", role: "status" });
  notice.hidden = true;
  el.append(line, notice);
  const doc = el.ownerDocument || document;
  const body = doc.body;
  const api = { ready: false, current: -1, switches: [], states: 0, timings: { render: performance.now() } };
  window.__lrExport = api;

  const b64 = model.get("payload");
  const payload = await (inflatingFor === b64 && inflating ? inflating : inflate(b64));
  api.timings.inflated = performance.now();
  const manager = model.widget_manager;
  const get = async (id) => {
    for (let attempt = 0; attempt < 200; attempt++) {
      try {
        const m = await manager.get_model(id);
        if (m) return m;
      } catch (_e) {
        /* not created yet */
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`export: model ${id} not found`);
  };
  // the keys of one state, grouped by model
  const byModel = new Map();
  payload.keys.forEach(([id, trait], j) => {
    if (!byModel.has(id)) byModel.set(id, []);
    byModel.get(id).push([trait, j]);
  });
  const models = new Map();
  for (const id of byModel.keys()) models.set(id, await get(id));
  const traits = payload.sig.traits;
  const controls = [];
  for (const t of traits) controls.push(await get(t.model));
  const index = new Map(payload.sig.values.map((v, i) => [JSON.stringify(v), i]));
  // every value each control takes somewhere in the grid
  const offered = traits.map((_, j) => new Set(payload.sig.values.map((v) => JSON.stringify(v[j]))));
  api.states = payload.states.length;
  api.payload = payload;
  let current = payload.base;
  let applying = false;
  let token = 0;

  const shown = (j, v) => {
    const s = traits[j].shown[traits[j].trait === "index" ? String(v) : JSON.stringify(v)];
    return s === undefined ? String(v) : s;
  };
  const describe = (i) => traits.map((t, j) => `${t.label} ${shown(j, payload.sig.values[i][j])}`).join(" · ");

  async function apply(i) {
    const my = ++token;
    const t0 = performance.now();
    const row = payload.states[i];
    const updates = [];
    for (const [id, list] of byModel) {
      const m = models.get(id);
      const raw = {};
      for (const [trait, j] of list) raw[trait] = rebuild(payload, row[j]);
      updates.push([m, m.constructor._deserialize_state(raw, m.widget_manager)]);
    }
    const states = await Promise.all(updates.map(([, p]) => p));
    if (my !== token) return; // a newer switch has started
    applying = true;
    try {
      updates.forEach(([m], k) => m.set_state(states[k]));
    } finally {
      applying = false;
    }
    current = i;
    api.current = i;
    body.dataset.lrExportState = String(i);
    api.switches.push(performance.now() - t0);
  }

  function onControl() {
    if (applying) return;
    const now = controls.map((m, j) => m.get(traits[j].trait));
    const i = index.get(JSON.stringify(now));
    if (i !== undefined) {
      notice.hidden = true;
      body.classList.remove("lr-offgrid");
      if (i !== current) apply(i);
      else body.dataset.lrExportState = String(i);
      return;
    }
    // a value (or a combination) that this page has not precomputed: say so, never show it as current
    const off = now
      .map((v, j) => [v, j])
      .filter(([v, j]) => !offered[j].has(JSON.stringify(v)))
      .map(([v, j]) => {
        const vals = [...offered[j]].map((s) => shown(j, JSON.parse(s)));
        return `${traits[j].label} = ${shown(j, v)} (offline values: ${vals.join(", ")})`;
      });
    const what = off.length ? off.join("; ") : "this combination of values";
    notice.textContent =
      `${what}: not precomputed in this page, a live kernel is needed to recompute it. ` +
      `The figures below (dimmed) are still those of ${describe(current)}.`;
    notice.hidden = false;
    body.classList.add("lr-offgrid");
    body.dataset.lrExportState = "offgrid";
  }

  const detach = [];
  controls.forEach((m, j) => {
    const ev = `change:${traits[j].trait}`;
    m.on(ev, onControl);
    detach.push(() => m.off(ev, onControl));
  });
  if (current >= 0) body.dataset.lrExportState = String(current);
  api.ready = true;
  api.timings.ready = performance.now();
  api.apply = apply;
  api.get = get;
  api.describe = describe;
  body.dataset.lrExportReady = "1";
  return () => detach.forEach((f) => f());
}

export default { initialize, render };
