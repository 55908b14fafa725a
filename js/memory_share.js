// MemoryShare: the caption under the memory breakdown that shows the selected operator's
// weights (weight bytes of one run × count) as a share of all weights.
//
// Model traits (llmroof_widgets/widgets/anywidgets.py, MemoryShare; shown by plots.py's MemoryBreakdown):
//   rows           [{index, phase, layer_type, name, count, weight_bytes}] (the table's row indices)
//   weights_bytes  all weights resident on the device
//   selected       [row index] or []  (linked to the table on the front end)
import { asIndices, ensureStyle, fmtBytes, fmtNumber, fmtPercent, h, opLabel, redrawOn } from "./common.js";

function render({ model, el }) {
  ensureStyle(el);
  el.classList.add("lr-root", "lr-memshare-widget");

  function draw() {
    const rows = model.get("rows") || [];
    const sel = asIndices(model.get("selected"));
    const row = sel.length ? rows[sel[0]] : null;
    const total = Number(model.get("weights_bytes")) || 0;
    let content;
    if (!row) {
      content = h("span", { class: "lr-memshare-empty" }, "Select an operator to see its share of the weights.");
    } else if (!(row.weight_bytes > 0)) {
      content = [
        h("span", { class: "lr-memshare-op" }, opLabel(row)),
        h("span", null, " reads no weights (activations / KV cache only)."),
      ];
    } else {
      const mine = row.weight_bytes * row.count;
      const share = total > 0 ? mine / total : 0;
      content = [
        h("span", { class: "lr-memshare-op" }, opLabel(row)),
        h("span", null, `: weights ${fmtBytes(row.weight_bytes)} × ${fmtNumber(row.count)} = ${fmtBytes(mine)}`),
        h("span", { class: "lr-memshare-share" }, ` = ${fmtPercent(share)}`),
        h("span", null, ` of all weights (${fmtBytes(total)})`),
        h(
          "span",
          { class: "lr-memshare-bar", title: `${fmtPercent(share)} of the weights` },
          h("span", { class: "lr-memshare-fill", style: `width: ${Math.min(100, Math.max(0, share * 100)).toFixed(2)}%` }),
        ),
      ];
    }
    el.replaceChildren(
      h("div", { class: "lr-memshare", dataset: row ? { index: row.index, op: row.name, phase: row.phase } : {} }, content),
    );
  }

  redrawOn(model, ["rows", "selected", "weights_bytes"], draw);
  return () => {};
}

export default { render };
