// Readable units (decimal SI, as the engine and the vendors use: 1 GB = 1e9 bytes). Shared by the
// widgets (js/common.js re-exports these) and the JupyterLab extension's saved-analysis viewer.

function sig3(x) {
  const a = Math.abs(x);
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

export function withPrefix(x, unit, prefixes = SI) {
  if (x == null || !Number.isFinite(x)) return "–";
  if (x === 0) return `0 ${unit}`.trimEnd();
  const a = Math.abs(x);
  let i = 0;
  while (i < prefixes.length - 1 && a >= 1000 ** (i + 1) * 0.9995) i++;
  return `${sig3(x / 1000 ** i)} ${prefixes[i]}${unit}`.trimEnd(); // a bare count has no trailing space
}

export const SI = ["", "k", "M", "G", "T", "P", "E"];

export const isNum = (x) => typeof x === "number" && Number.isFinite(x);

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

/** The per-operator columns shared by the widgets' layer table and the Lab viewer of saved analyses
 * (keys of a to_dict() ops row; ``num`` columns are right-aligned and formatted with ``fmt``). The
 * order is the reading order of a roofline (work, traffic, intensity, time, share, bound); the layer
 * type is least needed and comes last (``low``: a narrow table folds it into the operator cell). */
export const OP_COLUMNS = [
  { key: "name", label: "operator", title: "the operator (its layer type in the last column)" },
  { key: "count", label: "count", num: true, fmt: fmtNumber, title: "times the operator runs in one pass (e.g. once per layer of this type)" },
  { key: "flops", label: "FLOPs", num: true, fmt: fmtFlops, title: "floating-point operations of ONE run" },
  { key: "bytes", label: "bytes", num: true, fmt: fmtBytes, title: "bytes moved to and from device memory by ONE run (weights + activations + KV cache)" },
  { key: "arithmetic_intensity", label: "FLOP/B", num: true, fmt: fmtIntensity, title: "arithmetic intensity: FLOPs per byte moved" },
  { key: "time_s", label: "time", num: true, fmt: fmtTime, title: "roofline time of ONE run: max(FLOPs / peak, bytes / bandwidth), a lower bound" },
  { key: "share", label: "share", num: true, fmt: fmtPercent, title: "count × time as a share of the phase's total time" },
  { key: "bound", label: "bound", fmt: boundLabel, title: "memory-bound: bytes / bandwidth dominates; compute-bound: FLOPs / peak dominates" },
  { key: "layer_type", label: "layer", low: true, title: "layer type the operator belongs to (\"model\": embedding, final norm, lm_head)" },
];

/** The bound as a badge's text ("communication" is shortened to fit a narrow column). */
export function boundLabel(b) {
  return b === "communication" ? "comm." : String(b ?? "");
}

/** One colour meaning in every view: the bound (shared by the widgets' CSS, the bqplot marks of
 * llmroof_widgets/widgets/plots.py and the Lab viewer); the phase is shown by the marker's shape. */
export const BOUND_COLORS = { memory: "#1f77b4", compute: "#d95f02", communication: "#7b4fa0" };
