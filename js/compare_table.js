// CompareTable: two analyses side by side (lr.compare): who is who, the totals with Δ and ratio,
// and the per-operator time per pass with Δ. Text from the kernel is written with textContent.
//
// Model traits (llmroof_widgets/widgets/compare.py):
//   labels     ["a", "b"]  (e.g. teacher, student)
//   headers    [{label, model, hardware, settings, techniques: [..]}] × 2
//   totals     [{quantity, a, b, delta, ratio, better: "lower" | "higher" | null}]
//   operators  [{phase, layer_type, name, time_a, time_b, delta_s, bytes_a, bytes_b, bound_a, bound_b}]
//   error      "" or the States' error messages
import { ensureStyle, fmtBytes, fmtFlops, fmtNumber, fmtRate, fmtTime, h, redrawOn } from "./common.js";

const QUANTITY_LABEL = {
  params_total: "parameters",
  params_active: "active parameters",
  ttft_s: "TTFT",
  tpot_s: "TPOT",
  e2e_s: "end to end",
  tokens_per_s: "tokens/s (one sequence)",
  decode_tokens_per_s: "decode tokens/s",
  throughput_tokens_per_s: "throughput (tok/s)",
  throughput_per_device_tokens_per_s: "throughput per device",
  weights_bytes: "weights",
  kv_cache_bytes: "KV cache",
  activations_bytes: "activations",
  total_bytes: "memory total",
  fits: "fits",
  "prefill.flops": "prefill FLOPs",
  "prefill.bytes": "prefill bytes",
  "prefill.time_s": "prefill time",
  "decode.flops": "decode step FLOPs",
  "decode.bytes": "decode step bytes",
  "decode.time_s": "decode step time",
};

function formatter(q) {
  const k = q.split(".").pop();
  if (k === "fits") return (v) => (v === true ? "yes" : v === false ? "no" : "–");
  if (k.endsWith("tokens_per_s")) return (v) => fmtRate(v, "");
  if (k.endsWith("_s")) return fmtTime;
  if (k.endsWith("bytes")) return fmtBytes;
  if (k === "flops") return fmtFlops;
  if (k.startsWith("params")) return (v) => fmtRate(v, "");
  return fmtNumber;
}

function signed(fmt, d) {
  if (d == null || !Number.isFinite(d)) return "–";
  if (d === 0) return "0";
  return (d > 0 ? "+" : "−") + fmt(Math.abs(d));
}

function ratioText(r) {
  if (r == null || !Number.isFinite(r)) return "–";
  return `${r >= 10 ? r.toFixed(1) : r.toFixed(3)}×`;
}

// "lr-better" when b is better than a, "lr-worse" when worse (by the quantity's direction)
function verdict(better, delta) {
  if (!better || delta == null || !Number.isFinite(delta) || delta === 0) return "";
  const bIsBetter = better === "lower" ? delta < 0 : delta > 0;
  return bIsBetter ? "lr-better" : "lr-worse";
}

function render({ model, el }) {
  ensureStyle(el);
  el.classList.add("lr-root", "lr-compare-widget");
  let sortByDelta = false;

  function draw() {
    const labels = model.get("labels") || ["a", "b"];
    const headers = model.get("headers") || [];
    const totals = model.get("totals") || [];
    const ops = (model.get("operators") || []).slice();
    const err = model.get("error") || "";
    const parts = [];
    if (err) {
      parts.push(
        h(
          "div",
          { class: "lr-error", role: "alert" },
          h("strong", null, "Error: "),
          h("span", { class: "lr-error-text" }, err),
          h("span", { class: "lr-error-note" }, " — showing the last valid comparison."),
        ),
      );
    }
    parts.push(
      h(
        "div",
        { class: "lr-compare-heads" },
        headers.map((hd, i) =>
          h(
            "div",
            { class: `lr-compare-head lr-compare-${i ? "b" : "a"}`, dataset: { label: hd.label } },
            h("span", { class: "lr-compare-label" }, String(hd.label)),
            h("bdi", { class: "lr-model-name", dir: "auto" }, String(hd.model)),
            h("span", { class: "lr-on" }, " on "),
            h("bdi", { class: "lr-hardware-name", dir: "auto" }, String(hd.hardware)),
            h("div", { class: "lr-subtitle" }, String(hd.settings || "")),
            hd.techniques && hd.techniques.length
              ? h("div", { class: "lr-techniques-line" }, `techniques: ${hd.techniques.map(String).join(" · ")}`)
              : null,
          ),
        ),
      ),
    );
    // totals
    const [la, lb] = labels.map(String);
    const thead = h(
      "thead",
      null,
      h("tr", null, h("th", null, "quantity"), h("th", { class: "lr-num" }, la), h("th", { class: "lr-num" }, lb),
        h("th", { class: "lr-num", title: `${lb} − ${la}` }, "Δ"), h("th", { class: "lr-num", title: `${lb} / ${la}` }, "ratio")),
    );
    const tbody = h(
      "tbody",
      null,
      totals.map((t) => {
        const fmt = formatter(t.quantity);
        return h(
          "tr",
          { class: `lr-compare-total ${verdict(t.better, t.delta)}`, dataset: { quantity: t.quantity } },
          h("td", { title: t.quantity }, QUANTITY_LABEL[t.quantity] || t.quantity),
          h("td", { class: "lr-num" }, fmt(t.a)),
          h("td", { class: "lr-num" }, fmt(t.b)),
          h("td", { class: "lr-num lr-delta" }, t.delta == null ? "–" : signed(fmt, t.delta)),
          h("td", { class: "lr-num lr-ratio" }, ratioText(t.ratio)),
        );
      }),
    );
    parts.push(h("div", { class: "lr-table-scroll lr-compare-scroll" }, h("table", { class: "lr-table lr-compare-totals" }, thead, tbody)));
    // operators
    if (sortByDelta) ops.sort((x, y) => Math.abs(y.delta_s) - Math.abs(x.delta_s));
    const ohead = h(
      "thead",
      null,
      h(
        "tr",
        null,
        h("th", null, "phase"),
        h("th", null, "layer"),
        h("th", null, "operator"),
        h("th", { class: "lr-num", title: "count × time of one run: time per pass" }, `time ${la}`),
        h("th", { class: "lr-num" }, `time ${lb}`),
        h(
          "th",
          {
            class: `lr-num lr-sortable${sortByDelta ? " lr-sorted" : ""}`,
            title: sortByDelta ? "click: back to the engine's order" : "click: largest |Δ| first",
            onclick: () => {
              sortByDelta = !sortByDelta;
              draw();
            },
          },
          `Δ time${sortByDelta ? " ▼" : ""}`,
        ),
        h("th", { class: "lr-num" }, "ratio"),
        h("th", null, "bound"),
      ),
    );
    const obody = h(
      "tbody",
      null,
      ops.map((o) =>
        h(
          "tr",
          { class: `lr-compare-op ${verdict("lower", o.delta_s)}`, dataset: { phase: o.phase, op: o.name, layerType: o.layer_type } },
          h("td", null, o.phase),
          h("td", null, o.layer_type),
          h("td", null, o.name),
          h("td", { class: "lr-num" }, fmtTime(o.time_a)),
          h("td", { class: "lr-num" }, fmtTime(o.time_b)),
          h("td", { class: "lr-num lr-delta" }, signed(fmtTime, o.delta_s)),
          h("td", { class: "lr-num lr-ratio" }, ratioText(o.time_a > 0 ? o.time_b / o.time_a : null)),
          h("td", null, o.bound_a === o.bound_b ? String(o.bound_a || "–") : `${o.bound_a || "–"} → ${o.bound_b || "–"}`),
        ),
      ),
    );
    parts.push(
      h(
        "details",
        { class: "lr-compare-ops" },
        h("summary", null, `per operator: time per pass in ${la} and ${lb} (${ops.length} rows)`),
        h("div", { class: "lr-table-scroll" }, h("table", { class: "lr-table" }, ohead, obody)),
      ),
    );
    // keep an open <details> open across redraws
    const wasOpen = el.querySelector("details.lr-compare-ops")?.open;
    el.replaceChildren(h("div", { class: "lr-compare" }, parts));
    if (wasOpen) el.querySelector("details.lr-compare-ops").open = true;
  }

  redrawOn(model, ["labels", "headers", "totals", "operators", "error"], draw);
  return () => {};
}

export default { render };
