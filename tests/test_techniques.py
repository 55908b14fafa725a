"""The survey's techniques as knobs: a hand-derived expectation per knob, limits and monotonicity.

Tiny Llama (h=64, 2 layers, 4 heads, 2 KV heads, d=16, MLP 128, vocab 100) on a toy device whose
numbers make hand arithmetic easy.
"""

from __future__ import annotations

import math

import pytest

import llmroof_widgets as lr

TINY = {
    "model_type": "llama",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "vocab_size": 100,
    "tie_word_embeddings": False,
}
HW = lr.Hardware(
    name="toy",
    memory_bytes=1e9,
    memory_bandwidth=1e9,
    peak_flops={"fp16": 1e12, "int8": 2e12, "fp8": 2e12},
    vector_flops=1e11,
    interconnect_bandwidth=1e8,
    interconnect_latency_s=1e-6,
    host_link_bandwidth=1e8,
    onchip_bytes_per_sm=2048,
    structured_sparsity=True,
)


def run(**kw):
    kw.setdefault("batch_size", 2)
    kw.setdefault("prompt_len", 8)
    kw.setdefault("gen_len", 4)
    return lr.analyze(dict(TINY), HW, **kw)


def same_row(a, b):
    return {k: v for k, v in a.items() if k != "share"} == {k: v for k, v in b.items() if k != "share"}


def ops(phase, name=None):
    d = {o["name"]: o for o in phase["ops"]}
    return d if name is None else d[name]


def test_defaults_equal_the_plain_analysis():
    plain = run().to_dict()
    knobs = run(
        group_size=None,
        flash_attention="off",
        fused=False,
        kv_keep_ratio=1.0,
        speculative=None,
        early_exit_fraction=1.0,
        sparsity=None,
        offload=None,
        tp=1,
        pp=1,
        ep=1,
        efficiency=None,
    ).to_dict()
    assert plain == knobs


# ---- quantization ----------------------------------------------------------------------------


def test_group_quantization_overhead():
    r = ops(run(w_bits=4, group_size=128).to_dict()["decode"], "q_proj")
    bits = 4 + (16 + 4) / 128  # fp16 scale + 4-bit zero point per group of 128
    assert 4.125 <= bits <= 4.25
    assert r["weight_bytes"] == pytest.approx(64 * 64 * bits / 8)
    nf4 = ops(run(w_bits="nf4", group_size=64).to_dict()["decode"], "q_proj")
    assert nf4["weight_bytes"] == pytest.approx(64 * 64 * (4 + 16 / 64) / 8)


def test_format_names_and_peaks():
    a100 = lr.load_hardware("a100-80gb-sxm")  # no fp8 units
    h100 = lr.load_hardware("h100-sxm")
    w4 = ops(lr.analyze(dict(TINY), a100, w_bits="int4").to_dict()["decode"], "q_proj")
    assert w4["peak_dtype"] == "fp16"  # weight-only int4 computes in fp16
    w8a8 = ops(lr.analyze(dict(TINY), a100, w_bits="int8", a_bits="int8").to_dict()["decode"], "q_proj")
    assert w8a8["peak_dtype"] == "int8" and w8a8["peak_flops"] == a100.peak_flops["int8"]
    fp8_a100 = ops(lr.analyze(dict(TINY), a100, w_bits="fp8_e4m3", a_bits="fp8_e4m3").to_dict()["decode"], "q_proj")
    assert fp8_a100["peak_dtype"] == "fp16"  # A100 has no fp8 units
    fp8_h100 = ops(lr.analyze(dict(TINY), h100, w_bits="fp8_e4m3", a_bits="fp8_e5m2").to_dict()["decode"], "q_proj")
    assert fp8_h100["peak_dtype"] == "fp8" and fp8_h100["peak_flops"] == h100.peak_flops["fp8"]
    with pytest.raises(ValueError, match="w_bits"):
        run(w_bits="int3")
    with pytest.raises(ValueError, match="group_size"):
        run(w_bits=4, group_size=0)


def test_quantized_checkpoint_config_is_read():
    m = lr.load_model("deepseek-v3")
    assert m.quantization and m.quantization["quant_method"] == "fp8"


# ---- FlashAttention and fusion ---------------------------------------------------------------


def test_flash_attention_ideal_reads_qkv_once():
    d = run(flash_attention="ideal").to_dict()
    fa = ops(d["prefill"], "flash_attention")
    plain = ops(run().to_dict()["prefill"])
    B, T, H, Hkv, dd = 2, 8, 2 * 2, 2, 16
    assert fa["flops"] == plain["attn_score"]["flops"] + plain["attn_softmax"]["flops"] + plain["attn_value"]["flops"]
    q, o = B * T * H * dd * 2, B * T * H * dd * 2
    kv = 2 * B * Hkv * T * dd * 2  # K and V of the 8 prompt tokens, read once
    assert fa["bytes"] == q + o + kv  # no B·H·S² score traffic
    assert "attn_score" not in ops(d["prefill"])


def test_flash_attention_tiled_rereads_kv_per_query_tile():
    d = run(prompt_len=64, batch_size=1, flash_attention="tiled").to_dict()
    fa = ops(d["prefill"], "flash_attention")
    # M = 2048 B on chip = 1024 fp16 elements; Bc = ⌈1024 / (4·16)⌉ = 16, Br = min(16, d=16) = 16
    # 2 query heads per KV head packed: 64·2 = 128 rows → 8 tiles; causal: pairs/T = 65/2 keys per query
    tiles, keys = 8, 64
    factor = max(1.0, tiles * (65 / 2) / keys)
    kv_once = 2 * 1 * 2 * 64 * 16 * 2
    q_o = 2 * 1 * 64 * 4 * 16 * 2
    assert fa["bytes"] == pytest.approx(q_o + kv_once * factor)
    ideal = ops(run(prompt_len=64, batch_size=1, flash_attention="ideal").to_dict()["prefill"], "flash_attention")
    assert fa["bytes"] > ideal["bytes"]


def test_fused_elementwise_ops_move_no_activation_bytes():
    fused = ops(run(fused=True).to_dict()["prefill"])
    plain = ops(run().to_dict()["prefill"])
    assert fused["attn_residual"]["bytes"] == 0
    assert fused["attn_norm"]["bytes"] == 64 * 2  # its weights only
    assert fused["attn_norm"]["flops"] == plain["attn_norm"]["flops"]
    assert same_row(fused["q_proj"], plain["q_proj"])


# ---- KV compression ---------------------------------------------------------------------------


def test_kv_keep_ratio_cuts_memory_and_decode_traffic():
    full = run(prompt_len=100, gen_len=1).to_dict()
    half = run(prompt_len=100, gen_len=1, kv_keep_ratio=0.5).to_dict()
    assert half["memory"]["kv_cache_bytes"] == pytest.approx(full["memory"]["kv_cache_bytes"] / 2)
    # decode attends 0.5 · 101 keys
    assert ops(half["decode"], "attn_score")["kv_bytes"] == pytest.approx(2 * 2 * 50.5 * 16 * 2)
    assert half["prefill"] == full["prefill"]  # eviction happens after the prefill
    budget = run(prompt_len=100, gen_len=1, kv_budget=10).to_dict()
    assert ops(budget["decode"], "attn_score")["kv_bytes"] == pytest.approx(2 * 2 * 10 * 16 * 2)


# ---- speculative decoding ----------------------------------------------------------------------


def test_speculative_expected_tokens_and_limits():
    s = lr.Speculative(draft="mtp", gamma=4, acceptance=0.8)
    assert s.tokens_per_round == pytest.approx((1 - 0.8**5) / (1 - 0.8))
    assert lr.Speculative(gamma=3, acceptance=1.0).tokens_per_round == 4
    plain = run(gen_len=33).to_dict()
    g0 = run(gen_len=33, speculative=lr.Speculative(draft="mtp", gamma=0, acceptance=0.5)).to_dict()
    assert g0["generation"]["e2e_s"] == pytest.approx(plain["generation"]["e2e_s"])
    assert g0["generation"]["tpot_s"] == pytest.approx(plain["generation"]["tpot_s"])


def test_speculative_round_cost_by_hand():
    """A memory-bound decode: verifying 5 tokens costs about one step, so TPOT falls by ~tokens/round."""
    big = "llama-2-7b"
    hw = lr.load_hardware("a100-80gb-sxm")
    plain = lr.analyze(big, hw, prompt_len=512, gen_len=257)
    spec = lr.analyze(
        big, hw, prompt_len=512, gen_len=257, speculative=lr.Speculative(draft="mtp", gamma=4, acceptance=0.8)
    )
    tau = (1 - 0.8**5) / 0.2
    g = spec.generation
    assert g["speculative_tokens_per_round"] == pytest.approx(tau)
    rounds = math.ceil(256 / tau)
    assert len(spec.decode_step_times_s) == rounds
    assert g["tpot_s"] < plain.generation["tpot_s"] / 2
    assert g["ttft_s"] > plain.generation["ttft_s"]  # the MTP head also reads the prompt
    assert spec.memory["draft_bytes"] > 0
    with pytest.raises(ValueError, match="acceptance"):
        run(speculative=lr.Speculative(gamma=2, acceptance=1.5))


def test_speculative_with_a_catalog_draft():
    r = lr.analyze(
        "llama-3.1-8b",
        "h100-sxm",
        prompt_len=256,
        gen_len=65,
        speculative=lr.Speculative(draft="llama-3.2-1b", gamma=3, acceptance=0.7),
    )
    assert r.memory["draft_bytes"] > 2 * 1.2e9  # the 1.2 B draft's weights + its KV cache
    assert r.generation["tpot_s"] > 0


# ---- early exit, sparsity ----------------------------------------------------------------------


def test_early_exit_scales_decode_layers():
    half = run(early_exit_fraction=0.5).to_dict()
    plain = run().to_dict()
    assert ops(half["decode"], "q_proj")["count"] == 1  # 2 layers × 0.5
    assert same_row(ops(half["decode"], "lm_head"), ops(plain["decode"], "lm_head"))
    assert half["prefill"]["flops"] == plain["prefill"]["flops"]
    assert half["decode"]["flops"] < plain["decode"]["flops"]


def test_sparsity_2_4_and_unstructured():
    dense = ops(run().to_dict()["decode"], "q_proj")
    s24 = ops(run(sparsity="2:4").to_dict()["decode"], "q_proj")
    # half the fp16 weights + 1 bit of index per original weight
    assert s24["weight_bytes"] == pytest.approx(64 * 64 * (0.5 * 2 + 1 / 8))
    assert s24["peak_flops"] == 2 * dense["peak_flops"]  # sparse tensor cores on this device
    un = ops(run(sparsity=0.75).to_dict()["decode"], "q_proj")
    assert un["weight_bytes"] == pytest.approx(64 * 64 * (0.25 * 2 + 1 / 8))
    assert un["peak_flops"] == dense["peak_flops"]  # no compute speed-up
    v100 = ops(lr.analyze(dict(TINY), "v100-sxm2-32gb", sparsity="2:4").to_dict()["decode"], "q_proj")
    assert v100["peak_flops"] == lr.load_hardware("v100-sxm2-32gb").peak_flops["fp16"]


# ---- offloading --------------------------------------------------------------------------------


def test_offloaded_weights_stream_over_the_host_link():
    r = run(offload={"weights": 0.5}).to_dict()
    q = ops(r["decode"], "q_proj")
    assert q["host_bytes"] == pytest.approx(0.5 * 64 * 64 * 2)
    assert q["host_time_s"] == pytest.approx(0.5 * 64 * 64 * 2 / 1e8)
    assert q["time_s"] == pytest.approx(max(q["compute_time_s"], q["memory_time_s"], q["host_time_s"]))
    plain = run().to_dict()
    assert r["memory"]["weights_bytes"] == pytest.approx(plain["memory"]["weights_bytes"] / 2)
    kv = run(offload={"kv_cache": 1.0}).to_dict()
    assert kv["memory"]["kv_cache_bytes"] == 0
    assert kv["memory"]["host_kv_cache_bytes"] == plain["memory"]["kv_cache_bytes"]


# ---- parallelism -------------------------------------------------------------------------------


def test_tensor_parallel_shards_and_all_reduces():
    plain = run().to_dict()
    tp2 = run(tp=2).to_dict()
    assert ops(tp2["decode"], "q_proj")["flops"] == ops(plain["decode"], "q_proj")["flops"] / 2
    assert ops(tp2["decode"], "k_proj")["flops"] == ops(plain["decode"], "k_proj")["flops"] / 2
    ar = ops(tp2["decode"], "attn_allreduce")
    msg = 2 * 64 * 2  # B tokens × h × 2 bytes
    assert ar["bound"] == "communication" and ar["count"] == 2
    assert ar["time_s"] == pytest.approx(2 * (2 - 1) / 2 * msg / 1e8 + 2 * (2 - 1) * 1e-6)
    assert tp2["model"]["params_total"] == plain["model"]["params_total"]
    assert tp2["memory"]["kv_cache_bytes"] == pytest.approx(plain["memory"]["kv_cache_bytes"] / 2)
    # 4 devices > 2 KV heads: KV heads replicated, one per device
    tp4 = run(tp=4).to_dict()
    assert ops(tp4["decode"], "k_proj")["flops"] == 2 * 2 * 64 * 16
    with pytest.raises(ValueError, match="tp"):
        run(tp=3)


def test_pipeline_and_expert_parallel():
    pp2 = run(pp=2).to_dict()
    plain = run().to_dict()
    send = ops(pp2["decode"], "pp_send")
    assert send["count"] == 1 and send["bound"] == "communication"
    assert pp2["generation"]["tpot_s"] > plain["generation"]["tpot_s"]  # latency adds the hand-off
    assert pp2["generation"]["throughput_pipelined_tokens_per_s"] > plain["generation"]["throughput_tokens_per_s"]
    assert pp2["memory"]["weights_bytes"] < plain["memory"]["weights_bytes"]
    moe = dict(TINY, model_type="mixtral", num_local_experts=4, num_experts_per_tok=2)
    ep2 = lr.analyze(moe, HW, batch_size=4, prompt_len=8, gen_len=4, ep=2).to_dict()
    one = lr.analyze(moe, HW, batch_size=4, prompt_len=8, gen_len=4).to_dict()
    assert {"ep_dispatch", "ep_combine"} <= set(ops(ep2["decode"]))
    assert ops(ep2["decode"], "experts_gate_up")["flops"] == ops(one["decode"], "experts_gate_up")["flops"] / 2
    with pytest.raises(ValueError, match="ep"):
        run(ep=2)  # a dense model


def test_efficiency_factors_scale_the_roofs():
    plain = run().to_dict()
    eff = run(efficiency={"compute": 0.5, "memory": 0.8}).to_dict()
    for a, b in zip(plain["decode"]["ops"], eff["decode"]["ops"]):
        assert b["memory_time_s"] == pytest.approx(a["memory_time_s"] / 0.8)
        assert b["compute_time_s"] == pytest.approx(a["compute_time_s"] / 0.5)
    with pytest.raises(ValueError, match="efficiency"):
        run(efficiency={"compute": 0})
