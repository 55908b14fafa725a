// FormulaPanel: the FLOPs and bytes formulas of the selected operator, with the numbers
// substituted (strings from the engine, shown as text) and the resulting values in readable units.
//
// Model traits (llmroof_widgets/widgets/anywidgets.py, FormulaPanel):
//   rows       same row index space as the LayerTable (index, phase, layer_type, name, count, flops,
//              bytes, arithmetic_intensity, time_s, compute_time_s, memory_time_s, host_time_s,
//              communication_time_s, bound, peak_dtype, peak_flops, flops_formula, bytes_formula,
//              time_formula: a collective's α–β time with numbers, dot, no_dot: why an operator has no
//              roofline dot)
//   bandwidth  device memory bandwidth in bytes/s
//   host_bandwidth  host-link bandwidth in bytes/s after efficiency factors (offloaded bytes)
//   mode       "roofline" | "calibrated" | "custom" (efficiency factors): how the times were charged
//   selected   [row index, ...] or []  (linked to the table on the front end; several when a roofline
//              dot stands for several operators: the first is shown, the others named)
//   picker     show a drop-down to choose the operator here
import {
  asIndices, ensureStyle, fmtBytes, fmtFlops, fmtIntensity, fmtNumber, fmtRate, fmtTime, h, opLabel, redrawOn
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
    // a roofline dot that stands for several operators selects them all: the first is shown here
    const others = sel.slice(1).map((i) => rows[i]).filter(Boolean);
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
      const notes = [];
      if (!row.dot && row.no_dot) {
        notes.push(h("div", { class: "lr-formula-nodot", dataset: { nodot: "1" } }, `No roofline dot: ${row.no_dot}.`));
      }
      if (others.length) {
        notes.push(
          h(
            "div",
            { class: "lr-formula-same", title: "these operators sit at the same roofline point: one dot stands for them all" },
            `Same roofline dot: ${others.map(opLabel).join("; ")} (selected too).`,
          ),
        );
      }
      const titleAt = parts.length; // each branch below starts with the operator's title
      const bw = model.get("bandwidth");
      const mode = model.get("mode") || "roofline";
      const hostBw = Number(model.get("host_bandwidth")) || 0;
      const timeTitle = mode === "calibrated" ? "calibrated time: an estimate" : "roofline time: a lower bound";
      if (row.bound === "communication") {
        // a collective: no FLOPs, timed α–β on the interconnect (the bytes formula says how)
        parts.push(
          h(
            "div",
            { class: "lr-formula-title", dataset: { index: row.index, op: row.name, phase: row.phase } },
            h("span", { class: "lr-formula-op" }, opLabel(row)),
            " ",
            h("span", { class: "lr-badge lr-badge-communication" }, "communication"),
            h("span", { class: "lr-formula-count" }, `  runs ${fmtNumber(row.count)}× per pass; figures for one run`),
          ),
          line("FLOPs", row.flops_formula, fmtFlops(row.flops), "a collective computes nothing"),
          line("message", row.bytes_formula, fmtBytes(row.comm_bytes), "bytes each device sends and receives, and the α–β cost model"),
          line("time", row.time_formula || "α–β time on the interconnect", fmtTime(row.communication_time_s), "latency α per step + message / link bandwidth β"),
        );
      } else {
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
          line("bytes", row.bytes_formula, fmtBytes(row.bytes), "bytes moved by one run (device memory and, when offloaded, the host link)"),
          line("intensity", "FLOPs / bytes", `${fmtIntensity(row.arithmetic_intensity)} FLOP/B`, "arithmetic intensity"),
        );
        const peakName = row.peak_dtype === "vector" ? "vector peak" : `${row.peak_dtype} peak`;
        const host = Number(row.host_bytes) || 0;
        if (host > 0) {
          parts.push(
            line(
              "host link",
              `host bytes ${fmtBytes(host)} / host link ${fmtRate(hostBw, "B/s")}`,
              fmtTime(row.host_time_s),
              "offloaded bytes stream over the host link, overlapped with device-memory reads",
            ),
          );
        }
        if (row.compute_time_s != null && row.memory_time_s != null) {
          // the bandwidth the engine applied (after any efficiency factor): its own figure when given
          const bwUsed = row.bandwidth || (row.memory_time_s > 0 ? (row.bytes - host) / row.memory_time_s : bw);
          const devBytes = host > 0 ? "device bytes" : "bytes";
          let computeTerm = `FLOPs / ${peakName} ${fmtRate(row.peak_flops, "FLOP/s")}`;
          if (mode === "calibrated" && row.compute_time_s > 0) {
            // small-M GEMM efficiency (and dequantization) lower the rate below the peak
            computeTerm = `FLOPs / effective ${fmtRate(row.flops / row.compute_time_s, "FLOP/s")}`;
          }
          const terms = [computeTerm, `${devBytes} / ${fmtRate(bwUsed, "B/s")}`];
          const times = [fmtTime(row.compute_time_s), fmtTime(row.memory_time_s)];
          if (host > 0) {
            terms.push("host bytes / host link");
            times.push(fmtTime(row.host_time_s));
          }
          let expr = `max(${terms.join(", ")}) = max(${times.join(", ")})`;
          const base = Math.max(row.compute_time_s, row.memory_time_s, row.host_time_s || 0);
          const overhead = row.time_s - base;
          if (mode === "calibrated" && overhead > 1e-15) expr += ` + launch ${fmtTime(overhead)}`;
          parts.push(line("time", expr, fmtTime(row.time_s), timeTitle));
          if (row.attained_flops > 0) {
            parts.push(line("attained", "FLOPs / time", fmtRate(row.attained_flops, "FLOP/s"), "the rate this operator runs at: its roofline dot's height"));
          }
        } else {
          parts.push(line("time", `max(FLOPs / ${peakName}, bytes / bandwidth)`, fmtTime(row.time_s), timeTitle));
        }
      }
      parts.push(
        line("per pass", `${fmtNumber(row.count)} × ${fmtTime(row.time_s)}`, fmtTime(row.count * row.time_s), "time of all runs in one pass"),
      );
      parts.splice(titleAt + 1, 0, ...notes); // right under the operator's name
    }
    el.replaceChildren(h("div", { class: "lr-formula" }, parts));
  }

  redrawOn(model, ["rows", "selected", "bandwidth", "picker", "mode", "host_bandwidth"], draw);
  return () => {};
}

export default { render };
