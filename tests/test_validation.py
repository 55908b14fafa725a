"""Validation against measured inference: the record → prediction mapping, and the figures."""

from __future__ import annotations

import pytest

import llmroof_widgets as lr
from llmroof_widgets import validation as v


def rec(**kw):
    base = {
        "id": "x",
        "model": "meta-llama/Llama-2-7b-hf",
        "hardware": "rtx-4090",
        "num_devices": 1,
        "framework": "llama.cpp",
        "precision": "weights q4_0 (4.5 bits/weight) / activations fp32 / kv fp16",
        "batch_size": 1,
        "prompt_len": 512,
        "gen_len": 0,
        "metric": "prefill_tokens_per_s",
        "value": 1.0,
    }
    base.update(kw)
    return base


LLAMA_CPP = {"flash_attention": "off", "fused": False, "framework": "llama.cpp"}


def test_mapping_prefill_record():
    kw = v.record_settings(rec())
    assert kw == {
        "batch_size": 1,
        "w_bits": "q4_0",
        "a_bits": 16,
        "kv_bits": 16,
        "prompt_len": 512,
        "gen_len": 1,
        **LLAMA_CPP,
    }
    r = lr.analyze("llama-2-7b", "rtx-4090", **kw)
    assert v.predict(rec(), r) == pytest.approx(512 / r.generation["ttft_s"])
    # q4_0 stores 4.5 bits a weight (32 4-bit weights + an fp16 scale)
    q = {o["name"]: o for o in r.to_dict()["decode"]["ops"]}["q_proj"]
    assert q["weight_bytes"] == pytest.approx(4096 * 4096 * 4.5 / 8)


def test_mapping_uses_structured_precision_fields():
    r0 = rec(
        framework="TensorRT-LLM 0.9.0",
        framework_family="TensorRT-LLM",
        weights="fp8_e4m3",
        activations="fp8_e4m3",
        kv_cache="fp8_e4m3",
        precision="fp8 weights / fp8 activations / fp8 kv",
    )
    kw = v.record_settings(r0)
    assert (kw["w_bits"], kw["a_bits"], kw["kv_bits"]) == ("fp8_e4m3",) * 3
    # TensorRT-LLM's records run with its fused attention and fused element-wise kernels
    assert kw["framework"] == "TensorRT-LLM" and kw["flash_attention"] == "tiled" and kw["fused"] is True
    with pytest.raises(ValueError, match="framework"):
        v.record_settings(rec(framework_family="pytorch-eager"))


def test_mapping_decode_from_empty_context():
    r0 = rec(metric="decode_tokens_per_s_per_sequence", prompt_len=0, gen_len=128, precision="weights fp16 / x")
    kw = v.record_settings(r0)
    assert kw["prompt_len"] == 1 and kw["gen_len"] == 129 and kw["w_bits"] == "fp16"
    r = lr.analyze("llama-2-7b", "rtx-4090", **kw)
    assert len(r.decode_step_times_s) == 128  # exactly the 128 timed steps
    assert v.predict(r0, r) == pytest.approx(128 / r.generation["decode_s"])


def test_mapping_throughput_ttft_and_tensor_parallel():
    t = rec(
        framework="TensorRT-LLM",
        precision="fp16 / fp16 / fp16",
        batch_size=384,
        prompt_len=128,
        gen_len=128,
        metric="output_tokens_per_s_per_gpu",
        hardware="a100-80gb-sxm",
    )
    kw = v.record_settings(t)
    assert kw["w_bits"] == "fp16" and kw["gen_len"] == 128 and "tp" not in kw
    r = lr.analyze("llama-2-7b", "a100-80gb-sxm", **kw)
    assert v.predict(t, r) == pytest.approx(384 * 128 / r.generation["e2e_s"])
    f = rec(
        model="meta-llama/Llama-2-70b-hf",
        num_devices=4,
        metric="ttft_s",
        prompt_len=2048,
        gen_len=1,
        hardware="a100-80gb-sxm",
        precision="fp16 / fp16 / fp16",
    )
    kw = v.record_settings(f)
    assert kw["tp"] == 4
    r = lr.analyze("llama-2-70b", "a100-80gb-sxm", **kw)
    assert v.predict(f, r) == r.generation["ttft_s"]
    with pytest.raises(ValueError):
        v.record_settings(rec(metric="joules"))
    with pytest.raises(ValueError):
        v.record_settings(rec(precision="weights q3_k"))


def test_every_shipped_record_is_mapped_with_its_source():
    recs = v.load_measurements()
    assert len(recs) >= 150
    assert len({r["id"] for r in recs}) == len(recs)
    for r in recs:
        assert r["source"].startswith("https://"), r["id"]
        assert r["framework_family"] in lr.engine.calibration.FRAMEWORKS, r["id"]
        assert r["batching"] in ("single-stream", "static-batch", "fixed-concurrency"), r["id"]
        kw = v.record_settings(r)
        fw = lr.engine.calibration.framework(kw["framework"])
        assert fw.name == r["framework_family"]
        # the version travels where it changes the kernels (TensorRT-LLM before 0.10: 16-bit expert GEMMs)
        assert (fw.version is not None) == (r["framework_family"] in lr.engine.calibration.VERSIONS), r["id"]


@pytest.fixture(scope="module")
def figures():
    roof = v.validate("roofline")
    cal = v.validate("calibrated")
    loo = v.validate("calibrated", cv="source")
    return roof, cal, loo


def test_validation_figures(figures):
    roof, cal, loo = figures
    sr, sc, so = v.summary(roof), v.summary(cal), v.summary(loo)
    print(f"\nvalidation over {sr['records']} measured records:")
    print(
        f"  roofline:                 median |error| {sr['median_abs_error']:.1%}, p90 {sr['p90_abs_error']:.1%}, "
        f"lower bound in {sr['lower_bound_share']:.0%} of records"
    )
    print(f"  calibrated, in sample:    median |error| {sc['median_abs_error']:.1%}, p90 {sc['p90_abs_error']:.1%}")
    print(f"  calibrated, out of sample: median |error| {so['median_abs_error']:.1%}, p90 {so['p90_abs_error']:.1%}")
    assert sr["records"] >= 167
    # the roofline is a lower bound on time (issue 15's target: ≥ 97 % of records)
    assert sr["lower_bound_share"] >= 0.97
    assert (roof.predicted > 0).all() and (cal.predicted > 0).all() and (loo.predicted > 0).all()
    # in sample: the fit reproduces the records it was fitted on
    assert sc["median_abs_error"] <= 0.12
    # out of sample (leave one source out): what the fit reaches on sources it never saw — issue 15's
    # targets, ≤ 15 % / ≤ 35 % (12.6 % / 34.4 % over 167 records; see README)
    assert so["median_abs_error"] <= 0.15
    assert so["p90_abs_error"] <= 0.35
    # out-of-sample errors are worse than in-sample ones: the folds really refit
    assert so["median_abs_error"] > sc["median_abs_error"]
    with pytest.raises(ValueError, match="mode"):
        v.validate("fitted")
    with pytest.raises(ValueError, match="cv"):
        v.validate("calibrated", cv="record")


def test_breakdowns_and_parity_plot(figures):
    _, _, loo = figures
    by_src = v.summary_by(loo, "source")
    assert len(by_src) == len(set(loo.source)) >= 7
    assert by_src.records.sum() == len(loo)
    by_fw = v.summary_by(loo, "framework")
    assert set(by_fw.framework) >= {"llama.cpp", "TensorRT-LLM", "vLLM", "MLX"}
    by_metric = v.summary_by(loo, "metric")
    assert {"median_signed_error", "p90_abs_error"} <= set(by_metric.columns)
    fig = v.parity_plot(loo, "out of sample")
    dots = fig.marks[-1]
    assert len(dots.x) == len(loo) and len(set(dots.color)) == len(by_src)


def test_leave_one_source_out_never_sees_the_source():
    """Predicting a source from a fit that excludes it equals a fit on the other records alone."""
    import numpy as np

    from llmroof_widgets.engine import fit

    recs, feats, times = fit.default_features()
    src = "https://github.com/ml-explore/mlx-lm/blob/a4c64703906f709a493341508ac31af4085d2638/mlx_lm/BENCHMARKS.md"
    held = [i for i, r in enumerate(recs) if r["source"] == src]
    others = [i for i, r in enumerate(recs) if r["source"] != src]
    groups = fit.fit_hierarchy(feats, times, others)
    assert not any(k.startswith("MLX|") for k in groups)  # no MLX record left to fit an MLX group
    loo = fit.leave_one_source_out(recs, feats, times)
    for i in held:
        t, scope = fit.predict_with(groups, feats[i])
        assert loo[i]["predicted_time"] == pytest.approx(t) and loo[i]["scope"] == scope
    assert np.isfinite([o["predicted_time"] for o in loo]).all()
