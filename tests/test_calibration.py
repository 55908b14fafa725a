"""The calibrated kernel model: its fit, the engine's use of it, fp16-accumulate peaks, trust labels."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import llmroof_widgets as lr
from llmroof_widgets.engine import calibration, fit
from llmroof_widgets.engine.hardware import Hardware


@pytest.fixture(scope="module")
def data():
    return fit.default_features()


def test_shipped_fit_is_regenerated_by_the_code(data):
    """data/calibration_fit.json is what engine/fit.py computes from data/measurements.json."""
    shipped = json.loads(calibration.FIT_FILE.read_text())
    fresh = json.loads(json.dumps(fit.build_fit()))
    assert shipped["params"] == list(calibration.PARAMS)
    assert set(shipped["groups"]) == set(fresh["groups"])
    for k, g in fresh["groups"].items():
        np.testing.assert_allclose(shipped["groups"][k]["theta"], g["theta"], rtol=1e-6, atol=1e-12, err_msg=k)
        assert shipped["groups"][k]["records"] == g["records"]
    assert set(shipped["bands"]) == set(fresh["bands"])
    for k, b in fresh["bands"].items():
        assert shipped["bands"][k]["median_abs_error"] == pytest.approx(b["median_abs_error"], rel=1e-6), k
    assert shipped["out_of_sample"]["p90_abs_error"] == pytest.approx(fresh["out_of_sample"]["p90_abs_error"])


def test_fitted_constants_are_physical(data):
    for k, g in calibration.fitted()["groups"].items():
        th = np.array(g["theta"])
        assert (th >= calibration.LOWER - 1e-12).all(), k  # never faster than the datasheet, overheads ≥ 0
        assert g["records"] > 0


def test_engine_equals_the_fitted_model(data):
    """analyze(efficiency="calibrated") gives exactly the time the fit minimised, for every record."""
    recs, feats, times = data
    groups = calibration.fitted()["groups"]
    for rec, f in list(zip(recs, feats))[::7]:
        kw = fit.record_settings(rec)
        r = lr.analyze(fit.record_model(rec), rec["hardware"], efficiency="calibrated", **kw)
        pre, dec, req = fit.timed(rec["metric"])
        engine = (r.prefill.time_s if pre else 0.0) + (r.generation["decode_s"] if dec else 0.0)
        engine += r.prefill.roof.request_overhead * req
        model = fit.predict_with(groups, f)[0]
        steps = kw["gen_len"] - 1
        # decode steps are sampled at 32 points beyond 32 steps (midpoint rule: exact where a step's time
        # is linear in the context)
        tol = 1e-9 if steps <= fit.DECODE_SAMPLES or not dec else 2e-3
        assert engine == pytest.approx(model, rel=tol), rec["id"]


def test_fit_recovers_known_constants(data, monkeypatch):
    """Times generated from known constants are fitted back (the fitter is not a no-op)."""
    recs, feats, times = data
    monkeypatch.setattr(fit, "PRIOR_WEIGHT", 1e-8)  # the data alone
    truth = calibration.PRIOR_MEAN * np.array([1.3, 0.8, 1.4, 1.2, 1.0, 1.1, 2.0, 1.5, 0.5, 3.0, 1.2, 2.0, 2.5])
    truth[calibration.PARAMS.index("per_sm_compute")] = 0.0
    truth = np.maximum(truth, calibration.LOWER)
    fake = np.array([fit.predict_time(f, truth) for f in feats])
    th = fit.fit_group(fit._Stack(list(feats), fake), calibration.PRIOR_MEAN)
    err = np.array([fit.predict_time(f, th) for f in feats]) / fake - 1
    assert np.abs(err).max() < 0.02
    # the well-determined constants come back
    for name in ("compute", "dequant_compute", "memory", "kernel_s", "step_s", "seq_step_s"):
        j = calibration.PARAMS.index(name)
        assert th[j] == pytest.approx(truth[j], rel=0.1), name


def test_nnls_matches_brute_force():
    rng = np.random.default_rng(0)
    A, b = rng.normal(size=(30, 4)), rng.normal(size=30)
    x = fit.nnls(A, b)
    best = None
    for mask in range(16):  # every active set
        cols = [j for j in range(4) if mask >> j & 1]
        z = np.zeros(4)
        if cols:
            z[cols] = np.linalg.lstsq(A[:, cols], b, rcond=None)[0]
        if (z >= 0).all():
            cost = np.sum((A @ z - b) ** 2)
            best = cost if best is None else min(best, cost)
    assert (x >= 0).all() and np.sum((A @ x - b) ** 2) == pytest.approx(best)


def test_shape_efficiency():
    # M = 32 fills half: M / (M + 32)
    assert calibration.shape_efficiency(32.0, None, None) == pytest.approx(0.5)
    # 512 × 4096 on 132 SMs: 4 · 32 = 128 tiles ≤ 132: one (split-K filled) wave, no loss
    assert calibration.shape_efficiency(512.0, 4096, 132) == pytest.approx(512 / 544)
    # 2048 × 4096: 16 · 32 = 512 tiles = 3.88 waves → 4 waves: 512 / 528
    assert calibration.shape_efficiency(2048.0, 4096, 132) == pytest.approx(2048 / 2080 * 512 / 528)


def test_framework_knob():
    kw = dict(prompt_len=512, gen_len=64, w_bits="q4_0")
    base = lr.analyze("llama-2-7b", "rtx-4090", **kw)
    assert base.settings["framework"] == "generic"
    # the roofline ignores the framework
    assert lr.analyze("llama-2-7b", "rtx-4090", framework="llama.cpp", **kw).generation == base.generation
    a = lr.analyze("llama-2-7b", "rtx-4090", efficiency="calibrated", framework="llama.cpp", **kw)
    b = lr.analyze("llama-2-7b", "rtx-4090", efficiency="calibrated", framework="TensorRT-LLM", **kw)
    assert a.generation["ttft_s"] != b.generation["ttft_s"]
    assert a.prefill.roof.km.scope.startswith("llama.cpp|")
    # calibrated times are slower than the roofline bound
    assert a.generation["e2e_s"] > base.generation["e2e_s"]
    assert lr.analyze("llama-2-7b", "rtx-4090", efficiency="calibrated", framework="LLAMACPP", **kw).settings[
        "framework"
    ] == ("llama.cpp")
    with pytest.raises(ValueError, match="framework must be one of"):
        lr.analyze("llama-2-7b", "rtx-4090", framework="pytorch", **kw)
    # the sweep equals analyze in calibrated mode too (request and step overheads included)
    df = lr.sweep("llama-2-7b", "rtx-4090", efficiency="calibrated", framework="llama.cpp", batch_size=[1, 4], **kw)
    for row in df.itertuples():
        r = lr.analyze(
            "llama-2-7b", "rtx-4090", efficiency="calibrated", framework="llama.cpp", batch_size=row.batch_size, **kw
        )
        assert row.ttft_s == pytest.approx(r.generation["ttft_s"], rel=1e-9)
        assert row.e2e_s == pytest.approx(r.generation["e2e_s"], rel=1e-9)


def test_framework_versions():
    old = calibration.framework("TensorRT-LLM 0.9.0")
    assert old.name == "TensorRT-LLM" and old.label == "TensorRT-LLM 0.9.0" and old.legacy_moe
    assert calibration.framework("trtllm v0.9").legacy_moe  # aliases and a leading v
    assert not calibration.framework("TensorRT-LLM 0.10.0").legacy_moe
    assert not calibration.framework("TensorRT-LLM").legacy_moe  # the family as it is today
    assert not calibration.framework("vLLM 0.10.0").legacy_moe  # no version rule: the version is only a label
    for bad in ("TensorRT-LLM nightly", "pytorch 2.1", "", None, 3):
        with pytest.raises(ValueError, match="framework must be one of"):
            calibration.framework(bad)
    # the version reaches analyze() and its settings; fit groups stay per family
    kw = dict(prompt_len=2048, gen_len=1, tp=2, w_bits="fp8_e4m3", a_bits="fp8_e4m3", kv_bits="fp8_e4m3")
    kw.update(efficiency="calibrated", flash_attention="tiled", fused=True)
    r9 = lr.analyze("mistralai/Mixtral-8x7B-v0.1", "h100-sxm", framework="TensorRT-LLM 0.9.0", **kw)
    rn = lr.analyze("mistralai/Mixtral-8x7B-v0.1", "h100-sxm", framework="TensorRT-LLM", **kw)
    assert r9.settings["framework"] == "TensorRT-LLM 0.9.0" and r9.prefill.roof.km.scope == rn.prefill.roof.km.scope
    # before 0.10 the expert GEMMs multiply in 16 bits at the mma.sync share (2/3) of Hopper's peak; the bytes
    # (fp8 weights, read as stored) and every other operator are unchanged
    ops9 = {o["name"]: o for o in r9.to_dict()["prefill"]["ops"]}
    opsn = {o["name"]: o for o in rn.to_dict()["prefill"]["ops"]}
    hw = r9.hardware
    for name in ("experts_gate_up", "experts_down"):
        assert ops9[name]["peak_dtype"] == "fp16" and opsn[name]["peak_dtype"] == "fp8"
        km = r9.prefill.roof.km
        assert ops9[name]["peak_flops"] == pytest.approx(hw.peak_flops["fp16"] * 2 / 3 / km.compute)
        assert ops9[name]["bytes"] == opsn[name]["bytes"] and ops9[name]["flops"] == opsn[name]["flops"]
        assert ops9[name]["compute_time_s"] == pytest.approx(opsn[name]["compute_time_s"] * 3)
    assert {**ops9["q_proj"], "share": 0} == {**opsn["q_proj"], "share": 0}  # its share of a longer phase drops
    # sweep() and serve() model the same version
    df = lr.sweep("mistralai/Mixtral-8x7B-v0.1", "h100-sxm", framework="TensorRT-LLM 0.9.0", **kw)
    assert df.ttft_s.iloc[0] == pytest.approx(r9.generation["ttft_s"], rel=1e-9)
    k16 = {**kw, "gen_len": 16}
    sv = lr.serve("mistralai/Mixtral-8x7B-v0.1", "h100-sxm", concurrency=1, framework="TensorRT-LLM 0.9.0", **k16)
    a16 = lr.analyze("mistralai/Mixtral-8x7B-v0.1", "h100-sxm", framework="TensorRT-LLM 0.9.0", **k16)
    assert sv.to_dict()["ttft_s"]["p50"] == pytest.approx(a16.generation["ttft_s"], rel=1e-6)
    # the share is 1 off Hopper (Ampere's native instruction), and the roofline ignores all of it
    assert calibration.legacy_mma_share(lr.load_hardware("a100-80gb-sxm")) == 1.0
    kw["efficiency"] = "roofline"
    assert (
        lr.analyze("mistralai/Mixtral-8x7B-v0.1", "h100-sxm", framework="TensorRT-LLM 0.9.0", **kw).generation
        == lr.analyze("mistralai/Mixtral-8x7B-v0.1", "h100-sxm", **kw).generation
    )


def test_geforce_fp16_accumulate_peak():
    hw = lr.load_hardware("rtx-4090")
    assert hw.matrix_peak("fp16") == ("fp16", 165.2e12)
    assert hw.fast_matrix_peak("fp16") == ("fp16", 330.3e12)
    assert hw.fast_matrix_peak("bf16") == ("bf16", 165.2e12)  # bf16 accumulates in fp32 only
    assert lr.load_hardware("h100-sxm").fast_matrix_peak("fp16") == ("fp16", 989.5e12)
    # the roofline stays a bound: it uses the faster accumulate mode
    r = lr.analyze("llama-2-7b", "rtx-4090", prompt_len=2048, gen_len=1)
    assert r.to_dict()["roofs"]["peaks"]["fp16"] == 330.3e12
    q = {o["name"]: o for o in r.to_dict()["prefill"]["ops"]}["q_proj"]
    assert q["compute_time_s"] == pytest.approx(2 * 2048 * 4096 * 4096 / 330.3e12)
    # calibrated: llama.cpp (cuBLAS fp16 accumulate) may use it, TensorRT-LLM (fp32 accumulate) not
    for fw, peak in (("llama.cpp", 330.3e12), ("TensorRT-LLM", 165.2e12)):
        c = lr.analyze("llama-2-7b", "rtx-4090", prompt_len=2048, gen_len=1, efficiency="calibrated", framework=fw)
        assert c.prefill.roof._matrix_peak("fp16")[1] == peak
    with pytest.raises(ValueError, match="fp16_accumulate_flops"):
        Hardware(
            name="x",
            memory_bytes=1e9,
            memory_bandwidth=1e9,
            peak_flops={"fp16": 1e12},
            fp16_accumulate_flops={"fp9": 1},
        )


def test_communication_bus_and_hops():
    r = lr.analyze("llama-2-70b", "a100-80gb-sxm", tp=4, prompt_len=128, gen_len=2, efficiency="calibrated")
    km = r.prefill.roof.km
    ar = next(x for x in r.prefill.rows if x.kind == "communication" and x.name.endswith("allreduce"))
    assert ar.comm_hops == 2 * (4 - 1)  # ring: 2(n − 1) sequential steps (the roofline's α–β time)
    assert ar.comm_direct_hops == 2  # one-/two-shot kernels on a fully connected topology
    alpha = r.hardware.interconnect_latency_s
    expect = km.bus * (ar.comm_s - ar.comm_hops * alpha) + km.hop_s * ar.comm_direct_hops
    # the roofline keeps the ring's α–β time
    plain = lr.analyze("llama-2-70b", "a100-80gb-sxm", tp=4, prompt_len=128, gen_len=2)
    ar0 = next(x for x in plain.prefill.rows if x.name == ar.name)
    assert plain.prefill.roof.row_time(ar0) == ar0.comm_s
    assert r.prefill.roof.row_time(ar) == pytest.approx(expect)


def test_trust_labels():
    g = lr.analyze("llama-3.1-8b", "h100-sxm").to_dict()["generation"]["trust"]
    assert g["ttft_s"]["kind"] == g["tpot_s"]["kind"] == "roofline lower bound"
    assert "roofline lower bound" in g["summary"]
    c = lr.analyze("llama-3.1-8b", "h100-sxm", efficiency="calibrated", framework="TensorRT-LLM").to_dict()
    t = c["generation"]["trust"]["tpot_s"]
    assert t["kind"] == "calibrated estimate" and t["framework"] == "TensorRT-LLM"
    assert t["error_band"]["records"] >= 3 and 0 < t["error_band"]["p90_abs_error"] < 5
    assert t["error_band"]["scope"].startswith("TensorRT-LLM|datacenter-gpu")
    assert "out of sample" in c["generation"]["trust"]["summary"]
    # a setting a public measurement matches: the measured value with its source
    m = lr.analyze("llama-2-7b", "apple-m1", w_bits="q8_0", prompt_len=512, gen_len=1, efficiency="calibrated")
    lab = m.to_dict()["generation"]["trust"]["ttft_s"]
    assert lab["kind"] == "measured" and lab["model"]["kind"] == "calibrated estimate"
    meas = lab["measurements"][0]
    assert meas["source"] == "https://github.com/ggml-org/llama.cpp/discussions/4167"
    assert meas["seconds"] == pytest.approx(512 / 117.25)
    # another framework's measurement does not match a framework-specific setting
    o = lr.analyze("llama-2-7b", "apple-m1", w_bits="q8_0", prompt_len=512, gen_len=1, framework="MLX")
    assert o.to_dict()["generation"]["trust"]["ttft_s"]["kind"] == "roofline lower bound"
    json.dumps(m.to_dict())  # plain data
    assert math.isfinite(meas["seconds"])
