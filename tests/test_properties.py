"""Property-based tests: any config and settings give finite, non-negative results whose totals are
the sums of their rows — or a ValueError. Never another exception, a NaN or a hang.

Configs are data only: nothing is executed from them (no trust_remote_code)."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llmroof_widgets as lr

HW = lr.Hardware(name="prop", memory_bytes=80e9, memory_bandwidth=2e12, peak_flops={"fp16": 1e15, "int8": 2e15})

FAMILIES = [
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "phi3",
    "gpt2",
    "opt",
    "mixtral",
    "qwen2_moe",
    "qwen3_moe",
    "olmoe",
    "deepseek_v2",
    "deepseek_v3",
    "gpt_oss",
    "phi",
    "phimoe",
    "gemma3_text",
]

small = st.integers(min_value=1, max_value=64)
maybe_bad = st.one_of(small, st.integers(min_value=-4, max_value=0), st.none(), st.just("x"), st.floats(0.5, 3.5))


@st.composite
def configs(draw):
    heads = draw(st.integers(1, 8))
    kv = draw(st.sampled_from([h for h in range(1, heads + 1) if heads % h == 0]))
    d = draw(st.sampled_from([4, 8, 16]))
    layers = draw(st.integers(1, 6))
    cfg = {
        "model_type": draw(st.sampled_from(FAMILIES)),
        "hidden_size": heads * d * draw(st.sampled_from([1, 2])),
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "intermediate_size": draw(st.integers(1, 96)),
        "vocab_size": draw(st.integers(1, 500)),
        "max_position_embeddings": 4096,
        "n_positions": 4096,
        "ffn_dim": draw(st.integers(1, 96)),
        "num_local_experts": draw(st.integers(1, 8)),
        "num_experts": draw(st.integers(1, 8)),
        "n_routed_experts": draw(st.integers(1, 8)),
        "num_experts_per_tok": draw(st.integers(1, 3)),
        "moe_intermediate_size": draw(st.integers(1, 32)),
        "shared_expert_intermediate_size": draw(st.integers(0, 32)),
        "n_shared_experts": draw(st.integers(0, 2)),
        "first_k_dense_replace": draw(st.integers(0, 2)),
        "kv_lora_rank": draw(st.integers(1, 32)),
        "q_lora_rank": draw(st.one_of(st.none(), st.integers(1, 32))),
        "qk_rope_head_dim": draw(st.integers(1, 8)),
        "qk_nope_head_dim": draw(st.integers(1, 8)),
        "v_head_dim": draw(st.integers(1, 8)),
        "tie_word_embeddings": draw(st.booleans()),
        "attention_bias": draw(st.booleans()),
        "partial_rotary_factor": draw(st.sampled_from([0.25, 0.5, 1.0])),
    }
    if draw(st.booleans()):
        cfg["head_dim"] = draw(st.sampled_from([4, 8, 12]))
    if draw(st.booleans()):
        cfg["sliding_window"] = draw(st.integers(1, 64))
    if draw(st.booleans()):
        cfg["layer_types"] = [draw(st.sampled_from(["full_attention", "sliding_attention"])) for _ in range(layers)]
    # corrupt a field now and then: the engine must answer with a ValueError
    if draw(st.integers(0, 4)) == 0:
        key = draw(st.sampled_from(sorted(cfg)))
        cfg[key] = draw(maybe_bad)
    return cfg


def _finite_nonneg(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x >= 0


def _assert_consistent(d: dict, bounds=("compute", "memory")) -> None:
    """Every figure finite and non-negative, phase totals = Σ count × row, e2e = TTFT + the decode steps."""
    for phase in ("prefill", "decode"):
        ph = d[phase]
        for o in ph["ops"]:
            for k in (
                "flops",
                "matmul_flops",
                "bytes",
                "time_s",
                "arithmetic_intensity",
                "weight_bytes",
                "activation_bytes",
                "kv_bytes",
                "host_bytes",
                "communication_time_s",
            ):
                assert _finite_nonneg(o[k]), (phase, o["name"], k, o[k])
            assert o["bound"] in bounds
            assert o["matmul_flops"] <= o["flops"] + 1e-6
        assert math.isclose(ph["flops"], sum(o["count"] * o["flops"] for o in ph["ops"]), rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(ph["bytes"], sum(o["count"] * o["bytes"] for o in ph["ops"]), rel_tol=1e-9, abs_tol=1e-9)
        ops_t = sum(o["count"] * o["time_s"] for o in ph["ops"]) + ph.get("host_overhead_s", 0.0)
        assert math.isclose(ph["time_s"], ops_t, rel_tol=1e-9, abs_tol=1e-18)
    g = d["generation"]
    assert all(_finite_nonneg(x) for x in g["decode_step_times_s"])
    for k in ("ttft_s", "tpot_s", "e2e_s", "tokens_per_s", "throughput_tokens_per_s"):
        assert _finite_nonneg(g[k]), k
    assert math.isclose(g["e2e_s"], g["ttft_s"] + sum(g["decode_step_times_s"]), rel_tol=1e-9)
    m = d["memory"]
    for k in ("weights_bytes", "kv_cache_bytes", "activations_bytes", "total_bytes"):
        assert _finite_nonneg(m[k]), k
    assert d["model"]["params_total"] >= d["model"]["params_active"] > 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cfg=configs(),
    batch=maybe_bad,
    prompt=maybe_bad,
    gen=st.one_of(st.integers(1, 40), st.integers(-2, 0)),
    w=st.sampled_from([4, 8, 16, 32, 3]),
    a=st.sampled_from([8, 16, 32]),
    kv=st.sampled_from([4, 8, 16]),
    logits=st.sampled_from(["last", "all"]),
    attention=st.sampled_from(["causal", "full"]),
    mla=st.sampled_from(["absorbed", "naive"]),
)
def test_results_are_finite_and_consistent_or_value_error(cfg, batch, prompt, gen, w, a, kv, logits, attention, mla):
    try:
        r = lr.analyze(
            cfg,
            HW,
            batch_size=batch,
            prompt_len=prompt,
            gen_len=gen,
            w_bits=w,
            a_bits=a,
            kv_bits=kv,
            logits=logits,
            attention=attention,
            mla=mla,
        )
    except ValueError:
        return
    _assert_consistent(r.to_dict())


HW_LINKED = lr.Hardware(
    name="prop-linked",
    memory_bytes=80e9,
    memory_bandwidth=2e12,
    peak_flops={"fp16": 1e15, "int8": 2e15, "fp8": 2e15},
    interconnect_bandwidth=4.5e11,
    interconnect_latency_s=1e-6,
    host_link_bandwidth=6.4e10,
    onchip_bytes_per_sm=228 * 1024,
    structured_sparsity=True,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cfg=configs(),
    batch=st.integers(1, 16),
    prompt=st.integers(1, 300),
    gen=st.integers(1, 30),
    w=st.sampled_from([4, 8, 16, "fp8_e4m3", "nf4", "q4_0", "int4"]),
    a=st.sampled_from([8, 16, "fp8_e5m2"]),
    group=st.sampled_from([None, 32, 128]),
    flash=st.sampled_from(["off", "ideal", "tiled"]),
    fused=st.booleans(),
    keep=st.sampled_from([1.0, 0.5, 0.1]),
    budget=st.sampled_from([None, 8]),
    spec=st.sampled_from([None, (0, 0.5), (3, 0.7), (2, 1.0)]),
    early=st.sampled_from([1.0, 0.6]),
    sparsity=st.sampled_from([None, "2:4", 0.5]),
    offload=st.sampled_from([None, {"weights": 0.5}, {"kv_cache": 1.0}]),
    tp=st.sampled_from([1, 1, 1, 2, 4]),
    pp=st.sampled_from([1, 1, 2]),
    ep=st.sampled_from([1, 1, 1, 2]),
    eff=st.sampled_from([None, "calibrated", {"compute": 0.5, "memory": 0.9}]),
)
def test_technique_knobs_stay_finite_or_value_error(
    cfg, batch, prompt, gen, w, a, group, flash, fused, keep, budget, spec, early, sparsity, offload, tp, pp, ep, eff
):
    sp = None if spec is None else lr.Speculative(draft="mtp", gamma=spec[0], acceptance=spec[1])
    try:
        r = lr.analyze(
            cfg,
            HW_LINKED,
            batch_size=batch,
            prompt_len=prompt,
            gen_len=gen,
            w_bits=w,
            a_bits=a,
            group_size=group,
            flash_attention=flash,
            fused=fused,
            kv_keep_ratio=keep,
            kv_budget=budget,
            speculative=sp,
            early_exit_fraction=early,
            sparsity=sparsity,
            offload=offload,
            tp=tp,
            pp=pp,
            ep=ep,
            efficiency=eff,
        )
    except ValueError:
        return
    _assert_consistent(r.to_dict(), bounds=("compute", "memory", "communication"))
