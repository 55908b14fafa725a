"""The closed-form generation equals the sum of every decode step evaluated one by one.

The reference below is the per-step evaluation the engine used before (one operator build over the
array of every cached length, summed): independent of the piecewise-linear machinery it checks.
"""

from __future__ import annotations

import math
import time
import tracemalloc

import numpy as np
import pytest

import llmroof_widgets as lr
from llmroof_widgets.engine import generation
from llmroof_widgets.engine.analysis import _mtp_draft
from llmroof_widgets.engine.generation import MAX_TIMELINE_POINTS, StepSeries, decode_times
from llmroof_widgets.engine.options import Options, make_options
from llmroof_widgets.engine.precision import Precision
from llmroof_widgets.engine.roofline import Roof

HW = lr.load_hardware("h100-sxm")
GEN = 181


def reference_decode_s(m, hw, *, batch, prompt_len, gen_len, w_bits=16, spec=None, mla="absorbed", **knobs):
    """Σ of every decode step (speculative: every round, the last one weighted by its share)."""
    prec = Precision(w_bits, 16, 16)
    opts = make_options(**knobs)
    roof = Roof(hw, opts.efficiency, quantized_weights=prec.w_bits < 16)
    steps = gen_len - 1
    if spec is None:
        cached = prompt_len + np.arange(steps, dtype=np.float64)
        return float(np.sum(decode_times(m, prec, roof, opts, batch=batch, tokens=1, cached=cached, mla=mla)))
    tau, g = spec.tokens_per_round, spec.gamma
    n = math.ceil(steps / tau)
    cached = prompt_len + tau * np.arange(n, dtype=np.float64)
    verify = decode_times(
        m, prec, roof, opts, batch=batch, tokens=g + 1, cached=cached, mla="absorbed", logits_tokens=g + 1
    )
    d_cached = (cached[:, None] + np.arange(g)[None, :]).ravel()
    d_opts = Options(flash_attention=opts.flash_attention, fused=opts.fused, efficiency=opts.efficiency)
    draft = _mtp_draft(m)
    drafts = decode_times(draft, prec, roof, d_opts, batch=batch, tokens=1, cached=d_cached, mla="absorbed")
    rounds = verify + drafts.reshape(n, g).sum(axis=1)
    w = np.ones(n)
    w[-1] = (steps - tau * (n - 1)) / tau
    return float(np.sum(rounds * w))


def _prompt_crossing_windows(m) -> int:
    """A prompt whose generation crosses the smallest sliding window (where the pieces break)."""
    windows = [lt.attention.window for lt in m.layer_types if lt.attention is not None and lt.attention.window]
    return max(1, min(windows) - GEN // 2) if windows else 700


KNOBS = {
    "plain": {},
    "calibrated_budget_tiled": dict(efficiency="calibrated", kv_budget=300, flash_attention="tiled", w_bits=4),
    "speculative_keep": dict(spec=lr.Speculative(draft="mtp", gamma=3, acceptance=0.6), kv_keep_ratio=0.5),
    "speculative_budget_eff": dict(
        spec=lr.Speculative(draft="mtp", gamma=2, acceptance=0.8), kv_budget=97, efficiency={"memory": 0.8}
    ),
    "tp_offload": dict(tp=2, offload={"weights": 0.3, "kv_cache": 0.5}, fused=True, early_exit_fraction=0.7),
    "ep": dict(ep=2),
}


@pytest.mark.parametrize("knob", list(KNOBS))
def test_closed_form_equals_per_step_sum_on_the_catalog(knob, monkeypatch):
    # the closed form for every length (short generations otherwise take the direct per-step pass)
    monkeypatch.setattr(generation, "DIRECT_STEPS", 0)
    kw = dict(KNOBS[knob])
    spec = kw.pop("spec", None)
    checked = 0
    for name in lr.list_models():
        m = lr.load_model(name)
        if name in ("deepseek-ai/DeepSeek-V3", "meta-llama/Llama-3.1-405B") and knob != "plain":
            continue  # the biggest two: the plain case covers them; keep the module fast
        P = _prompt_crossing_windows(m)
        try:
            r = lr.analyze(m, HW, batch_size=2, prompt_len=P, gen_len=GEN, speculative=spec, **kw)
        except ValueError:
            continue  # a knob this model does not take (ep on a dense model, tp not dividing)
        ref = reference_decode_s(m, HW, batch=2, prompt_len=P, gen_len=GEN, spec=spec, **kw)
        assert r.generation["decode_s"] == pytest.approx(ref, rel=1e-9), name
        checked += 1
    assert checked >= (3 if knob == "ep" else 20)


def test_long_generation_is_exact_against_chunks_of_steps():
    # a long generation across a sliding window, a KV budget and the calibrated small-M efficiency:
    # the closed form against the per-step sum over 200 000 steps
    m = lr.load_model("mistralai/Mistral-7B-v0.1")
    kw = dict(kv_budget=50_000, efficiency="calibrated", flash_attention="tiled")
    r = lr.analyze(m, HW, batch_size=3, prompt_len=1000, gen_len=200_001, **kw)
    ref = reference_decode_s(m, HW, batch=3, prompt_len=1000, gen_len=200_001, **kw)
    assert r.generation["decode_s"] == pytest.approx(ref, rel=1e-9)
    assert r.generation["decode_steps"] == 200_000


def test_calibrated_naive_mla_whose_efficiency_follows_the_cache():
    # naive MLA re-expands every cached latent: kv_b_proj's rows (B·keys) grow with the cache, so its
    # calibrated GEMM efficiency M/(M + M_half) changes with every step — a piece that is not linear
    m = lr.load_model("deepseek-ai/DeepSeek-V2-Lite")
    kw = dict(efficiency="calibrated")
    r = lr.analyze(m, HW, batch_size=1, prompt_len=1, gen_len=3000, mla="naive", **kw)
    ref = reference_decode_s(m, HW, batch=1, prompt_len=1, gen_len=3000, mla="naive", **kw)
    assert r.generation["decode_s"] == pytest.approx(ref, rel=1e-9)


def test_cumulative_sums_equal_partial_per_step_sums():
    m = lr.load_model("google/gemma-2-9b")
    prec, opts = Precision(16, 16, 16), make_options(kv_budget=3000, kv_keep_ratio=0.6)
    roof = Roof(HW, opts.efficiency)
    series, _ = generation.plain_series(m, prec, roof, opts, batch=4, first_cached=2000, n=6000, mla="absorbed")
    step = decode_times(m, prec, roof, opts, batch=4, tokens=1, cached=2000 + np.arange(6000.0), mla="absorbed")
    csum = np.concatenate([[0.0], np.cumsum(step)])
    q = np.array([0, 1, 2, 17, 2047, 2048, 2049, 2050, 3001, 4999, 5999, 6000])
    np.testing.assert_allclose(series.cumulative(q), csum[q], rtol=1e-11, atol=1e-18)
    np.testing.assert_allclose(series.values(q[:-1]), step[q[:-1]], rtol=1e-12)
    a = np.array([0, 5, 999, 2047, 2048, 3000, 5990, 17])
    b = np.array([0, 6, 2049, 2049, 4000, 3001, 6000, 5999])
    np.testing.assert_allclose(series.range_sum(a, b), csum[b] - csum[a], rtol=1e-11, atol=1e-18)
    assert series.starts.size < 60  # a few linear parts, not one per step


def test_nonlinear_pieces_are_found_without_break_points():
    # no break points given: the pieces are still checked and halved until each one is linear
    f = lambda j: np.stack([np.stack([1.0 / (1.0 + j)]), np.stack([0.002 * np.abs(j - 37.5)])])
    s = StepSeries(f, 1000)
    ref = np.sum(np.maximum(1.0 / (1.0 + np.arange(1000.0)), 0.002 * np.abs(np.arange(1000.0) - 37.5)))
    assert s.total == pytest.approx(ref, rel=1e-11)


def test_huge_generation_is_cheap_and_its_timeline_bounded():
    tracemalloc.start()
    t0 = time.perf_counter()
    r = lr.analyze("meta-llama/Llama-3.1-8B", "h100-sxm", prompt_len=128, gen_len=10**8)
    dt = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert dt < 2.0 and peak < 100e6, (dt, peak)
    g = r.to_dict()["generation"]
    n = len(g["decode_step_times_s"])
    assert n <= MAX_TIMELINE_POINTS + 2
    assert g["decode_steps"] == 10**8 - 1
    assert g["decode_step_indices"][0] == 0 and g["decode_step_indices"][-1] == 10**8 - 2
    assert g["decode_contexts"][-1] == 128 + 10**8 - 1
    # every sampled step is exact
    m = lr.load_model("meta-llama/Llama-3.1-8B")
    idx = np.asarray(g["decode_step_indices"][::400], dtype=np.float64)
    roof = Roof(r.hardware, {})
    direct = decode_times(
        m, Precision(16, 16, 16), roof, Options(), batch=1, tokens=1, cached=128 + idx, mla="absorbed"
    )
    np.testing.assert_allclose(np.asarray(g["decode_step_times_s"][::400]), direct, rtol=1e-12)
    # the mean step time lies between the first and the last step
    assert g["decode_step_times_s"][0] <= g["tpot_s"] <= g["decode_step_times_s"][-1]


def test_timeline_keeps_break_points():
    idx = generation.timeline_indices(10**6, breaks=[4095.3, 777_777.0])
    assert len(idx) <= MAX_TIMELINE_POINTS + 6
    for k in (0, 4095, 4096, 777_777, 777_778, 10**6 - 1):
        assert k in idx
    assert np.all(np.diff(idx) > 0)
