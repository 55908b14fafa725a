"""Sweeps, comparisons and hardware choice on top of :func:`analyze`.

``sweep`` evaluates a cartesian product of settings at once: a decode step's time depends only on
the batch and the cached length, so for each batch (and setting of the other knobs) the step times
over every needed context are computed in one vectorized pass and summed with a cumulative sum;
the prefill is vectorized over the prompt lengths, the memory footprint over (prompt, generation).
"""

from __future__ import annotations

import html
import itertools
from collections.abc import Iterable
from typing import Any

import numpy as np

from . import calibration, memory
from .analysis import ATTENTION, LOGITS, MLA, Result, _check_choice, _check_count, analyze
from .hardware import Hardware, list_hardware, load_hardware
from .models import load_model
from .ops import PassBuilder
from .options import make_options, validate_for
from .precision import Precision
from .roofline import Roof, pass_time

GRID_KEYS = ("batch_size", "prompt_len", "gen_len")
METRICS = (
    "ttft_s",
    "tpot_s",
    "e2e_s",
    "tokens_per_s",
    "decode_tokens_per_s",
    "throughput_tokens_per_s",
    "throughput_per_device_tokens_per_s",
)
MEMORY = (
    "weights_bytes",
    "kv_cache_bytes",
    "activations_bytes",
    "total_bytes",
    "capacity_bytes",
    "fits",
    "max_batch_size",
    "kv_token_capacity",
)
DEFAULTS = dict(
    batch_size=1,
    prompt_len=1024,
    gen_len=256,
    w_bits=16,
    a_bits=16,
    kv_bits=16,
    logits="last",
    attention="causal",
    mla="absorbed",
    group_size=None,
    flash_attention="off",
    fused=False,
    kv_keep_ratio=1.0,
    kv_budget=None,
    speculative=None,
    early_exit_fraction=1.0,
    sparsity=None,
    offload=None,
    tp=1,
    pp=1,
    ep=1,
    efficiency=None,
    framework="generic",
)


def _as_list(v) -> list:
    if isinstance(v, (list, tuple, np.ndarray, range)):
        return list(v)
    return [v]


def _freeze(v):
    return tuple(sorted(v.items())) if isinstance(v, dict) else v


def sweep(model: Any, hardware: Any, **settings) -> pandas.DataFrame:  # noqa: F821
    """Evaluate every combination of the given settings; one DataFrame row per configuration.

    Each keyword is an :func:`analyze` argument, given as one value or a list of values
    (``batch_size=[1, 8, 64], prompt_len=[512, 2048], w_bits=[16, 8, 4]``). Columns are named like
    the inputs and like the ``generation`` and ``memory`` keys of ``Result.to_dict()``; each row
    equals what ``analyze`` gives for that configuration. Speculative decoding falls back to one
    ``analyze`` call per configuration.
    """
    import pandas as pd

    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"sweep: unknown setting(s) {', '.join(sorted(unknown))}; allowed: {', '.join(DEFAULTS)}")
    m = load_model(model)
    hw = load_hardware(hardware)
    values = {k: _as_list(settings.get(k, DEFAULTS[k])) for k in DEFAULTS}
    for k in GRID_KEYS:
        values[k] = [_check_count(k, v) for v in values[k]]
        if not values[k]:
            raise ValueError(f"sweep: {k} has no values")
    other_keys = [k for k in DEFAULTS if k not in GRID_KEYS]
    frames = []
    for combo in itertools.product(*(values[k] for k in other_keys)):
        kw = dict(zip(other_keys, combo))
        frames.append(_sweep_group(m, hw, kw, values["batch_size"], values["prompt_len"], values["gen_len"]))
    df = pd.concat(frames, ignore_index=True)
    inputs = list(GRID_KEYS) + [k for k in other_keys if len(values[k]) > 1 or k in settings]
    return df[inputs + [c for c in df.columns if c not in inputs]]


def _sweep_group(m, hw: Hardware, kw: dict, batches, prompts, gens):
    import pandas as pd

    if kw["speculative"] is not None:
        rows = []
        for B, P, G in itertools.product(batches, prompts, gens):
            d = analyze(m, hw, batch_size=B, prompt_len=P, gen_len=G, **kw).to_dict()
            rows.append(
                {
                    "batch_size": B,
                    "prompt_len": P,
                    "gen_len": G,
                    **_frozen_inputs(kw),
                    **{k: d["generation"][k] for k in METRICS},
                    **{k: d["memory"][k] for k in MEMORY},
                }
            )
        return pd.DataFrame(rows)
    prec = Precision(kw["w_bits"], kw["a_bits"], kw["kv_bits"], kw["group_size"])
    _check_choice("logits", kw["logits"], LOGITS)
    _check_choice("attention", kw["attention"], ATTENTION)
    _check_choice("mla", kw["mla"], MLA)
    opts = make_options(
        **{
            k: kw[k]
            for k in (
                "flash_attention",
                "fused",
                "kv_keep_ratio",
                "kv_budget",
                "early_exit_fraction",
                "sparsity",
                "offload",
                "tp",
                "pp",
                "ep",
                "efficiency",
            )
        }
    )
    roof = Roof(
        hw, opts.efficiency, quantized_weights=prec.w_bits < 16, framework=calibration.framework(kw["framework"]).name
    )
    P = np.array(sorted(set(prompts)), dtype=np.float64)
    G = np.array(sorted(set(gens)), dtype=np.float64)
    out = []
    for B in sorted(set(batches)):
        validate_for(opts, m, hw, B)
        pre_rows = PassBuilder(
            m,
            prec,
            batch=B,
            tokens=P,
            cached=0,
            logits_tokens=P if kw["logits"] == "all" else 1,
            attention=kw["attention"],
            mla=kw["mla"],
            options=opts,
            hardware=hw,
        ).build()
        ttft = np.broadcast_to(pass_time(pre_rows, roof, request=True), P.shape)
        c_lo, c_hi = P.min(), P.max() + max(G.max() - 1, 1)
        cached = np.arange(c_lo, c_hi, dtype=np.float64)
        dec_rows = PassBuilder(
            m,
            prec,
            batch=B,
            tokens=1,
            cached=cached,
            logits_tokens=1,
            attention="causal",
            mla=kw["mla"],
            options=opts,
            hardware=hw,
        ).build(opts.early_exit_fraction)
        step = np.broadcast_to(pass_time(dec_rows, roof), cached.shape)
        csum = np.concatenate([[0.0], np.cumsum(step)])
        Pi = (P - c_lo).astype(int)[:, None]
        Gi = G.astype(int)[None, :]
        decode_total = csum[Pi + Gi - 1] - csum[Pi]  # Σ steps with cached P … P + G − 2
        first = step[Pi][:, :1]
        ttft2 = ttft[:, None]
        e2e = ttft2 + decode_total
        tpot = np.where(Gi > 1, decode_total / np.maximum(Gi - 1, 1), first)
        thr = B * Gi / e2e
        gen = {
            "ttft_s": np.broadcast_to(ttft2, e2e.shape),
            "tpot_s": tpot,
            "e2e_s": e2e,
            "tokens_per_s": Gi / e2e,
            "decode_tokens_per_s": 1.0 / tpot,
            "throughput_tokens_per_s": thr,
            "throughput_per_device_tokens_per_s": thr / opts.devices,
        }
        first_rows = PassBuilder(
            m,
            prec,
            batch=B,
            tokens=1,
            cached=P,
            logits_tokens=1,
            attention="causal",
            mla=kw["mla"],
            options=opts,
            hardware=hw,
        ).build(opts.early_exit_fraction)
        mem = memory.footprint(
            m,
            prec,
            hw.memory_bytes,
            opts,
            batch=B,
            prompt_len=P[:, None],
            gen_len=Gi,
            prefill_rows=_column(pre_rows),
            decode_rows=_column(first_rows),
        )
        shape = e2e.shape
        cols = {
            "batch_size": np.full(shape, B),
            "prompt_len": np.broadcast_to(P[:, None], shape).astype(int),
            "gen_len": np.broadcast_to(Gi, shape).astype(int),
        }
        cols.update({k: np.broadcast_to(v, shape) for k, v in gen.items()})
        cols.update({k: np.broadcast_to(np.asarray(mem[k]), shape) for k in MEMORY})
        df = pd.DataFrame({k: np.asarray(v).ravel() for k, v in cols.items()})
        for k, v in _frozen_inputs(kw).items():
            df[k] = [v] * len(df)
        out.append(df)
    df = pd.concat(out, ignore_index=True)
    df["fits"] = df["fits"].astype(bool)
    df["max_batch_size"] = df["max_batch_size"].astype(int)
    df["kv_token_capacity"] = df["kv_token_capacity"].astype(int)
    return df


class _ColumnRow:
    """A view of a row whose array-valued activation bytes become a column (for broadcasting over G)."""

    __slots__ = ("activation_bytes", "count", "resident", "layer_type", "host_resident")

    def __init__(self, r):
        a = np.asarray(r.activation_bytes, dtype=np.float64)
        self.activation_bytes = a[:, None] if a.ndim == 1 else a
        self.count, self.resident, self.layer_type, self.host_resident = (
            r.count,
            r.resident,
            r.layer_type,
            r.host_resident,
        )


def _column(rows):
    return [_ColumnRow(r) for r in rows]


def _frozen_inputs(kw: dict) -> dict:
    out = {}
    for k, v in kw.items():
        if k == "speculative" and v is not None:
            v = f"γ={v.gamma}, α={v.acceptance}, draft={v.draft if isinstance(v.draft, str) else 'custom'}"
        elif isinstance(v, dict):
            v = str(v) if v else None
        out[k] = v
    return out


# ---- comparison ---------------------------------------------------------------------------------


class Comparison:
    """Two analyses side by side: totals and per-operator deltas (``b`` relative to ``a``)."""

    def __init__(self, a: Result, b: Result, labels=("a", "b")):
        self.a, self.b = a, b
        self.labels = labels
        self.totals = self._totals()
        self.operators = self._operators()

    def _totals(self):
        import pandas as pd

        da, db = self.a.to_dict(), self.b.to_dict()
        rows = []
        for sec, keys in (
            ("model", ("params_total", "params_active")),
            ("generation", METRICS),
            ("memory", ("weights_bytes", "kv_cache_bytes", "activations_bytes", "total_bytes", "fits")),
        ):
            for k in keys:
                va, vb = da[sec][k], db[sec][k]
                num = isinstance(va, (int, float)) and not isinstance(va, bool)
                rows.append(
                    {
                        "quantity": k,
                        self.labels[0]: va,
                        self.labels[1]: vb,
                        "delta": (vb - va) if num else None,
                        "ratio": (vb / va if num and va else None),
                    }
                )
        for ph in ("prefill", "decode"):
            for k in ("flops", "bytes", "time_s"):
                va, vb = da[ph][k], db[ph][k]
                rows.append(
                    {
                        "quantity": f"{ph}.{k}",
                        self.labels[0]: va,
                        self.labels[1]: vb,
                        "delta": vb - va,
                        "ratio": vb / va if va else None,
                    }
                )
        return pd.DataFrame(rows)

    def _operators(self):
        import pandas as pd

        rows = []
        for ph in ("prefill", "decode"):
            oa = {(o["layer_type"], o["name"]): o for o in getattr(self.a, ph).ops}
            ob = {(o["layer_type"], o["name"]): o for o in getattr(self.b, ph).ops}
            for key in list(oa) + [k for k in ob if k not in oa]:
                ra, rb = oa.get(key), ob.get(key)
                ta = ra["count"] * ra["time_s"] if ra else 0.0
                tb = rb["count"] * rb["time_s"] if rb else 0.0
                rows.append(
                    {
                        "phase": ph,
                        "layer_type": key[0],
                        "name": key[1],
                        f"time_s_{self.labels[0]}": ta,
                        f"time_s_{self.labels[1]}": tb,
                        "delta_s": tb - ta,
                        f"bytes_{self.labels[0]}": ra["count"] * ra["bytes"] if ra else 0.0,
                        f"bytes_{self.labels[1]}": rb["count"] * rb["bytes"] if rb else 0.0,
                        f"bound_{self.labels[0]}": ra["bound"] if ra else "",
                        f"bound_{self.labels[1]}": rb["bound"] if rb else "",
                    }
                )
        return pd.DataFrame(rows)

    def _repr_html_(self):
        a, b = (html.escape(str(x)) for x in self.labels)
        head = (
            f"<p><b>{a}</b>: {html.escape(self.a.model.name)} on {html.escape(self.a.hardware.name)} — "
            f"<b>{b}</b>: {html.escape(self.b.model.name)} on {html.escape(self.b.hardware.name)} "
            "(roofline times are lower bounds)</p>"
        )
        return head + self.totals.to_html(index=False) + self.operators.to_html(index=False)

    def __repr__(self):
        return f"Comparison({self.labels[0]} vs {self.labels[1]})\n{self.totals.to_string(index=False)}"


def compare(a: Any, b: Any, *, labels=("a", "b"), **common) -> Comparison:
    """Compare two analyses (``Result`` objects, or dicts of ``analyze`` arguments merged over ``common``).

    Knowledge distillation shows here: ``compare({"model": teacher}, {"model": student}, hardware=...)``.
    """

    def res(x):
        if isinstance(x, Result):
            return x
        if isinstance(x, dict):
            kw = {**common, **x}
            return analyze(kw.pop("model"), kw.pop("hardware"), **kw)
        raise ValueError("compare: pass two lr.analyze(...) results or two dicts of analyze arguments")

    return Comparison(res(a), res(b), labels)


# ---- hardware choice ----------------------------------------------------------------------------


def choose_hardware(
    model: Any,
    workload: dict | None = None,
    devices: Iterable | None = None,
    objective: str = "tpot",
    counts: Iterable[int] = (1, 2, 4, 8),
    prices: dict | None = None,
):
    """Rank devices (and how many of them, as tensor-parallel groups) for a workload, best first.

    ``workload``: ``analyze`` arguments (batch_size, prompt_len, gen_len, bits, knobs). For each device
    the smallest count in ``counts`` whose per-device memory fits is used (count 1 is tried first; a
    count needs a device interconnect and a TP degree that divides the heads). Objectives: ``"tpot"``,
    ``"ttft"`` (lower is better), ``"throughput"`` (tokens/s for the batch, higher is better), ``"cost"``
    (device-seconds per generated token, or dollars per million tokens when ``prices`` maps device id →
    $/hour). Rows that fit nowhere stay in the table, marked ``fits=False``, after the ones that fit.
    """
    import pandas as pd

    objectives = ("tpot", "ttft", "throughput", "cost")
    if objective not in objectives:
        raise ValueError(f"objective must be one of {', '.join(map(repr, objectives))}, got {objective!r}")
    workload = dict(workload or {})
    m = load_model(model)
    devs = list(devices) if devices is not None else list_hardware()
    rows = []
    for dev in devs:
        hw = load_hardware(dev)
        chosen = None
        last_err = None
        for n in counts:
            try:
                r = (
                    analyze(m, hw, **{**workload, "tp": n * workload.get("tp", 1)})
                    if n > 1
                    else analyze(m, hw, **workload)
                )
            except ValueError as e:
                last_err = str(e)
                continue
            chosen = (n, r)
            if r.memory["fits"]:
                break
        if chosen is None:
            rows.append(
                {
                    "device": hw.id or hw.name,
                    "name": hw.name,
                    "count": None,
                    "fits": False,
                    "ttft_s": np.nan,
                    "tpot_s": np.nan,
                    "throughput_tokens_per_s": np.nan,
                    "memory_per_device_bytes": np.nan,
                    "cost": np.nan,
                    "note": last_err,
                }
            )
            continue
        n, r = chosen
        g = r.generation
        dev_s_per_tok = n / g["throughput_tokens_per_s"]
        cost = dev_s_per_tok
        if prices is not None and (hw.id in prices or hw.name in prices):
            cost = prices.get(hw.id, prices.get(hw.name)) / 3600 * dev_s_per_tok * 1e6  # $ per million tokens
        rows.append(
            {
                "device": hw.id or hw.name,
                "name": hw.name,
                "count": n,
                "fits": r.memory["fits"],
                "ttft_s": g["ttft_s"],
                "tpot_s": g["tpot_s"],
                "throughput_tokens_per_s": g["throughput_tokens_per_s"],
                "memory_per_device_bytes": r.memory["total_bytes"],
                "cost": cost,
                "note": "" if r.memory["fits"] else f"needs {r.memory['total_bytes'] / 1e9:.1f} GB per device",
            }
        )
    df = pd.DataFrame(rows)
    key = {"tpot": "tpot_s", "ttft": "ttft_s", "throughput": "throughput_tokens_per_s", "cost": "cost"}[objective]
    df = df.sort_values(
        by=["fits", key], ascending=[False, objective != "throughput"], na_position="last", kind="stable"
    ).reset_index(drop=True)
    df.attrs["objective"] = objective
    df.attrs["note"] = (
        "roofline times are lower bounds; cost = device-seconds per generated token unless prices are given"
    )
    return df
