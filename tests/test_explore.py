"""Sweeps, comparisons and the hardware chooser agree with analyze()."""

from __future__ import annotations

import math

import pytest

import llmroof_widgets as lr


def test_sweep_rows_equal_analyze():
    df = lr.sweep(
        "llama-2-7b",
        "a100-80gb-sxm",
        batch_size=[1, 16],
        prompt_len=[100, 1000],
        gen_len=[1, 2, 50],
        w_bits=[16, "int4"],
        flash_attention=["off", "tiled"],
    )
    assert len(df) == 2 * 2 * 3 * 2 * 2
    for c in (
        "batch_size",
        "prompt_len",
        "gen_len",
        "w_bits",
        "flash_attention",
        "ttft_s",
        "tpot_s",
        "e2e_s",
        "throughput_tokens_per_s",
        "weights_bytes",
        "kv_cache_bytes",
        "total_bytes",
        "fits",
    ):
        assert c in df.columns
    for _, row in df.iterrows():
        r = lr.analyze(
            "llama-2-7b",
            "a100-80gb-sxm",
            batch_size=int(row.batch_size),
            prompt_len=int(row.prompt_len),
            gen_len=int(row.gen_len),
            w_bits=row.w_bits,
            flash_attention=row.flash_attention,
        )
        for k in ("ttft_s", "tpot_s", "e2e_s", "tokens_per_s", "throughput_tokens_per_s"):
            assert row[k] == pytest.approx(r.generation[k], rel=1e-9), k
        for k in ("weights_bytes", "kv_cache_bytes", "activations_bytes", "total_bytes", "max_batch_size"):
            assert row[k] == pytest.approx(r.memory[k], rel=1e-9), k
        assert bool(row.fits) == r.memory["fits"]


def test_sweep_moe_and_speculative_fallback():
    df = lr.sweep(
        "mixtral-8x7b",
        "h100-sxm",
        batch_size=[1, 8],
        prompt_len=512,
        gen_len=17,
        tp=[1, 2],
        speculative=[None, lr.Speculative(draft="mtp", gamma=3, acceptance=0.6)],
    )
    assert len(df) == 8
    row = df[(df.batch_size == 8) & (df.tp == 2) & df.speculative.notna()].iloc[0]
    r = lr.analyze(
        "mixtral-8x7b",
        "h100-sxm",
        batch_size=8,
        prompt_len=512,
        gen_len=17,
        tp=2,
        speculative=lr.Speculative(draft="mtp", gamma=3, acceptance=0.6),
    )
    assert row.tpot_s == pytest.approx(r.generation["tpot_s"])


def test_sweep_bad_input():
    with pytest.raises(ValueError, match="prompt_len"):
        lr.sweep("gpt2", "h100-sxm", prompt_len=[10, 0])
    with pytest.raises(ValueError, match="unknown setting"):
        lr.sweep("gpt2", "h100-sxm", batchsize=[1])


def test_compare_teacher_and_student():
    c = lr.compare(
        {"model": "llama-3.1-70b"},
        {"model": "llama-3.1-8b"},
        hardware="h100-sxm",
        batch_size=1,
        prompt_len=512,
        gen_len=64,
        labels=("teacher", "student"),
    )
    t = c.totals.set_index("quantity")
    assert t.loc["tpot_s", "ratio"] < 0.2  # the 8B student decodes far faster
    assert t.loc["params_total", "teacher"] > 7e10
    ops = c.operators
    q = ops[(ops.phase == "decode") & (ops.name == "q_proj")].iloc[0]
    assert q["time_s_student"] < q["time_s_teacher"]
    assert "teacher" in c._repr_html_()


def test_choose_hardware_ranks_and_marks_what_does_not_fit():
    df = lr.choose_hardware(
        "llama-3.1-70b",
        {"batch_size": 8, "prompt_len": 1024, "gen_len": 256},
        devices=["h100-sxm", "a100-80gb-sxm", "rtx-4090", "l4", "h200-sxm"],
        objective="tpot",
        counts=(1, 2, 4),
    )
    assert list(df.columns[:4]) == ["device", "name", "count", "fits"]
    fits = df[df.fits]
    assert list(fits.tpot_s) == sorted(fits.tpot_s)
    # 141 GB of weights: one H200 (141 GB) cannot hold it with its KV cache; two can
    h200 = df[df.device == "h200-sxm"].iloc[0]
    assert h200["count"] == 2 and h200.fits
    assert df.iloc[0].fits
    rtx = df[df.device == "rtx-4090"].iloc[0]
    assert not rtx.fits  # 4 × 24 GB is not enough
    thr = lr.choose_hardware(
        "llama-3.1-8b", {"batch_size": 32}, devices=["h100-sxm", "a100-80gb-sxm"], objective="throughput"
    )
    assert thr.iloc[0].device == "h100-sxm"
    cost = lr.choose_hardware(
        "llama-3.1-8b", {}, devices=["h100-sxm", "l4"], objective="cost", prices={"h100-sxm": 3.0, "l4": 0.8}
    )
    assert all(math.isfinite(x) for x in cost.cost)
    with pytest.raises(ValueError, match="objective"):
        lr.choose_hardware("gpt2", {}, objective="fastest")
