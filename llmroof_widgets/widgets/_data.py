"""Plain view data built from ``Result.to_dict()`` once per State revision.

Nothing here is physics: it selects, orders and labels the engine's figures for the views (rows
of the table, points of the roofline, bars of the memory breakdown). The only arithmetic is unit
scaling for the axes (bytes → GB, seconds → ms) and, for the roofline's drawing, the roofs and
ridge points implied by the device's own peak and bandwidth figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# roofline scatter marks: one per (phase, bound); a row's dot is (slot, index in that mark). Operators
# at the same point share one dot (its tooltip lists them all); a dot shared by prefill and decode
# operators goes to a "both" mark (its own marker shape).
SLOTS = (
    ("prefill", "memory"),
    ("prefill", "compute"),
    ("decode", "memory"),
    ("decode", "compute"),
    ("both", "memory"),
    ("both", "compute"),
)
PHASE_ORDER = ("encode", "prefill", "decode")  # "encode": a vision-language model's encoder, when images are given
# Two operators whose intensity and attained rate both differ by less than this many decades share a
# dot: 0.01 decade (2.3 %) is under a pixel on a roofline of 6 decades in 450 px, i.e. the same spot.
SAME_POINT_DECADES = 0.01

# fields of a table row (the engine's op row plus index/key/phase/dot)
ROW_FIELDS = (
    "name",
    "layer_type",
    "count",
    "kind",
    "flops",
    "matmul_flops",
    "bytes",
    "weight_bytes",
    "activation_bytes",
    "kv_bytes",
    "host_bytes",
    "comm_bytes",
    "arithmetic_intensity",
    "time_s",
    "compute_time_s",
    "memory_time_s",
    "host_time_s",
    "communication_time_s",
    "bandwidth",
    "bound",
    "peak_dtype",
    "peak_flops",
    "attained_flops",
    "share",
    "resident_bytes",
    "flops_formula",
    "bytes_formula",
    "time_formula",
)
FORMULA_FIELDS = (
    "index",
    "phase",
    "layer_type",
    "name",
    "count",
    "kind",
    "flops",
    "bytes",
    "host_bytes",
    "comm_bytes",
    "arithmetic_intensity",
    "time_s",
    "compute_time_s",
    "memory_time_s",
    "host_time_s",
    "communication_time_s",
    "bandwidth",
    "bound",
    "peak_dtype",
    "peak_flops",
    "attained_flops",
    "flops_formula",
    "bytes_formula",
    "time_formula",
    "dot",
    "no_dot",
)
TOTAL_FIELDS = (
    "tokens",
    "context",
    "flops",
    "matmul_flops",
    "bytes",
    "weight_bytes",
    "kv_bytes",
    "host_bytes",
    "communication_time_s",
    "activation_bytes",
    "arithmetic_intensity",
    "time_s",
    "bound",
)


NOTE_CALIBRATED = (
    "calibrated estimates, not lower bounds: the device family's achievable bandwidth and GEMM "
    "efficiency, small-M GEMM efficiency, dequantization and kernel-launch overheads "
    "(llmroof_widgets/engine/calibration.py)"
)


NOTE_THROUGHPUT = (
    "generated tokens per second for the whole batch (every sequence together, all devices); "
    "per device: divided by the devices (tp × pp × ep)"
)


def efficiency_mode(settings: dict) -> str:
    """ "roofline" (every factor 1), "calibrated", or "custom" (efficiency factors given as a dict)."""
    eff = settings.get("efficiency")
    if eff == "calibrated":
        return "calibrated"
    if isinstance(eff, dict) and any(v != 1.0 for v in eff.values()):
        return "custom"
    return "roofline"


def _pct(x: float) -> str:
    return f"{x * 100:.3g} %"


def technique_labels(s: dict) -> list[str]:
    """Short labels of the technique knobs that differ from the plain analysis (from ``settings``)."""
    out = []
    if s.get("group_size"):
        out.append(f"group size {s['group_size']}")
    if s.get("flash_attention", "off") != "off":
        out.append(f"FlashAttention ({s['flash_attention']})")
    if s.get("fused"):
        out.append("fused element-wise ops")
    if s.get("kv_keep_ratio", 1.0) < 1.0:
        out.append(f"KV keep {_pct(s['kv_keep_ratio'])}")
    if s.get("kv_budget"):
        out.append(f"KV budget {s['kv_budget']:,} tokens")
    sp = s.get("speculative")
    if sp:
        out.append(f"speculative ({sp.get('draft')}, γ={sp.get('gamma')}, α={sp.get('acceptance')})")
    if s.get("early_exit_fraction", 1.0) < 1.0:
        out.append(f"early exit ({_pct(s['early_exit_fraction'])} of layers)")
    sparsity = s.get("sparsity")
    if sparsity == "2:4":
        out.append("2:4 sparse")
    elif sparsity:
        out.append(f"{_pct(sparsity)} unstructured sparsity")
    off = {k: v for k, v in (s.get("offload") or {}).items() if v}
    if off:
        names = {"weights": "weights", "kv_cache": "KV", "experts": "experts"}
        out.append("offload " + ", ".join(f"{names.get(k, k)} {_pct(v)}" for k, v in off.items()))
    par = [f"{k.upper()} {s[k]}" for k in ("tp", "pp", "ep") if s.get(k, 1) > 1]
    if par:
        out.append(" × ".join(par))
    mode = efficiency_mode(s)
    if mode == "calibrated":
        out.append("calibrated efficiency")
    elif mode == "custom":
        out.append("efficiency " + ", ".join(f"{k} {_pct(v)}" for k, v in s["efficiency"].items()))
    if s.get("mla", "absorbed") != "absorbed":
        out.append(f"MLA {s['mla']}")
    return out


def shown_phases(phase: str) -> tuple[str, ...]:
    return PHASE_ORDER if phase == "both" else (phase,)


def fmt_time(s: float) -> str:
    """Readable time for tooltips and labels (the table formats its own units in JS)."""
    if s is None or not math.isfinite(s):
        return "–"
    a = abs(s)
    if a == 0:
        return "0 s"
    if a < 1e-6:
        return f"{s * 1e9:.3g} ns"
    if a < 1e-3:
        return f"{s * 1e6:.3g} µs"
    if a < 1:
        return f"{s * 1e3:.3g} ms"
    return f"{s:.3g} s"


def fmt_si(x: float, unit: str) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    if x == 0:
        return f"0 {unit}"
    prefixes = ["", "k", "M", "G", "T", "P", "E"]
    i = 0
    while i < len(prefixes) - 1 and abs(x) >= 1000 ** (i + 1) * 0.9995:
        i += 1
    return f"{x / 1000**i:.3g} {prefixes[i]}{unit}"


def _plain(v):
    """JSON-safe scalar (numpy scalars → Python, non-finite floats → None)."""
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def dot_point(row: dict) -> tuple[float, float]:
    """Where an operator's dot sits: (arithmetic intensity, attained FLOP/s = FLOPs / time), the engine's figures."""
    y = row.get("attained_flops")
    return float(row["arithmetic_intensity"]), float(y if y is not None else row["flops"] / row["time_s"])


def no_dot_reason(row: dict) -> str:
    """Why an operator has no roofline dot (shown when it is selected)."""
    if row.get("bound") == "communication":
        return "a collective: 0 FLOPs, timed on the interconnect"
    if not (row.get("flops") or 0) > 0:
        return "0 FLOPs (a lookup or a copy)"
    if not (row.get("bytes") or 0) > 0:
        return "fused: no bytes of its own, intensity ∞"
    return "zero time"


def _group_dots(rows: list[dict]) -> list[list[list[int]]]:
    """One dot per spot: operators of the same bound within SAME_POINT_DECADES of each other on both
    axes share a dot (in their phase's mark, or the "both" mark when the phases differ). Sets each
    row's ``dot`` to ``[slot, k]``; returns, per slot, the row indices of every dot."""
    groups: list[tuple[str, float, float, list[int]]] = []  # (bound, log x, log y, rows) in engine order
    for r in rows:
        if r.get("no_dot") is not None or r["bound"] not in ("memory", "compute"):
            continue
        x, y = dot_point(r)
        lx, ly = math.log10(x), math.log10(y)
        for b, gx, gy, members in groups:
            if b == r["bound"] and abs(gx - lx) < SAME_POINT_DECADES and abs(gy - ly) < SAME_POINT_DECADES:
                members.append(r["index"])
                break
        else:
            groups.append((r["bound"], lx, ly, [r["index"]]))
    dots: list[list[list[int]]] = [[] for _ in SLOTS]
    for bound, _, _, members in groups:
        # the encoder runs before the first token: its dots join the prefill marks
        phases = {"prefill" if rows[i]["phase"] == "encode" else rows[i]["phase"] for i in members}
        slot = SLOTS.index((phases.pop() if len(phases) == 1 else "both", bound))
        for i in members:
            rows[i]["dot"] = [slot, len(dots[slot])]
        dots[slot].append(members)
    return dots


@dataclass
class ViewData:
    """Everything the views show for one State revision."""

    d: dict = field(default_factory=dict)  # result.to_dict() (empty when there is no result)
    phase: str = "both"
    rows: list = field(default_factory=list)  # table rows
    keys: dict = field(default_factory=dict)  # row key -> row index
    totals: dict = field(default_factory=dict)  # phase -> totals
    headline: dict = field(default_factory=dict)
    dots: list = field(default_factory=list)  # per slot: one list of row indices per dot (operators at one point)
    plotted_dtypes: list = field(default_factory=list)  # peak dtypes used by the plotted operators
    communication: list = field(default_factory=list)  # row indices of collectives (0 FLOPs: no dot)

    @property
    def roofs(self) -> dict:
        """The engine's roofs (``to_dict()["roofs"]``: post-efficiency bandwidth, peaks, ridge points)."""
        return self.d.get("roofs") or {}

    @property
    def empty(self) -> bool:
        return not self.d

    @classmethod
    def build(cls, result, phase: str) -> ViewData:
        if result is None:
            return cls(phase=phase, dots=[[] for _ in SLOTS])
        d = result.to_dict()
        rows: list[dict] = []
        keys: dict[str, int] = {}
        totals: dict[str, dict] = {}
        dtypes: list[str] = []
        comm: list[int] = []
        for ph in shown_phases(phase):
            if ph not in d:
                continue  # no encode phase without images
            p = d.get(ph) or {}
            totals[ph] = {k: _plain(p.get(k)) for k in TOTAL_FIELDS}
            for op in p.get("ops", []):
                row = {k: _plain(op.get(k)) for k in ROW_FIELDS}
                row["index"] = len(rows)
                row["phase"] = ph
                base = f"{ph}|{row['layer_type']}|{row['name']}"
                key, n = base, 1
                while key in keys:  # keep keys unique even if the engine repeats a name
                    n += 1
                    key = f"{base}#{n}"
                row["key"] = key
                keys[key] = row["index"]
                fl, t, ai = row["flops"] or 0.0, row["time_s"] or 0.0, row["arithmetic_intensity"] or 0.0
                if row["bound"] == "communication":
                    comm.append(row["index"])
                row["dot"] = None
                row["no_dot"] = None
                if fl > 0 and t > 0 and ai > 0 and row["bound"] in ("memory", "compute"):
                    if row["peak_dtype"] not in dtypes:
                        dtypes.append(row["peak_dtype"])
                else:
                    row["no_dot"] = no_dot_reason(row)  # no point on a log–log roofline
                rows.append(row)
        dots = _group_dots(rows)
        g = d.get("generation", {})
        m = d.get("memory", {})
        s = d.get("settings", {})
        mode = efficiency_mode(s)
        notes = {str(k): str(v) for k, v in (d.get("notes") or {}).items()}
        # what the throughput figure is: every sequence of the batch together, over all devices
        notes["throughput_tokens_per_s"] = NOTE_THROUGHPUT
        if mode == "calibrated":
            notes["time"] = NOTE_CALIBRATED
        elif mode == "custom":
            eff = s.get("efficiency") or {}
            notes["time"] = (
                "roofline times at the given shares of the peaks ("
                + ", ".join(f"{k} {_pct(v)}" for k, v in eff.items())
                + "): lower bounds for kernels that reach those shares"
            )
        headline = {
            "model": str(d.get("model", {}).get("name", s.get("model", ""))),
            "hardware": str(d.get("hardware", {}).get("name", s.get("hardware", ""))),
            **{
                k: _plain(s.get(k))
                for k in ("batch_size", "prompt_len", "gen_len", "w_bits", "a_bits", "kv_bits", "logits", "attention")
            },
            **{
                k: _plain(g.get(k))
                for k in (
                    "ttft_s",
                    "tpot_s",
                    "e2e_s",
                    "tokens_per_s",
                    "throughput_tokens_per_s",
                    "throughput_per_device_tokens_per_s",
                )
            },
            # the memory chart's "fits check" bar: weights + KV cache at the last step + peak activations
            "memory_total_bytes": _plain(m.get("total_bytes")),
            "capacity_bytes": _plain(m.get("capacity_bytes")),
            "fits": bool(m.get("fits", True)),
            "max_batch_size": _plain(m.get("max_batch_size")),
            "devices": _plain(g.get("devices", m.get("devices", 1))),
            "efficiency_mode": mode,
            "trust": str((g.get("trust") or {}).get("summary", "")),  # what TTFT/TPOT are (engine/trust.py)
            "techniques": technique_labels(s),
            "notes": notes,
        }
        return cls(
            d=d,
            phase=phase,
            rows=rows,
            keys=keys,
            totals=totals,
            headline=headline,
            dots=dots,
            plotted_dtypes=dtypes,
            communication=comm,
        )

    # -- selection helpers ---------------------------------------------------------------------
    def key_of(self, index: int | None) -> str | None:
        if index is None or not (0 <= index < len(self.rows)):
            return None
        return self.rows[index]["key"]

    def index_of(self, key: str | None) -> int | None:
        return None if key is None else self.keys.get(key)

    def row_of_dot(self, slot: int, k: int) -> int | None:
        """The first table row of dot ``k`` of mark ``slot`` (a dot may stand for several operators)."""
        rows = self.rows_of_dot(slot, k)
        return rows[0] if rows else None

    def rows_of_dot(self, slot: int, k: int) -> list[int]:
        """Every table row drawn as dot ``k`` of mark ``slot``."""
        if 0 <= slot < len(self.dots) and 0 <= k < len(self.dots[slot]):
            return list(self.dots[slot][k])
        return []

    # -- derived view payloads -----------------------------------------------------------------
    def warning(self) -> str:
        # knobs the engine names as changing nothing on this model (attention-only knobs on Mamba / Mamba2)
        na = [k for k in (self.d.get("notes", {}) if self.d else {}).get("not_applicable", {}) if k != "kv_cache"]
        note = f"No effect on this model (it has no attention layer): {', '.join(na)}." if na else ""
        fit = self._fit_warning()
        return f"{fit} {note}" if fit and note else fit or note

    def _fit_warning(self) -> str:
        m = self.d.get("memory", {})
        if not self.d or m.get("fits", True):
            return ""
        hw = self.d.get("hardware", {}).get("name", "the device")
        mb = m.get("max_batch_size")
        hint = (
            f" The largest batch that fits is {mb}."
            if mb
            else " Even one sequence does not fit: use fewer weight/KV bits, a shorter context or a larger device."
        )
        return (
            f"Does not fit in memory: needs {fmt_si(m.get('total_bytes', 0), 'B')} "
            f"(weights {fmt_si(m.get('weights_bytes', 0), 'B')}, KV cache {fmt_si(m.get('kv_cache_bytes', 0), 'B')}, "
            f"activations {fmt_si(m.get('activations_bytes', 0), 'B')}) but {hw} has "
            f"{fmt_si(m.get('capacity_bytes', 0), 'B')}.{hint}"
        )

    def formula_rows(self) -> list[dict]:
        return [{k: r.get(k) for k in FORMULA_FIELDS} for r in self.rows]

    def share_rows(self) -> list[dict]:
        out = []
        for r in self.rows:
            # resident bytes of the operator's parameters when the engine gives them, else bytes read
            wb = r.get("resident_bytes") if r.get("resident_bytes") is not None else r.get("weight_bytes")
            out.append(
                {
                    "index": r["index"],
                    "phase": r["phase"],
                    "layer_type": r["layer_type"],
                    "name": r["name"],
                    "count": r["count"],
                    "weight_bytes": wb,
                }
            )
        return out


def sweep_dropping_invalid(model, hardware, settings: dict, key: str, values: list):
    """``lr.sweep`` over ``values`` of ``key``, leaving out the values the engine rejects for this
    configuration (e.g. a batch below the EP degree): ``(DataFrame, kept values, [(value, message)])``.

    One vectorized call when every value is valid; one call per value only to find the bad ones.
    Raises the engine's ValueError when no value is valid.
    """
    import pandas as pd

    from ..engine import sweep

    try:
        return sweep(model, hardware, **{**settings, key: values}), list(values), []
    except ValueError as first:
        frames, kept, skipped = [], [], []
        for v in values:
            try:
                frames.append(sweep(model, hardware, **{**settings, key: [v]}))
                kept.append(v)
            except ValueError as e:
                skipped.append((v, str(e)))
        if not frames:
            raise first
        return pd.concat(frames, ignore_index=True), kept, skipped
