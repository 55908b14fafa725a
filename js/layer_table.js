// LayerTable: the per-operator table, the headline figures, the error / warning banner, and the
// selection hub that links the table with the roofline's bqplot marks and with peer anywidgets
// (formula panel, memory share) on the FRONT END, so the links keep working in a static HTML
// export where no kernel runs.
//
// Model traits (see llmroof_widgets/widgets/anywidgets.py, LayerTable):
//   rows      [{index, key, phase, layer_type, name, count, flops, bytes, arithmetic_intensity,
//               time_s, share, bound, peak_dtype, dot: [slot, k] | null, ...}]
//   totals    {prefill: {...}, decode: {...}}   phase totals from the engine
//   headline  {model, hardware, ttft_s, tpot_s, tokens_per_s, throughput_tokens_per_s, ...}
//   error     "" or the message of the last failed recomputation (shown as text)
//   warning   "" or a warning about the current result (shown as text in the banner)
//   selected  [row index] or []
//   mark_slots number of dot slots (widgets/_data.py SLOTS: phase × bound)
//   marks     ["IPY_MODEL_<id>", ...]  bqplot marks; row.dot = [slot, point index], mark j has slot j % mark_slots;
//             several rows may share a dot (operators at the same point): clicking it selects them all
//   peers     ["IPY_MODEL_<id>", ...]  anywidgets whose `selected` uses the row indices
//   dot_notes ["IPY_MODEL_<id>", ...]  bqplot Labels that say "no dot" when a selected row has none
//             (row.no_dot: why)
import {
  asIndices, boundLabel, ensureStyle, fmtBytes, fmtFlops, fmtIntensity, fmtNumber, fmtPercent, fmtRate,
  fmtTime, h, OP_COLUMNS, opLabel, sameIndices, redrawOn
} from "./common.js";

// The phase is the group row above each phase's operators (and each row's data-phase), not a column.
const COLUMNS = OP_COLUMNS;

// Definitions shown near the times; the engine's own wording (result.notes) wins when present.
const DEFAULT_NOTES = {
  time: "each operator is charged max(FLOPs / peak, bytes / bandwidth) at the device's full peak and bandwidth, with no kernel-launch, scheduling or communication overhead",
  ttft: "time to first token = the prefill pass over the whole prompt",
  tpot: "time per output token after the first = mean decode step time",
  tokens_per_s: "generated tokens per second for one sequence, end to end",
  throughput_tokens_per_s: "generated tokens per second for the whole batch (every sequence together, all devices)",
};

const FITS_CHECK =
  "Fits check: weights + the KV cache of the last step + the larger of the prefill and decode activations " +
  "(the memory chart's \"fits check\" bar), against the device's capacity; \"fits\" and \"max batch\" use it.";

function notesOf(hd) {
  const n = (hd && hd.notes) || {};
  const out = {};
  for (const k of Object.keys(DEFAULT_NOTES)) out[k] = n[k] ? String(n[k]) : DEFAULT_NOTES[k];
  return out;
}

function modeOf(hd) {
  return (hd && hd.efficiency_mode) || "roofline";
}

function capitalize(t) {
  return t.charAt(0).toUpperCase() + t.slice(1);
}

function definitions(hd) {
  const n = notesOf(hd);
  let time;
  if (modeOf(hd) === "roofline") {
    time = /lower bound/i.test(n.time) ? capitalize(n.time) : `Roofline times are lower bounds: ${n.time}`;
  } else {
    time = capitalize(n.time); // calibrated estimates / efficiency shares: the widgets' wording (ViewData)
  }
  return (
    `${time}. TTFT: ${n.ttft}. TPOT: ${n.tpot}. ` +
    `tokens/s: ${n.tokens_per_s}. Throughput: ${n.throughput_tokens_per_s}.`
  );
}

// What the times are, in the headline's note: roofline lower bounds, or calibrated estimates.
const MODE_NOTE = {
  roofline: ["lr-note lr-lower-bound", "Roofline times are lower bounds; see the footnote for TTFT, TPOT and throughput."],
  custom: [
    "lr-note lr-lower-bound lr-custom-efficiency",
    "Roofline times at your efficiency shares of the peaks: lower bounds for kernels that reach them; see the footnote.",
  ],
  calibrated: [
    "lr-note lr-calibrated",
    "Calibrated estimates (achievable bandwidth, GEMM efficiency, launch overheads of real kernels), not lower bounds; see the footnote.",
  ],
};

// "(a lower bound)" for times, "(an upper bound)" for rates; calibrated figures are estimates
function boundWord(hd, rate) {
  if (modeOf(hd) === "calibrated") return "(a calibrated estimate)";
  return rate ? "(an upper bound)" : "(a lower bound)";
}

function precisionText(hd) {
  const w = hd.w_bits, a = hd.a_bits, kv = hd.kv_bits;
  if ([w, a, kv].every((x) => typeof x === "number")) return `W${w}A${a}KV${kv}`;
  return `weights ${w} · activations ${a} · KV ${kv}`;
}

async function resolveModels(model, refs, signal) {
  const out = [];
  for (const ref of refs || []) {
    if (typeof ref !== "string" || !ref.startsWith("IPY_MODEL_")) continue;
    const id = ref.slice("IPY_MODEL_".length);
    let m = null;
    // A referenced model may be created after this one (static export): retry for a while.
    for (let attempt = 0; attempt < 100 && !signal.aborted; attempt++) {
      try {
        m = await model.widget_manager.get_model(id);
        if (m) break;
      } catch (_e) {
        /* not registered yet */
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    if (m) out.push(m);
    else out.push(null);
  }
  return out;
}

/** The selection hub: runs once per model (not per view). */
function initialize({ model }) {
  const signal = { aborted: false };
  const detach = [];
  let marks = [];
  let peers = [];
  let notes = [];
  let syncing = false;

  const current = () => asIndices(model.get("selected"));
  // mark j holds the dots of slot j % mark_slots (several roofline plots may share one table)
  const slotOf = (j) => j % (model.get("mark_slots") || marks.length || 1);
  const rowsOf = () => model.get("rows") || [];

  // "no dot" in the roofline when a selected operator has none (an embedding lookup, a collective)
  function noteText(selRows) {
    const r = selRows.find((x) => x && !x.dot);
    return r ? `${r.name} (${r.phase}): no dot — ${r.no_dot || "nothing to plot"}` : "";
  }

  function updateNotes() {
    const rows = rowsOf();
    const text = noteText(current().map((i) => rows[i]));
    for (const n of notes) {
      const have = Array.from(n.get("text") || []);
      if (have.length !== 1 || have[0] !== text) n.set("text", [text]); // a view annotation: not sent to the kernel
    }
  }

  // table -> marks, notes and peers
  function pushFromTable() {
    const sel = current();
    const rows = rowsOf();
    const selRows = sel.map((i) => rows[i]).filter(Boolean);
    const changed = [];
    syncing = true;
    try {
      marks.forEach((m, j) => {
        if (!m) return;
        const want = [];
        for (const r of selRows) {
          if (r.dot && r.dot[0] === slotOf(j) && !want.includes(r.dot[1])) want.push(r.dot[1]);
        }
        if (!sameIndices(want, asIndices(m.get("selected")))) {
          m.set("selected", want.length ? new Uint32Array(want) : null); // restyles the dot now
          changed.push(m);
        }
      });
      updateNotes();
      for (const p of peers) {
        if (!p) continue;
        if (!sameIndices(sel, asIndices(p.get("selected")))) {
          p.set("selected", sel.slice());
          changed.push(p);
        }
      }
    } finally {
      syncing = false;
    }
    // tell the kernel after the views have restyled: serializing and sending can wait a microtask
    if (changed.length) queueMicrotask(() => changed.forEach((m) => m.save_changes()));
  }

  function setTable(next) {
    if (!sameIndices(next, current())) {
      model.set("selected", next);
      model.save_changes(); // -> change:selected -> pushFromTable
    } else {
      pushFromTable(); // normalise the others (e.g. clear the other marks)
    }
  }

  // a bqplot mark -> table: every operator drawn as the clicked dot
  const fromMark = (j) => () => {
    if (syncing) return;
    const slot = slotOf(j);
    const sel = asIndices(marks[j].get("selected"));
    const rows = rowsOf();
    if (sel.length) {
      const k = sel[sel.length - 1];
      const all = rows.filter((r) => r.dot && r.dot[0] === slot && r.dot[1] === k).map((r) => r.index);
      if (all.length) setTable(all);
    } else {
      const cur = current();
      if (cur.some((i) => rows[i] && rows[i].dot && rows[i].dot[0] === slot)) setTable([]);
    }
  };

  // a peer anywidget -> table
  const fromPeer = (p) => () => {
    if (syncing) return;
    const sel = asIndices(p.get("selected")).slice(-1);
    setTable(sel);
  };

  model.on("change:selected", () => {
    if (!syncing) pushFromTable();
  });

  // (Re)wire the partners: at creation and whenever the kernel links more views to the table.
  let generation = 0;
  async function wire() {
    const gen = ++generation;
    const [m, p, n] = await Promise.all([
      resolveModels(model, model.get("marks"), signal),
      resolveModels(model, model.get("peers"), signal),
      resolveModels(model, model.get("dot_notes"), signal),
    ]);
    if (signal.aborted || gen !== generation) return; // a newer wiring superseded this one
    for (const f of detach.splice(0)) f();
    marks = m;
    peers = p;
    notes = n.filter(Boolean);
    marks.forEach((mk, j) => {
      if (!mk) return;
      const cb = fromMark(j);
      mk.on("change:selected", cb);
      detach.push(() => mk.off("change:selected", cb));
    });
    peers.forEach((pm) => {
      if (!pm) return;
      const cb = fromPeer(pm);
      pm.on("change:selected", cb);
      detach.push(() => pm.off("change:selected", cb));
    });
    pushFromTable(); // initial sync (an exported page must show the saved selection everywhere; P17)
  }
  model.on("change:marks", wire);
  model.on("change:peers", wire);
  model.on("change:dot_notes", wire);
  model.on("change:rows", updateNotes); // a recomputation may give the selected operator a dot, or take it away
  wire();

  return () => {
    signal.aborted = true;
    for (const f of detach) f();
  };
}

function headlineFigure(key, label, value, title, extraClass) {
  return h(
    "div",
    { class: `lr-figure${extraClass ? " " + extraClass : ""}`, dataset: { key }, title },
    h("span", { class: "lr-figure-label" }, label),
    h("span", { class: "lr-figure-value" }, value),
  );
}

function renderHeadline(model) {
  const hd = model.get("headline") || {};
  if (!hd || hd.model == null) return h("div", { class: "lr-headline lr-empty" }, "No result yet.");
  const fits = hd.fits === true;
  const n = notesOf(hd);
  const subtitle = [
    `batch ${fmtNumber(hd.batch_size)}`,
    `prompt ${fmtNumber(hd.prompt_len)}`,
    `generate ${fmtNumber(hd.gen_len)}`,
    precisionText(hd),
    `logits: ${hd.logits}`,
    `attention: ${hd.attention}`,
    hd.devices > 1 ? `${fmtNumber(hd.devices)} devices` : null,
  ]
    .filter((x) => x != null)
    .join(" · ");
  const techniques = Array.isArray(hd.techniques) ? hd.techniques.map(String) : [];
  const [noteClass, noteText] = MODE_NOTE[modeOf(hd)] || MODE_NOTE.roofline;
  return h(
    "div",
    { class: "lr-headline" },
    h(
      "div",
      { class: "lr-title" },
      h("span", { class: "lr-model-name" }, String(hd.model)),
      h("span", { class: "lr-on" }, " on "),
      h("span", { class: "lr-hardware-name" }, String(hd.hardware)),
    ),
    h("div", { class: "lr-subtitle" }, subtitle),
    techniques.length
      ? h(
          "div",
          { class: "lr-techniques-line", title: "technique knobs that differ from the plain analysis" },
          h("span", { class: "lr-techniques-label" }, "techniques: "),
          techniques.join(" · "),
        )
      : null,
    h(
      "div",
      { class: "lr-figures" },
      headlineFigure("ttft", "TTFT", fmtTime(hd.ttft_s), `TTFT: ${n.ttft} ${boundWord(hd)}.`),
      headlineFigure("tpot", "TPOT", fmtTime(hd.tpot_s), `TPOT: ${n.tpot} ${boundWord(hd)}.`),
      headlineFigure("tokens_per_s", "tokens/s, one sequence", fmtRate(hd.tokens_per_s, ""), `tokens/s: ${n.tokens_per_s} ${boundWord(hd, true)}.`),
      headlineFigure("throughput", "throughput, whole batch", `${fmtRate(hd.throughput_tokens_per_s, "")} tok/s`, `Throughput: ${n.throughput_tokens_per_s} ${boundWord(hd, true)}.`),
      hd.devices > 1 && hd.throughput_per_device_tokens_per_s != null
        ? headlineFigure(
            "throughput_per_device",
            "per device",
            `${fmtRate(hd.throughput_per_device_tokens_per_s, "")} tok/s`,
            `Throughput per device: the whole batch's throughput divided by the ${fmtNumber(hd.devices)} devices ${boundWord(hd, true)}.`,
          )
        : null,
      headlineFigure("e2e", "end to end", fmtTime(hd.e2e_s), `End to end: TTFT + every later decode step ${boundWord(hd)}.`),
      headlineFigure(
        "memory",
        hd.devices > 1 ? "memory per device (fits check)" : "memory (fits check)",
        `${fmtBytes(hd.memory_total_bytes)} / ${fmtBytes(hd.capacity_bytes)}`,
        FITS_CHECK,
      ),
      headlineFigure(
        "fits",
        "fits",
        fits ? "yes" : "no",
        fits ? "The model, KV cache and activations fit in device memory." : "Does not fit in device memory.",
        fits ? "lr-fits" : "lr-nofit",
      ),
      hd.max_batch_size != null
        ? headlineFigure("max_batch", "max batch", fmtNumber(hd.max_batch_size), "Largest batch size whose memory fits on the device.")
        : null,
    ),
    h("div", { class: noteClass, title: definitions(hd), dataset: { mode: modeOf(hd) } }, noteText),
  );
}

function renderMessages(model) {
  const box = h("div", { class: "lr-messages" });
  const err = model.get("error") || "";
  if (err) {
    box.appendChild(
      h(
        "div",
        { class: "lr-error", role: "alert" },
        h("strong", null, "Error: "),
        h("span", { class: "lr-error-text" }, err),
        h("span", { class: "lr-error-note" }, " — showing the last valid result."),
      ),
    );
  }
  const warn = model.get("warning") || "";
  if (warn) box.appendChild(h("div", { class: "lr-warning", role: "status" }, warn));
  return box;
}

function compare(a, b, col) {
  const x = a[col.key];
  const y = b[col.key];
  if (col.num) return (Number(x) || 0) - (Number(y) || 0);
  return String(x ?? "").localeCompare(String(y ?? ""));
}

function render({ model, el }) {
  ensureStyle(el);
  el.classList.add("lr-root", "lr-table-widget");
  let sortKey = null;
  let sortDir = 1;

  function select(i) {
    const cur = asIndices(model.get("selected"));
    const next = cur.length === 1 && cur[0] === i ? [] : [i];
    model.set("selected", next);
    model.save_changes();
  }

  function columnTitle(c) {
    if (c.key === "time_s" && modeOf(model.get("headline")) === "calibrated") {
      return "calibrated time of ONE run: max(FLOPs / effective rate, bytes / achievable bandwidth) + launch overhead, an estimate";
    }
    if (c.key === "bound") {
      return `${c.title}; communication: a collective (all-reduce, all-gather, all-to-all, pipeline send) on the interconnect`;
    }
    return c.title;
  }

  function renderTable() {
    const rows = model.get("rows") || [];
    const totals = model.get("totals") || {};
    const sel = new Set(asIndices(model.get("selected")));
    const thead = h(
      "thead",
      null,
      h(
        "tr",
        null,
        COLUMNS.map((c) => {
          const active = sortKey === c.key;
          return h(
            "th",
            {
              class: `lr-th lr-col-${c.key}${c.num ? " lr-num" : ""}${c.low ? " lr-low" : ""}${active ? " lr-sorted" : ""}`,
              dataset: { key: c.key },
              title: c.title ? `${columnTitle(c)} — click to sort` : "click to sort",
              "aria-sort": active ? (sortDir > 0 ? "ascending" : "descending") : "none",
              onclick: () => {
                if (sortKey === c.key) {
                  if (sortDir > 0) sortDir = -1;
                  else sortKey = null; // third click: back to the engine's order
                } else {
                  sortKey = c.key;
                  sortDir = c.num ? -1 : 1;
                }
                draw();
              },
            },
            c.label,
            h("span", { class: "lr-sort-arrow" }, active ? (sortDir > 0 ? " ▲" : " ▼") : ""),
          );
        }),
      ),
    );
    const tbody = h("tbody");
    const phases = [];
    for (const r of rows) if (!phases.includes(r.phase)) phases.push(r.phase);
    for (const ph of phases) {
      const tot = totals[ph] || {};
      const group = rows.filter((r) => r.phase === ph);
      if (sortKey) {
        const col = COLUMNS.find((c) => c.key === sortKey);
        group.sort((a, b) => sortDir * compare(a, b, col) || a.index - b.index);
      }
      const desc =
        ph === "prefill"
          ? `prefill — ${fmtNumber(tot.tokens)} tokens per sequence, one pass`
          : `decode — one step at context ${fmtNumber(tot.context)} (the first generated token)`;
      tbody.appendChild(
        h("tr", { class: "lr-group", dataset: { phase: ph } }, h("td", { colspan: COLUMNS.length }, desc)),
      );
      for (const r of group) {
        const tr = h(
          "tr",
          {
            class: `lr-row lr-bound-${r.bound}${sel.has(r.index) ? " selected lr-selected" : ""}`,
            tabindex: 0,
            "aria-selected": sel.has(r.index) ? "true" : "false",
            dataset: { index: r.index, op: r.name, phase: r.phase, layerType: r.layer_type, bound: r.bound },
            title: `${opLabel(r)}: click to select`,
            onclick: () => select(r.index),
            onkeydown: (ev) => {
              if (ev.key === "Enter" || ev.key === " ") {
                ev.preventDefault();
                select(r.index);
              }
            },
          },
          COLUMNS.map((c) => {
            const v = r[c.key];
            const text = c.fmt ? c.fmt(v) : String(v ?? "");
            const cls = `lr-cell lr-col-${c.key}${c.num ? " lr-num" : ""}${c.low ? " lr-low" : ""}`;
            if (c.key === "bound") return h("td", { class: cls, title: v }, h("span", { class: `lr-badge lr-badge-${v}` }, text));
            if (c.key === "name") {
              // the layer type inside the operator cell too: shown when a narrow table hides its column
              return h(
                "td",
                { class: cls },
                h("span", { class: "lr-op-name" }, text),
                h("span", { class: "lr-op-layer" }, ` ${r.layer_type}`),
                r.dot ? null : h("span", { class: "lr-nodot", title: `no roofline dot: ${r.no_dot || ""}` }, " ∅"),
              );
            }
            return h("td", { class: cls, title: c.key === "flops" || c.key === "bytes" ? `${Number(v).toLocaleString("en-US")}` : null }, text);
          }),
        );
        tbody.appendChild(tr);
      }
      const totalCell = {
        name: `${ph} total (Σ count × row)`,
        flops: fmtFlops(tot.flops),
        bytes: fmtBytes(tot.bytes),
        arithmetic_intensity: fmtIntensity(tot.arithmetic_intensity),
        time_s: fmtTime(tot.time_s),
        share: fmtPercent(tot.time_s > 0 ? 1 : 0),
      };
      tbody.appendChild(
        h(
          "tr",
          { class: "lr-total", dataset: { phase: ph } },
          COLUMNS.map((c) => {
            const cls = `lr-cell lr-col-${c.key}${c.num ? " lr-num" : ""}${c.low ? " lr-low" : ""}`;
            if (c.key === "bound") {
              return h("td", { class: cls }, tot.bound ? h("span", { class: `lr-badge lr-badge-${tot.bound}` }, boundLabel(tot.bound)) : "");
            }
            return h("td", { class: cls }, totalCell[c.key] ?? "");
          }),
        ),
      );
    }
    if (!rows.length) {
      tbody.appendChild(h("tr", { class: "lr-empty-row" }, h("td", { colspan: COLUMNS.length }, "No operators to show.")));
    }
    return h("div", { class: "lr-table-scroll" }, h("table", { class: "lr-table" }, thead, tbody));
  }

  function draw() {
    const scroll = el.querySelector(".lr-table-scroll");
    const top = scroll ? scroll.scrollTop : 0;
    const left = scroll ? scroll.scrollLeft : 0;
    el.replaceChildren(
      renderMessages(model),
      renderHeadline(model),
      renderTable(),
      h("div", { class: "lr-footnote" }, definitions(model.get("headline"))),
    );
    const ns = el.querySelector(".lr-table-scroll");
    if (ns) {
      ns.scrollTop = top;
      ns.scrollLeft = left;
    }
  }

  // Keep the selected row visible inside the table's own scroll box (a dot click may select a
  // row that is scrolled away); the page itself does not scroll.
  function revealSelected() {
    const scroll = el.querySelector(".lr-table-scroll");
    const tr = el.querySelector("tr.lr-row.selected");
    if (!scroll || !tr) return;
    const head = el.querySelector(".lr-table thead");
    const h0 = head ? head.getBoundingClientRect().height : 0;
    const r = tr.getBoundingClientRect();
    const c = scroll.getBoundingClientRect();
    if (r.top < c.top + h0 || r.bottom > c.bottom) {
      scroll.scrollTop += r.top - c.top - h0 - (c.height - h0 - r.height) / 2;
    }
  }

  // Only the selection changed: restyle rows instead of rebuilding the table.
  function restyleSelection() {
    const sel = new Set(asIndices(model.get("selected")));
    for (const tr of el.querySelectorAll("tr.lr-row")) {
      const on = sel.has(Number(tr.dataset.index));
      tr.classList.toggle("selected", on);
      tr.classList.toggle("lr-selected", on);
      tr.setAttribute("aria-selected", on ? "true" : "false");
    }
    revealSelected();
  }

  redrawOn(model, ["rows", "totals", "headline", "error", "warning"], draw);
  // the dots restyle first (the hub's listener, registered in initialize); the table follows a microtask later
  model.on("change:selected", () => queueMicrotask(restyleSelection));
  return () => {};
}

export default { initialize, render };
