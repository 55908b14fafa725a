"""Property-based tests: any config and settings give finite, non-negative results whose totals are
the sums of their rows and whose formulas evaluate to their figures — or a ValueError. Never another
exception, a NaN or a hang. Strategies are narrow enough that most examples are valid and reach the
assertions (one in four has one bad input, to exercise the ValueError paths); the last test asserts it.

Configs are data only: nothing is executed from them (no trust_remote_code)."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_formulas import row_problems

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

MOE_FAMILIES = ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2", "deepseek_v3", "gpt_oss", "phimoe"]
# what replaces a field when an example is corrupted: the engine must answer with a ValueError
BAD = st.one_of(st.integers(min_value=-4, max_value=0), st.none(), st.just("x"), st.floats(0.5, 3.5))


@st.composite
def configs(draw, *, corrupt=False, tp=1, ep=1, pp=1):
    """A config of any supported family, sized so that the ``tp``/``ep``/``pp`` degrees are valid for it (a MoE
    family when ep > 1); ``corrupt``: one field replaced by a bad value."""
    heads = tp * draw(st.integers(1, max(1, 8 // tp)))
    # KV heads: a divisor of the heads that TP shards (or replicates, when TP exceeds them)
    kv = draw(st.sampled_from([h for h in range(1, heads + 1) if heads % h == 0 and (h % tp == 0 or tp % h == 0)]))
    d = draw(st.sampled_from([4, 8, 16]))
    layers = draw(st.integers(max(1, pp), 6))
    experts = ep * draw(st.integers(1, max(1, 8 // ep)))

    def width(lo, hi):  # an MLP width the TP degree divides
        return tp * draw(st.integers(lo, max(lo, hi // tp)))

    cfg = {
        "model_type": draw(st.sampled_from(MOE_FAMILIES if ep > 1 else FAMILIES)),
        "hidden_size": heads * d * draw(st.sampled_from([1, 2])),
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "intermediate_size": width(1, 96),
        "vocab_size": draw(st.integers(1, 500)),
        "max_position_embeddings": 4096,
        "n_positions": 4096,
        "ffn_dim": width(1, 96),
        "num_local_experts": experts,
        "num_experts": experts,
        "n_routed_experts": experts,
        "num_experts_per_tok": draw(st.integers(1, min(3, experts))),
        "moe_intermediate_size": width(1, 32),
        "shared_expert_intermediate_size": width(0, 32),
        "n_shared_experts": draw(st.integers(0, 2)),
        # with ep > 1 at least one layer must be a MoE layer
        "first_k_dense_replace": draw(st.integers(0, min(2, layers - 1) if ep > 1 else 2)),
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
    if corrupt:
        key = draw(st.sampled_from(sorted(cfg)))
        cfg[key] = draw(BAD)
    return cfg


# examples run / examples that reached the assertions, per property test (checked by the last test)
REACHED: dict[str, list[int]] = {"values": [0, 0], "knobs": [0, 0]}
MIN_REACHED = 0.5


def _assert_formulas(r) -> None:
    """Every operator's displayed formulas evaluate to its figures (as tests/test_formulas.py checks the catalog)."""
    bad = [p for ph in (r.prefill, r.decode) for row in ph.rows for p in row_problems(row, f"{ph.name} {row.name}")]
    assert not bad, bad[:5]


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
    data=st.data(),
    # one example in four has one bad input: a config field, the batch, prompt or generation length, the bits
    bad=st.sampled_from([None] * 15 + ["config", "batch_size", "prompt_len", "gen_len", "w_bits"]),
    w=st.sampled_from([4, 8, 16, 32]),
    a=st.sampled_from([8, 16, 32]),
    kv=st.sampled_from([4, 8, 16]),
    logits=st.sampled_from(["last", "all"]),
    attention=st.sampled_from(["causal", "full"]),
    mla=st.sampled_from(["absorbed", "naive"]),
)
def test_results_are_finite_and_consistent_or_value_error(data, bad, w, a, kv, logits, attention, mla):
    cfg = data.draw(configs(corrupt=bad == "config"))
    batch = data.draw(BAD if bad == "batch_size" else st.integers(1, 64))
    prompt = data.draw(BAD if bad == "prompt_len" else st.integers(1, 64))
    gen = data.draw(st.integers(-2, 0) if bad == "gen_len" else st.integers(1, 40))
    if bad == "w_bits":
        w = data.draw(st.sampled_from([3, 5, 12, "int3", "fp9", None]))
    REACHED["values"][0] += 1
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
    REACHED["values"][1] += 1
    _assert_consistent(r.to_dict())
    _assert_formulas(r)


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
    data=st.data(),
    tp=st.sampled_from([1, 1, 1, 2, 4]),
    pp=st.sampled_from([1, 1, 2]),
    ep=st.sampled_from([1, 1, 1, 2]),
    prompt=st.integers(1, 300),
    gen=st.integers(1, 30),
    w=st.sampled_from([4, 8, 16, "fp8_e4m3", "nf4", "q4_0", "int4"]),
    a=st.sampled_from([8, 16, "fp8_e5m2"]),
    kv=st.sampled_from([16, 8, "fp8_e4m3"]),
    group=st.sampled_from([None, 32, 128]),
    flash=st.sampled_from(["off", "ideal", "tiled"]),
    fused=st.booleans(),
    keep=st.sampled_from([1.0, 0.5, 0.1]),
    budget=st.sampled_from([None, 8]),
    spec=st.sampled_from([None, (0, 0.5), (3, 0.7), (2, 1.0)]),
    early=st.sampled_from([1.0, 0.6]),
    sparsity=st.sampled_from([None, "2:4", 0.5]),
    offload=st.sampled_from([None, {"weights": 0.5}, {"kv_cache": 1.0}]),
    eff=st.sampled_from([None, "calibrated", {"compute": 0.5, "memory": 0.9, "communication": 0.8}]),
)
def test_technique_knobs_stay_finite_or_value_error(
    data, tp, pp, ep, prompt, gen, w, a, kv, group, flash, fused, keep, budget, spec, early, sparsity, offload, eff
):
    # a config the parallel degrees fit (the ValueErrors of bad configs are the test above's)
    cfg = data.draw(configs(tp=tp, ep=ep, pp=pp))
    batch = data.draw(st.integers(ep, 16))
    sp = None if spec is None else lr.Speculative(draft="mtp", gamma=spec[0], acceptance=spec[1])
    REACHED["knobs"][0] += 1
    try:
        r = lr.analyze(
            cfg,
            HW_LINKED,
            batch_size=batch,
            prompt_len=prompt,
            gen_len=gen,
            w_bits=w,
            a_bits=a,
            kv_bits=kv,
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
    REACHED["knobs"][1] += 1
    _assert_consistent(r.to_dict(), bounds=("compute", "memory", "communication"))
    _assert_formulas(r)


def test_most_examples_reach_the_assertions():
    """The property tests above are not vacuous: at least half of their examples get past the ValueError
    exit and are checked (runs after them; skipped when they were not run, e.g. with ``-k``)."""
    ran = {k: v for k, v in REACHED.items() if v[0]}
    if not ran:
        pytest.skip("the property tests did not run in this session")
    for name, (examples, reached) in ran.items():
        assert reached >= MIN_REACHED * examples, f"{name}: {reached} of {examples} examples reached the assertions"
