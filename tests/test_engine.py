"""Hand-checked tests of single operators, the memory engine and the generation loop.

Every expected value is derived by hand in the test from the formula written next to it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import llmroof_widgets as lr
from llmroof_widgets.engine.ops import PassBuilder
from llmroof_widgets.engine.precision import Precision
from llmroof_widgets.engine.roofline import Roof, pass_time

# h=64, 2 layers, 4 query heads, 2 KV heads, head_dim 16, MLP 128, vocab 100: a tiny Llama
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
    name="toy", memory_bytes=1e9, memory_bandwidth=1e9, peak_flops={"fp16": 1e12, "int8": 2e12}, vector_flops=1e11
)
B, P, G = 2, 8, 4


def ops(phase):
    return {o["name"]: o for o in phase["ops"]}


@pytest.fixture(scope="module")
def tiny():
    return lr.analyze(dict(TINY), HW, batch_size=B, prompt_len=P, gen_len=G).to_dict()


def test_params_by_hand(tiny):
    h, I, V, d = 64, 128, 100, 16
    per_layer = h * 4 * d + 2 * h * 2 * d + 4 * d * h + 3 * h * I + 2 * h  # q, k+v (2 KV heads), o, MLP, 2 norms
    total = V * h + 2 * per_layer + h + V * h  # embeddings, layers, final norm, untied lm_head
    assert tiny["model"]["params_total"] == total == 86848
    assert tiny["model"]["params_active"] == total


def test_projection_rows_prefill(tiny):
    o = ops(tiny["prefill"])
    n = B * P  # 16 tokens
    q = o["q_proj"]
    assert q["flops"] == 2 * n * 64 * 64  # 2·N·in·out
    assert q["bytes"] == 64 * 64 * 2 + n * 64 * 2 + n * 64 * 2  # weights + input + output (fp16)
    assert q["count"] == 2
    k = o["k_proj"]
    assert k["flops"] == 2 * n * 64 * 32  # 2 KV heads × 16
    assert k["kv_bytes"] == n * 32 * 2  # the output goes to the KV cache
    assert k["arithmetic_intensity"] == pytest.approx(k["flops"] / k["bytes"])


def test_attention_rows_causal_and_full():
    causal = ops(lr.analyze(dict(TINY), HW, batch_size=B, prompt_len=P, gen_len=G).to_dict()["prefill"])
    full = ops(lr.analyze(dict(TINY), HW, batch_size=B, prompt_len=P, gen_len=G, attention="full").to_dict()["prefill"])
    # causal: query i attends i keys → 8·9/2 = 36 pairs per head; full: 8·8 = 64
    assert causal["attn_score"]["flops"] == 2 * B * 4 * 16 * 36
    assert full["attn_score"]["flops"] == 2 * B * 4 * 16 * 64
    assert causal["attn_value"]["flops"] == 2 * B * 4 * 16 * 36
    assert causal["attn_softmax"]["flops"] == 5 * B * 4 * 36  # 5 FLOPs per score


def test_decode_first_step(tiny):
    d = tiny["decode"]
    assert d["context"] == P + 1
    o = ops(d)
    # one new token attends 8 cached + itself = 9 keys
    assert o["attn_score"]["flops"] == 2 * B * 4 * 16 * 9
    assert o["attn_score"]["kv_bytes"] == B * 2 * 9 * 16 * 2  # K of 2 KV heads, 9 keys, fp16
    assert o["lm_head"]["flops"] == 2 * B * 64 * 100
    # decode moves all weights once: every linear row is memory-bound on this device
    assert o["q_proj"]["bound"] == "memory"


def test_logits_all_vs_last():
    last = ops(lr.analyze(dict(TINY), HW, batch_size=B, prompt_len=P, gen_len=G).to_dict()["prefill"])
    allp = ops(lr.analyze(dict(TINY), HW, batch_size=B, prompt_len=P, gen_len=G, logits="all").to_dict()["prefill"])
    assert last["lm_head"]["flops"] == 2 * B * 64 * 100
    assert allp["lm_head"]["flops"] == 2 * B * P * 64 * 100


def test_totals_are_sums_of_rows(tiny):
    for phase in ("prefill", "decode"):
        ph = tiny[phase]
        assert ph["flops"] == pytest.approx(sum(o["count"] * o["flops"] for o in ph["ops"]))
        assert ph["bytes"] == pytest.approx(sum(o["count"] * o["bytes"] for o in ph["ops"]))
        assert ph["time_s"] == pytest.approx(sum(o["count"] * o["time_s"] for o in ph["ops"]))
        assert sum(o["share"] for o in ph["ops"]) == pytest.approx(1.0)


def test_roofline_time_and_bound_per_row(tiny):
    for o in tiny["prefill"]["ops"] + tiny["decode"]["ops"]:
        peak = 1e11 if o["peak_dtype"] == "vector" else 1e12
        assert o["time_s"] == pytest.approx(max(o["flops"] / peak, o["bytes"] / 1e9))
        assert o["bound"] == ("compute" if o["flops"] / peak >= o["bytes"] / 1e9 and o["flops"] > 0 else "memory")


def test_memory_by_hand(tiny):
    mem = tiny["memory"]
    assert mem["weights_bytes"] == 86848 * 2
    # after the last step the cache holds P + G − 1 = 11 tokens: 2 layers × (K+V of 2 heads × 16) per token
    assert mem["kv_cache_bytes"] == B * 2 * (2 * 2 * 16) * (P + G - 1) * 2
    assert mem["total_bytes"] == pytest.approx(mem["weights_bytes"] + mem["kv_cache_bytes"] + mem["activations_bytes"])
    assert mem["fits"] is True
    assert mem["capacity_bytes"] == 1e9


def test_max_batch_size_is_the_limit():
    hw = lr.Hardware(name="small", memory_bytes=20e9, memory_bandwidth=1e12, peak_flops={"fp16": 1e14})
    r = lr.analyze("llama-2-7b", hw, batch_size=1, prompt_len=1024, gen_len=1024)
    mb = r.memory["max_batch_size"]
    assert mb >= 1
    assert lr.analyze("llama-2-7b", hw, batch_size=mb, prompt_len=1024, gen_len=1024).memory["fits"]
    assert not lr.analyze("llama-2-7b", hw, batch_size=mb + 1, prompt_len=1024, gen_len=1024).memory["fits"]


def test_generation_metrics(tiny):
    g = tiny["generation"]
    steps = g["decode_step_times_s"]
    assert len(steps) == G - 1
    assert g["decode_contexts"] == [P + 1 + j for j in range(G - 1)]
    assert g["ttft_s"] == tiny["prefill"]["time_s"]
    assert g["e2e_s"] == pytest.approx(g["ttft_s"] + sum(steps))
    assert g["tpot_s"] == pytest.approx((g["e2e_s"] - g["ttft_s"]) / (G - 1))
    assert g["tokens_per_s"] == pytest.approx(G / g["e2e_s"])
    assert g["throughput_tokens_per_s"] == pytest.approx(B * G / g["e2e_s"])
    assert steps[0] == pytest.approx(tiny["decode"]["time_s"])


def test_vectorized_steps_equal_single_step_analyses():
    m = lr.load_model("llama-2-7b")
    hw = lr.load_hardware("a100-80gb-sxm")
    r = lr.analyze(m, hw, batch_size=4, prompt_len=100, gen_len=50)
    prec = Precision(16, 16, 16)
    for j in (0, 7, 48):
        rows = PassBuilder(
            m, prec, batch=4, tokens=1, cached=100 + j, logits_tokens=1, attention="causal", mla="absorbed"
        ).build()
        assert r.decode_step_times_s[j] == pytest.approx(float(pass_time(rows, Roof(hw))), rel=1e-12)
    assert np.all(np.diff(r.decode_step_times_s) >= 0)  # the cache only grows


def test_single_generated_token():
    r = lr.analyze(dict(TINY), HW, batch_size=1, prompt_len=8, gen_len=1).to_dict()
    g = r["generation"]
    assert g["decode_step_times_s"] == []
    assert g["e2e_s"] == g["ttft_s"]
    assert g["tpot_s"] == r["decode"]["time_s"]  # documented: the next token's cost


def test_sliding_window_counts():
    cfg = dict(TINY, model_type="mistral", sliding_window=4)
    r = lr.analyze(cfg, HW, batch_size=1, prompt_len=8, gen_len=4).to_dict()
    pre = ops(r["prefill"])
    # causal with a window of 4: Σ min(i, 4) for i = 1..8 = 1+2+3+4·5 = 26 pairs per head
    assert pre["attn_score"]["flops"] == 2 * 1 * 4 * 16 * 26
    dec = ops(r["decode"])
    assert dec["attn_score"]["flops"] == 2 * 1 * 4 * 16 * 4  # 4 keys, not 9
    # transformers keeps the last window − 1 = 3 tokens per window layer
    assert r["memory"]["kv_cache_bytes"] == 1 * 2 * 64 * 3 * 2


def test_head_dim_from_config_not_hidden_over_heads():
    cfg = dict(TINY, head_dim=32)  # 4 heads × 32 = 128 ≠ hidden 64 (as in Gemma, Qwen3)
    o = ops(lr.analyze(cfg, HW, batch_size=1, prompt_len=8, gen_len=2).to_dict()["decode"])
    assert o["q_proj"]["flops"] == 2 * 1 * 64 * 128
    assert o["o_proj"]["flops"] == 2 * 1 * 128 * 64
    assert o["attn_score"]["flops"] == 2 * 1 * 4 * 32 * 9


def test_biases_and_tied_embeddings():
    cfg = dict(TINY, model_type="qwen2", tie_word_embeddings=True)  # q/k/v biases, tied lm_head
    r = lr.analyze(cfg, HW, batch_size=1, prompt_len=8, gen_len=2)
    d = r.to_dict()
    o = ops(d["prefill"])
    assert o["q_proj"]["flops"] == 2 * 8 * 64 * 64 + 8 * 64  # + N·out bias adds
    assert o["q_proj"]["matmul_flops"] == 2 * 8 * 64 * 64
    base = lr.analyze(dict(TINY), HW, batch_size=1, prompt_len=8, gen_len=2).params_total
    # tied: one V×h table fewer; biases: q (64) + k (32) + v (32) per layer
    assert r.params_total == base - 100 * 64 + 2 * (64 + 32 + 32)


def test_quantized_weights_bytes_and_peak():
    w4 = ops(lr.analyze(dict(TINY), HW, batch_size=1, prompt_len=8, gen_len=2, w_bits=4).to_dict()["decode"])
    assert w4["q_proj"]["weight_bytes"] == 64 * 64 * 0.5
    assert w4["q_proj"]["peak_dtype"] == "fp16"  # weight-only int4 still computes in fp16
    assert w4["lm_head"]["weight_bytes"] == 64 * 100 * 2  # lm_head stays 16-bit
    w8a8 = ops(
        lr.analyze(dict(TINY), HW, batch_size=1, prompt_len=8, gen_len=2, w_bits=8, a_bits=8).to_dict()["decode"]
    )
    assert w8a8["q_proj"]["peak_dtype"] == "int8"
    assert w8a8["q_proj"]["peak_flops"] == 2e12
    kv8 = lr.analyze(dict(TINY), HW, batch_size=1, prompt_len=8, gen_len=4, kv_bits=8).to_dict()
    assert kv8["memory"]["kv_cache_bytes"] == 2 * 64 * 11 * 1


def test_moe_expected_experts_streamed():
    cfg = dict(TINY, model_type="mixtral", num_local_experts=8, num_experts_per_tok=2)
    for batch in (1, 2, 64):
        o = ops(lr.analyze(cfg, HW, batch_size=batch, prompt_len=8, gen_len=2).to_dict()["decode"])
        e_eff = 8 * (1 - (1 - 2 / 8) ** batch)  # distinct experts touched by `batch` tokens
        assert o["experts_gate_up"]["weight_bytes"] == pytest.approx(e_eff * 64 * 256 * 2)
        assert o["experts_gate_up"]["flops"] == 2 * batch * 2 * 64 * 256  # top-2 experts per token
    r = lr.analyze(cfg, HW, batch_size=1, prompt_len=8, gen_len=2)
    expert = 3 * 64 * 128
    assert r.params_total - r.params_active == 2 * 6 * expert  # 6 of 8 experts idle per token, 2 layers


def test_unit_conventions_are_si(tiny):
    assert tiny["hardware"]["memory_bandwidth"] == 1e9
    assert tiny["hardware"]["peak_flops"]["fp16"] == 1e12
    assert all(isinstance(x, float) for x in tiny["generation"]["decode_step_times_s"])


# ---- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -3}, "batch_size"),
        ({"prompt_len": 0}, "prompt_len"),
        ({"gen_len": -1}, "gen_len"),
        ({"prompt_len": 1.5}, "prompt_len"),
        ({"batch_size": True}, "batch_size"),
        ({"w_bits": 5}, "w_bits"),
        ({"a_bits": 0}, "a_bits"),
        ({"kv_bits": "x"}, "kv_bits"),
        ({"logits": "some"}, "logits"),
        ({"attention": "sparse"}, "attention"),
        ({"mla": "fast"}, "mla"),
    ],
)
def test_bad_settings(kwargs, field):
    with pytest.raises(ValueError, match=field):
        lr.analyze(dict(TINY), HW, **kwargs)


def test_unknown_model_suggests_names():
    with pytest.raises(ValueError, match="llama-2-7b") as e:
        lr.load_model("llama-2-7")
    assert "config.json" in str(e.value)


def test_unknown_device_suggests_names():
    with pytest.raises(ValueError, match="h100-sxm"):
        lr.load_hardware("h100-sxn")


@pytest.mark.parametrize(
    "change,field",
    [
        ({"hidden_size": None}, "hidden_size"),
        ({"num_attention_heads": 0}, "num_attention_heads"),
        ({"num_key_value_heads": 3}, "num_key_value_heads"),
        ({"hidden_size": 66}, "hidden_size"),  # 66 not divisible by 4 heads and no head_dim
        ({"model_type": "rwkv"}, "model_type"),  # (mamba is supported: engine/families_ssm.py)
        ({"model_type": None}, "model_type"),
        ({"intermediate_size": -5}, "intermediate_size"),
        ({"hidden_act": "swoosh"}, "hidden_act"),
        ({"layer_types": ["full_attention", "linear_attention"]}, "layer_types"),
    ],
)
def test_bad_configs(change, field):
    cfg = dict(TINY)
    for k, v in change.items():
        if v is None:
            cfg.pop(k)
        else:
            cfg[k] = v
    with pytest.raises(ValueError, match=field):
        lr.analyze(cfg, HW)


def test_bad_hardware():
    with pytest.raises(ValueError, match="memory_bandwidth"):
        lr.Hardware(name="x", memory_bytes=1e9, memory_bandwidth=0, peak_flops={"fp16": 1e12})
    with pytest.raises(ValueError, match="peak_flops"):
        lr.Hardware(name="x", memory_bytes=1e9, memory_bandwidth=1e9, peak_flops={"fp13": 1e12})
    with pytest.raises(ValueError, match="peak_flops"):
        lr.Hardware(name="x", memory_bytes=1e9, memory_bandwidth=1e9, peak_flops={})


def test_load_model_from_path_and_dict(tmp_path):
    import json

    p = tmp_path / "m" / "config.json"
    p.parent.mkdir()
    p.write_text(json.dumps(TINY))
    assert lr.load_model(str(p)).hidden_size == 64
    assert lr.load_model(str(p.parent)).hidden_size == 64
    assert lr.load_model(TINY).num_layers == 2
    assert lr.load_model("META-LLAMA/LLAMA-2-7B-HF").name == "meta-llama/Llama-2-7b-hf"
    with pytest.raises(ValueError, match="not valid JSON"):
        bad = tmp_path / "bad.json"
        bad.write_text("{nope")
        lr.load_model(str(bad))


def test_hub_id_without_network_says_how_to_pass_a_file(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="config.json"):
        lr.load_model("someone/not-in-the-catalog-7b")


def test_catalogs():
    assert len(lr.list_models()) >= 20
    assert len(lr.list_hardware()) >= 25
    for did in ("a100-80gb-sxm", "h100-sxm", "rtx-4090", "apple-m2-ultra"):
        hw = lr.load_hardware(did)
        assert hw.memory_bytes > 0 and hw.memory_bandwidth > 0 and hw.peak_flops
    # dense, not sparsity-doubled: H100 SXM bf16 989.5 TFLOP/s
    assert lr.load_hardware("h100-sxm").peak_flops["bf16"] == pytest.approx(989.5e12)
    for name in lr.list_models():  # every catalog model analyses
        r = lr.analyze(name, "h100-sxm", prompt_len=128, gen_len=4)
        assert math.isfinite(r.generation["e2e_s"])
