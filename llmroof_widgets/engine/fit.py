"""Fitting the calibrated kernel model to public measurements, and leave-one-source-out validation.

Each record of ``data/measurements.json`` maps to analyze() settings (:func:`record_settings`) and to the
time it measured (:func:`measured_time`). Its operators are evaluated once at unit constants
(:func:`features`): per operator and decode step, the compute time at the shape-efficient peak, the
per-SM time, the memory time; and per record the kernels, passes, requests and collective bytes and hops.
The predicted time is then

    T(θ) = Σ w · max(θ_compute·t_c (or θ_dequant·t_c), θ_per_sm·t_sm, θ_memory·t_m)
           + θ_kernel·kernels + θ_step·passes + θ_request·requests + θ_bus·t_bus + θ_hop·hops
           + θ_seq·sampled positions

— linear in θ once each operator's limiting branch is fixed. The fit alternates: fix the branches at the
current θ, solve a bounded least squares on relative error (Huber-weighted, with the explained priors of
:mod:`calibration` as extra rows), repeat until the branches settle. Groups are fitted hierarchically:
all records (``*|*``), then per framework family (``fw|*``) and per device family (``*|dev``) pulled
towards it, then per pair (``fw|dev``) pulled towards its framework. ``python -m
llmroof_widgets.engine.fit`` writes ``data/calibration_fit.json``; the tests regenerate and compare it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import calibration
from .calibration import LOWER, PARAMS, PRIOR_MEAN, PRIOR_SCALE, PRIOR_WEIGHT
from .catalog import DATA_DIR
from .hardware import load_hardware
from .models import load_model
from .ops import PassBuilder
from .options import make_options, validate_for
from .precision import Precision
from .roofline import SAMPLED_ROW, Roof, is_kernel

METRICS = (
    "prefill_tokens_per_s",
    "decode_tokens_per_s_per_sequence",
    "output_tokens_per_s_per_gpu",
    "ttft_s",
    "tpot_s",
    "e2e_s",
)
HIGHER_IS_FASTER = {"prefill_tokens_per_s", "decode_tokens_per_s_per_sequence", "output_tokens_per_s_per_gpu"}
DECODE_SAMPLES = 32  # decode steps evaluated per record (midpoints of equal bins; exact below 33 steps)
HUBER = 0.2  # relative error beyond which a record's weight falls as 1/|error| (robust to a few odd records)
MAX_ITER = 30
N_COMPUTE = 4  # compute classes: float GEMM (and attention products), dequantizing, MoE expert, fp8/int8


def load_measurements(path=None) -> list[dict]:
    data = json.loads((DATA_DIR / "measurements.json").read_text() if path is None else open(path).read())
    return data["records"] if isinstance(data, dict) else data


@lru_cache(maxsize=1)
def _default_records() -> tuple:
    return tuple(load_measurements())


def _weight_format(precision: str) -> str:
    """The weight format named in a record's precision text (records without a ``weights`` field)."""
    p = precision.lower()
    for fmt in ("q8_0", "q4_0", "q4_k", "q5_k", "q6_k"):
        if fmt in p:
            return fmt
    m = re.match(r"\s*(weights\s+)?(fp16|bf16|fp32|fp8|int8|int4)", p)
    if m:
        return m.group(2)
    raise ValueError(f"unrecognized precision {precision!r}")


def _family(rec: dict) -> str:
    if rec.get("framework_family"):
        return calibration.framework(rec["framework_family"]).name
    text = str(rec.get("framework", "")).lower()
    for key in ("llama.cpp", "mlx", "vllm", "sglang", "tensorrt-llm"):
        if key in text:
            return calibration.framework(key).name
    return "generic"


def _framework(rec: dict) -> calibration.Framework:
    """The record's framework family, at its version where the family's kernel paths changed with the
    version (:data:`calibration.VERSIONS`) and the record states a plain version number."""
    fam = _family(rec)
    ver = str(rec.get("framework_version") or "").strip()
    if fam in calibration.VERSIONS and ver and " " not in ver:
        return calibration.framework(f"{fam} {ver}")
    return calibration.FRAMEWORKS[fam]


def record_model(rec: dict):
    """The model to analyze for a record: its config when the record carries one, else the catalog model."""
    if rec.get("model_config"):
        return {**rec["model_config"], "_name_or_path": rec["model"]}
    return rec.get("engine_model") or rec.get("catalog_equivalent") or rec["model"]


def record_settings(rec: dict) -> dict:
    """analyze() arguments for one record.

    - weights / activations / KV cache: the record's engine formats (``weights``, ``activations``,
      ``kv_cache``), else the weight format in its precision text with 16-bit activations and KV cache;
    - framework family (with its version where that changes the kernels: ``"TensorRT-LLM 0.9.0"``), and
      that framework's attention kernel and fusion (:data:`calibration.FRAMEWORKS`);
    - ``num_devices`` > 1: tensor parallelism over that many devices;
    - decode records from an empty context (llama-bench tg128: prompt 0, 128 generated) become a one-token
      prompt followed by gen_len + 1 tokens, so that exactly gen_len decode steps are timed.
    """
    metric = rec["metric"]
    if metric not in METRICS:
        raise ValueError(f"record {rec.get('id')}: unknown metric {metric!r}; allowed: {', '.join(METRICS)}")
    fw = _framework(rec)
    kw = dict(
        batch_size=int(rec["batch_size"]),
        w_bits=rec.get("weights") or _weight_format(rec["precision"]),
        a_bits=rec.get("activations", 16),
        kv_bits=rec.get("kv_cache", 16),
        flash_attention=fw.flash_attention,
        fused=fw.fused,
        framework=fw.label,
    )
    n = int(rec.get("num_devices", 1) or 1)
    if n > 1:
        kw["tp"] = n
    P, G = int(rec["prompt_len"]), int(rec["gen_len"])
    if metric == "prefill_tokens_per_s":
        kw.update(prompt_len=P, gen_len=1)
    elif metric == "decode_tokens_per_s_per_sequence":
        kw.update(prompt_len=max(P, 1), gen_len=G + 1)
    elif metric == "ttft_s":
        kw.update(prompt_len=P, gen_len=max(G, 1))
    else:
        kw.update(prompt_len=P, gen_len=G)
    return kw


def timed(metric: str) -> tuple[bool, bool, int]:
    """(prefill timed, decode steps timed, requests counted) of a metric.

    llama-bench and mlx_lm.benchmark time the forward passes only (no request overhead); TTFT, end-to-end
    latency and request throughput time whole requests.
    """
    return {
        "prefill_tokens_per_s": (True, False, 0),
        "decode_tokens_per_s_per_sequence": (False, True, 0),
        "tpot_s": (False, True, 0),
        "ttft_s": (True, False, 1),
        "e2e_s": (True, True, 1),
        "output_tokens_per_s_per_gpu": (True, True, 1),
    }[metric]


def measured_time(rec: dict, kw: dict) -> float:
    """The seconds the record's metric measured, for the passes :func:`timed` names."""
    v, m = float(rec["value"]), rec["metric"]
    B, P, G = kw["batch_size"], kw["prompt_len"], kw["gen_len"]
    if m == "prefill_tokens_per_s":
        return B * P / v
    if m == "decode_tokens_per_s_per_sequence":
        return (G - 1) / v
    if m == "output_tokens_per_s_per_gpu":
        return B * G / (v * kw.get("tp", 1))
    if m == "tpot_s":
        return v * max(G - 1, 1)
    return v  # ttft_s, e2e_s


def metric_from_time(rec: dict, kw: dict, t: float) -> float:
    """The record's metric for a predicted time of its timed passes (inverse of :func:`measured_time`)."""
    return float(rec["value"]) * measured_time(rec, kw) / t if rec["metric"] in HIGHER_IS_FASTER else t


@dataclass
class Features:
    """One record's operators at unit constants (see the module docstring)."""

    U: np.ndarray  # (K, 6): compute time (float | dequantizing | expert | fp8/int8 GEMM: one is set), per-SM, memory
    w: np.ndarray  # (K,): executions of each entry (count × decode steps it stands for)
    s: np.ndarray  # (7,): kernels (no graphs), kernels (graphs), passes, requests, collective bytes time, hops,
    # sampled positions (Σ B · positions over the passes)
    framework: str
    device_family: str


def _entries(rows, roof, step_w, out_U, out_w):
    kernels = bus = hops = seqs = 0.0
    alpha = roof.hw.interconnect_latency_s or 0.0
    shape = np.shape(step_w)
    for r in rows:
        cnt = np.broadcast_to(np.asarray(r.count * step_w, dtype=float), shape).ravel()
        if r.kind == "communication":
            comm_bus = r.comm_s - r.comm_hops * alpha
            bus += float(np.sum(cnt * np.broadcast_to(comm_bus, shape).ravel()))
            hops += float(np.sum(cnt * r.comm_direct_hops))
            continue
        tc, cls, per_sm, mem, host = roof.unit_times(r)
        U = np.zeros((cnt.size, N_COMPUTE + 2))
        U[:, cls] = np.broadcast_to(tc, shape).ravel()
        U[:, N_COMPUTE] = np.broadcast_to(per_sm, shape).ravel()
        U[:, N_COMPUTE + 1] = np.broadcast_to(np.maximum(mem, host), shape).ravel()
        out_U.append(U)
        out_w.append(cnt)
        if is_kernel(r):
            kernels += float(np.sum(cnt))
            if r.name == SAMPLED_ROW:  # positions sampled: the per-sequence host work of the step
                seqs += float(np.sum(cnt * np.broadcast_to(r.m_dim, shape).ravel()))
    return kernels, bus, hops, seqs


def features(rec: dict) -> Features:
    """The record's operators, evaluated as analyze(..., efficiency="calibrated") builds them."""
    kw = record_settings(rec)
    m = load_model(record_model(rec))
    hw = load_hardware(rec["hardware"])
    fw = calibration.framework(kw["framework"])
    prec = Precision(kw["w_bits"], kw["a_bits"], kw["kv_bits"])
    opts = make_options(
        flash_attention=kw["flash_attention"], fused=kw["fused"], tp=kw.get("tp", 1), efficiency="calibrated"
    )
    B, P, G = kw["batch_size"], kw["prompt_len"], kw["gen_len"]
    validate_for(opts, m, hw, B)
    km = calibration.KernelModel(tuple(PRIOR_MEAN), fw, calibration.device_family(hw), "unit", 0)
    roof = Roof(hw, "calibrated", quantized_weights=prec.w_bits < 16, kernel_model=km)
    pre_t, dec_t, requests = timed(rec["metric"])
    Us: list[np.ndarray] = []  # unit times of every entry (rows × features), one array per pass
    ws: list[np.ndarray] = []  # the weight of each entry
    kernels = passes = bus = hops = seqs = 0.0
    common = dict(batch=B, logits_tokens=1, attention="causal", mla="absorbed", options=opts, hardware=hw)
    if pre_t:
        rows = PassBuilder(m, prec, tokens=P, cached=0, **common).build()
        k, b, h, q = _entries(rows, roof, np.ones(1), Us, ws)
        kernels, passes, bus, hops, seqs = kernels + k, passes + 1, bus + b, hops + h, seqs + q
    steps = G - 1
    if dec_t and steps > 0:
        if steps <= DECODE_SAMPLES:
            cached, wt = P + np.arange(steps, dtype=float), np.ones(steps)
        else:  # midpoints of equal bins; each sample stands for steps / DECODE_SAMPLES steps
            cached = P + (np.arange(DECODE_SAMPLES) + 0.5) * steps / DECODE_SAMPLES - 0.5
            wt = np.full(DECODE_SAMPLES, steps / DECODE_SAMPLES)
        rows = PassBuilder(m, prec, tokens=1, cached=cached, **common).build()
        k, b, h, q = _entries(rows, roof, wt, Us, ws)
        kernels, passes, bus, hops, seqs = kernels + k, passes + steps, bus + b, hops + h, seqs + q
    graphs = fw.graphs
    # merge entries with identical unit times (weight GEMMs repeat at every decode step): same T(θ), fewer rows
    U, inv = np.unique(np.concatenate(Us), axis=0, return_inverse=True)
    w = np.bincount(inv.ravel(), weights=np.concatenate(ws), minlength=len(U))
    return Features(
        U,
        w,
        np.array([0.0 if graphs else kernels, kernels if graphs else 0.0, passes, requests, bus, hops, seqs]),
        fw.name,
        calibration.device_family(hw),
    )


def predict_time(f: Features, theta) -> float:
    """T(θ) of one record (the engine's calibrated time of its timed passes)."""
    th = np.asarray(theta, dtype=float)
    C = N_COMPUTE
    comp = f.U[:, :C] @ th[:C]
    t = np.maximum(np.maximum(comp, f.U[:, C] * th[C]), f.U[:, C + 1] * th[C + 1])
    return float(np.dot(f.w, t) + np.dot(f.s, th[C + 2 :]))


# -- bounded least squares -----------------------------------------------------------------------------
def nnls(A: np.ndarray, b: np.ndarray, iters: int = 200) -> np.ndarray:
    """min ‖Ax − b‖ subject to x ≥ 0 (Lawson–Hanson active set, on the QR-reduced n × n problem)."""
    Q, A = np.linalg.qr(A)  # ‖Ax − b‖² = ‖Rx − Qᵀb‖² + const
    b = Q.T @ b
    n = A.shape[1]
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    for _ in range(iters):
        grad = A.T @ (b - A @ x)
        if passive.all() or grad[~passive].max(initial=-np.inf) <= 1e-12 * (1 + np.abs(grad).max()):
            break
        j = np.argmax(np.where(passive, -np.inf, grad))
        passive[j] = True
        while True:
            z = np.zeros(n)
            Ap = A[:, passive]
            z[passive] = np.linalg.solve(Ap.T @ Ap, Ap.T @ b)  # full column rank: the prior rows are in A
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            passive &= x > 1e-15
            x[~passive] = 0.0
    return x


class _Stack:
    """The features of many records, stacked for vectorized branch selection."""

    def __init__(self, feats: list[Features], times: np.ndarray):
        self.n = len(feats)
        self.U = np.concatenate([f.U for f in feats])
        self.w = np.concatenate([f.w for f in feats])
        self.idx = np.concatenate([np.full(len(f.w), i) for i, f in enumerate(feats)])
        self.S = np.array([f.s for f in feats])
        self.T = np.asarray(times, dtype=float)

    def design(self, th: np.ndarray) -> np.ndarray:
        """X (n × len(PARAMS)): the features of T(θ') = X·θ' with each operator's branch fixed at θ."""
        U, w, C = self.U, self.w, N_COMPUTE
        comp = U[:, :C] @ th[:C]
        sm, mem = U[:, C] * th[C], U[:, C + 1] * th[C + 1]
        c_win = (comp >= sm) & (comp >= mem)
        s_win = ~c_win & (sm >= mem)
        m_win = ~c_win & ~s_win
        X = np.zeros((self.n, len(PARAMS)))
        for j, mask in enumerate([c_win] * C + [s_win, m_win]):
            X[:, j] = np.bincount(self.idx, weights=w * U[:, j] * mask, minlength=self.n)
        X[:, C + 2 :] = self.S
        return X


def fit_group(stack: _Stack, mean: np.ndarray) -> np.ndarray:
    """θ for one group: bounded, Huber-weighted least squares on relative error with a prior at ``mean``."""
    th = np.maximum(np.asarray(mean, dtype=float), LOWER)
    prior_A = np.diag(np.sqrt(PRIOR_WEIGHT) / PRIOR_SCALE)
    prior_b = np.sqrt(PRIOR_WEIGHT) * mean / PRIOR_SCALE
    for _ in range(MAX_ITER):
        X = stack.design(th)
        A = X / stack.T[:, None]  # relative error: X·θ / T − 1
        r = A @ th - 1.0
        hw = np.where(np.abs(r) <= HUBER, 1.0, HUBER / np.maximum(np.abs(r), 1e-12))
        sw = np.sqrt(hw)[:, None]
        AA = np.vstack([A * sw, prior_A])
        bb = np.concatenate([sw[:, 0], prior_b])
        new = LOWER + nnls(AA, bb - AA @ LOWER)  # θ = LOWER + φ, φ ≥ 0
        done = np.allclose(new, th, rtol=1e-7, atol=1e-12)
        th = new
        if done:
            break
    return th


def fit_hierarchy(feats: list[Features], times, select=None) -> dict:
    """Fitted groups {"fw|dev": {"theta": [...], "records": n}} over the records ``select`` (default all)."""
    idx = np.arange(len(feats)) if select is None else np.asarray(select)
    times = np.asarray(times, dtype=float)

    def fit(ids, mean):
        return fit_group(_Stack([feats[i] for i in ids], times[ids]), mean)

    groups = {"*|*": {"theta": fit(idx, PRIOR_MEAN), "records": int(len(idx))}}
    g0 = groups["*|*"]["theta"]
    fws = sorted({feats[i].framework for i in idx})
    devs = sorted({feats[i].device_family for i in idx})
    for fw in fws:
        ids = [i for i in idx if feats[i].framework == fw]
        groups[f"{fw}|*"] = {"theta": fit(ids, g0), "records": len(ids)}
    for dev in devs:
        ids = [i for i in idx if feats[i].device_family == dev]
        groups[f"*|{dev}"] = {"theta": fit(ids, g0), "records": len(ids)}
    for fw in fws:
        for dev in devs:
            ids = [i for i in idx if feats[i].framework == fw and feats[i].device_family == dev]
            if ids:
                groups[f"{fw}|{dev}"] = {"theta": fit(ids, groups[f"{fw}|*"]["theta"]), "records": len(ids)}
    return groups


def predict_with(groups: dict, f: Features) -> tuple[float, str]:
    scope, g = calibration.lookup(groups, f.framework, f.device_family)
    return predict_time(f, g["theta"]), scope


@lru_cache(maxsize=1)
def default_features() -> tuple:
    """(records, features, measured times) of the shipped measurements, computed once."""
    recs = _default_records()
    feats = [features(r) for r in recs]
    times = np.array([measured_time(r, record_settings(r)) for r in recs])
    return recs, feats, times


def leave_one_source_out(records=None, feats=None, times=None) -> list[dict]:
    """For each source: fit without its records, predict them. One dict per record."""
    if records is None:
        records, feats, times = default_features()
    sources = sorted({r.get("source", "") for r in records})
    out: list[dict | None] = [None] * len(records)
    for src in sources:
        train = [i for i, r in enumerate(records) if r.get("source", "") != src]
        groups = fit_hierarchy(feats, times, train)
        for i, r in enumerate(records):
            if r.get("source", "") == src:
                t, scope = predict_with(groups, feats[i])
                out[i] = {"predicted_time": t, "scope": scope}
    return out  # type: ignore[return-value]  # every record has one source, so no slot stays None


def _band(errors: np.ndarray) -> dict:
    a = np.abs(errors)
    return {
        "records": int(len(errors)),
        "median_abs_error": float(np.median(a)),
        "p90_abs_error": float(np.percentile(a, 90)),
        "median_signed_error": float(np.median(errors)),
    }


def error_bands(records, feats, errors: np.ndarray) -> dict:
    """Out-of-sample |error| per (framework, device family, phase), per pair, per framework, per phase, overall."""
    keys: dict[str, list[int]] = {}
    for i, (r, f) in enumerate(zip(records, feats)):
        ph = calibration.PHASE_OF_METRIC[r["metric"]]
        for k in (
            f"{f.framework}|{f.device_family}|{ph}",
            f"{f.framework}|{f.device_family}|*",
            f"{f.framework}|*|{ph}",
            f"{f.framework}|*|*",
            f"*|{f.device_family}|{ph}",
            f"*|*|{ph}",
            "*|*|*",
        ):
            keys.setdefault(k, []).append(i)
    return {k: _band(errors[v]) for k, v in sorted(keys.items())}


def build_fit() -> dict:
    """The content of ``data/calibration_fit.json``: the fit on every record, and the out-of-sample bands."""
    records, feats, times = default_features()
    groups = fit_hierarchy(feats, times)
    loo = leave_one_source_out(records, feats, times)
    err_out = np.array([o["predicted_time"] for o in loo]) / times - 1.0
    err_in = np.array([predict_with(groups, f)[0] for f in feats]) / times - 1.0
    return {
        "schema": 1,
        "description": (
            "Constants of the calibrated kernel model (engine/calibration.py), fitted by engine/fit.py from "
            "data/measurements.json; regenerate with `python -m llmroof_widgets.engine.fit`. 'groups': theta in "
            "the order of 'params' per framework family | device family ('*' = pooled). 'bands': leave-one-"
            "source-out |error| in time per framework | device family | phase. 'in_sample': the same figures "
            "for the fit on every record (optimistic)."
        ),
        "params": list(PARAMS),
        "records": len(records),
        "sources": sorted({r.get("source", "") for r in records}),
        "groups": {k: {"theta": [float(x) for x in g["theta"]], "records": g["records"]} for k, g in groups.items()},
        "bands": error_bands(records, feats, err_out),
        "in_sample": _band(err_in),
        "out_of_sample": _band(err_out),
    }


def write_fit(path=None) -> dict:
    data = build_fit()
    (calibration.FIT_FILE if path is None else path).write_text(json.dumps(data, indent=1) + "\n")
    calibration.fitted.cache_clear()
    return data


if __name__ == "__main__":  # pragma: no cover
    d = write_fit()
    print(f"{d['records']} records; out of sample {d['out_of_sample']}; in sample {d['in_sample']}")
