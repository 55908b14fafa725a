// FormulaPanel: the FLOPs and bytes formulas of the selected operator, with the numbers
// substituted (strings from the engine, shown as text) and the resulting values in readable units.
//
// Model traits (llmroof_widgets/widgets/formula.py):
//   rows       same row index space as the LayerTable (index, phase, layer_type, name, count, flops,
//              bytes, arithmetic_intensity, time_s, compute_time_s, memory_time_s, host_time_s,
//              communication_time_s, bound, peak_dtype, peak_flops, flops_formula, bytes_formula)
//   bandwidth  device memory bandwidth in bytes/s
//   selected   [row index] or []  (linked to the table on the front end)
//   picker     show a drop-down to choose the operator here
import {
  asIndices, ensureStyle, fmtBytes, fmtFlops, fmtIntensity, fmtNumber, fmtRate, fmtTime, h, opLabel,
} from "./common.js";

function line(label, formula, result, title) {
  return h(
    "div",
    { class: "lr-formula-line", title },
    h("div", { class: "lr-formula-label" }, label),
    h(
      "div",
      { class: "lr-formula-body" },
      formula ? h("code", { class: "lr-formula-expr" }, formula) : null,
      result ? h("span", { class: "lr-formula-result" }, formula ? ` = ${result}` : result) : null,
    ),
  );
}

function render({ model, el }) {
  ensureStyle(el);
  el.classList.add("lr-root", "lr-formula-widget");

  function pick(ev) {
    const v = ev.target.value;
    model.set("selected", v === "" ? [] : [Number(v)]);
    model.save_changes();
  }

  function draw() {
    const rows = model.get("rows") || [];
    const sel = asIndices(model.get("selected"));
    const row = sel.length ? rows[sel[0]] : null;
    const parts = [];
    if (model.get("picker")) {
      const select = h(
        "select",
        { class: "lr-formula-picker", "aria-label": "operator", onchange: pick },
        h("option", { value: "" }, "— choose an operator —"),
        rows.map((r) => h("option", { value: r.index, selected: row && r.index === row.index }, opLabel(r))),
      );
      parts.push(h("div", { class: "lr-formula-head" }, select));
    }
    if (!row) {
      parts.push(
        h("div", { class: "lr-formula-empty" }, "Select an operator (a table row or a roofline dot) to see its FLOPs and bytes formulas."),
      );
    } else {
      const bw = model.get("bandwidth");
      parts.push(
        h(
          "div",
          { class: "lr-formula-title", dataset: { index: row.index, op: row.name, phase: row.phase } },
          h("span", { class: "lr-formula-op" }, opLabel(row)),
          " ",
          h("span", { class: `lr-badge lr-badge-${row.bound}` }, `${row.bound}-bound`),
          h("span", { class: "lr-formula-count" }, `  runs ${fmtNumber(row.count)}× per pass; figures for one run`),
        ),
        line("FLOPs", row.flops_formula, fmtFlops(row.flops), "floating-point operations of one run"),
        line("bytes", row.bytes_formula, fmtBytes(row.bytes), "bytes moved to and from device memory by one run"),
        line("intensity", "FLOPs / bytes", `${fmtIntensity(row.arithmetic_intensity)} FLOP/B`, "arithmetic intensity"),
      );
      const peakName = row.peak_dtype === "vector" ? "vector peak" : `${row.peak_dtype} peak`;
      if (row.compute_time_s != null && row.memory_time_s != null) {
        // the bandwidth the engine applied (after any efficiency factor): its own figure when given
        const bwUsed = row.bandwidth || (row.memory_time_s > 0 ? row.bytes / row.memory_time_s : bw);
        const terms = [`FLOPs / ${peakName} ${fmtRate(row.peak_flops, "FLOP/s")}`, `bytes / ${fmtRate(bwUsed, "B/s")}`];
        const times = [fmtTime(row.compute_time_s), fmtTime(row.memory_time_s)];
        if (row.host_time_s > 0) {
          terms.push("host bytes / host link");
          times.push(fmtTime(row.host_time_s));
        }
        if (row.communication_time_s > 0) {
          terms.push("communication");
          times.push(fmtTime(row.communication_time_s));
        }
        parts.push(
          line("time", `max(${terms.join(", ")}) = max(${times.join(", ")})`, fmtTime(row.time_s), "roofline time: a lower bound"),
        );
      } else {
        parts.push(line("time", `max(FLOPs / ${peakName}, bytes / bandwidth)`, fmtTime(row.time_s), "roofline time: a lower bound"));
      }
      parts.push(
        line("per pass", `${fmtNumber(row.count)} × ${fmtTime(row.time_s)}`, fmtTime(row.count * row.time_s), "time of all runs in one pass"),
      );
    }
    el.replaceChildren(h("div", { class: "lr-formula" }, parts));
  }

  let pending = false;
  function schedule() {
    if (pending) return;
    pending = true;
    queueMicrotask(() => {
      pending = false;
      draw();
    });
  }
  draw();
  for (const name of ["rows", "selected", "bandwidth", "picker"]) model.on(`change:${name}`, schedule);
  return () => {};
}

export default { render };
