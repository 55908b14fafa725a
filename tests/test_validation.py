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


def test_mapping_prefill_record():
    kw = v.record_settings(rec())
    assert kw == {"batch_size": 1, "w_bits": "q4_0", "a_bits": 16, "kv_bits": 16, "prompt_len": 512, "gen_len": 1}
    r = lr.analyze("llama-2-7b", "rtx-4090", **kw)
    assert v.predict(rec(), r) == pytest.approx(512 / r.generation["ttft_s"])
    # q4_0 stores 4.5 bits a weight (32 4-bit weights + an fp16 scale)
    q = {o["name"]: o for o in r.to_dict()["decode"]["ops"]}["q_proj"]
    assert q["weight_bytes"] == pytest.approx(4096 * 4096 * 4.5 / 8)


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


def test_validation_figures():
    roof = v.validate("roofline")
    cal = v.validate("calibrated")
    sr, sc = v.summary(roof), v.summary(cal)
    print(f"\nvalidation over {sr['records']} measured records:")
    print(
        f"  roofline:   median |error| {sr['median_abs_error']:.1%}, p90 {sr['p90_abs_error']:.1%}, "
        f"lower bound in {sr['lower_bound_share']:.0%} of records"
    )
    print(f"  calibrated: median |error| {sc['median_abs_error']:.1%}, p90 {sc['p90_abs_error']:.1%}")
    assert sr["records"] >= 50
    # the roofline is a lower bound on time (in at least 95 % of records)
    assert sr["lower_bound_share"] >= 0.95
    assert (roof.predicted > 0).all() and (cal.predicted > 0).all()
    # calibrated targets on the data at hand
    assert sc["median_abs_error"] <= 0.15
    assert sc["p90_abs_error"] <= 0.35
    with pytest.raises(ValueError, match="mode"):
        v.validate("fitted")
