"""Property-based tests for hybrid and recurrent models: random layer plans (``layer_types``, Nemotron-H patterns,
Jamba periods, LFM2 attention indices) and random dimensions give finite, non-negative results whose totals are the
sums of their rows and whose memory adds up — or a ValueError naming what is wrong. Never another exception.

At least half of the examples must reach the assertions (checked at the end), so the strategy cannot drift into
configs that are all rejected.
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llmroof_widgets as lr
from tests.test_properties import _assert_consistent

HW = lr.Hardware(
    name="prop",
    memory_bytes=80e9,
    memory_bandwidth=2e12,
    peak_flops={"fp16": 1e15},
    interconnect_bandwidth=4e11,
)

REACHED = {"ok": 0, "value_error": 0}


@st.composite
def hybrid_configs(draw):
    fam = draw(
        st.sampled_from(
            [
                "qwen3_next",
                "jamba",
                "nemotron_h",
                "lfm2",
                "lfm2_moe",
                "granitemoehybrid",
                "minimax",
                "mamba",
                "falcon_mamba",
                "mamba2",
                "bamba",
            ]
        )
    )
    heads = draw(st.sampled_from([1, 2, 4, 8]))
    kv = draw(st.sampled_from([h for h in (1, 2, 4, 8) if h <= heads and heads % h == 0]))
    d = draw(st.sampled_from([8, 16, 32]))
    n = draw(st.integers(1, 10))
    cfg = {
        "model_type": fam,
        "hidden_size": heads * d,
        "num_hidden_layers": n,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "intermediate_size": draw(st.integers(1, 128)),
        "vocab_size": draw(st.integers(1, 300)),
    }
    if fam == "qwen3_next":
        hk = draw(st.sampled_from([1, 2, 4]))
        cfg.update(
            head_dim=d,
            linear_num_key_heads=hk,
            linear_num_value_heads=hk * draw(st.sampled_from([1, 2, 3])),
            linear_key_head_dim=draw(st.sampled_from([4, 8, 16])),
            linear_value_head_dim=draw(st.sampled_from([4, 8, 16])),
            linear_conv_kernel_dim=draw(st.integers(1, 5)),
            num_experts=draw(st.sampled_from([0, 4, 8])),
            num_experts_per_tok=draw(st.integers(1, 4)),
            moe_intermediate_size=draw(st.integers(1, 64)),
            shared_expert_intermediate_size=draw(st.sampled_from([0, 16])),
            decoder_sparse_step=draw(st.integers(1, 3)),
            mlp_only_layers=draw(st.lists(st.integers(0, n - 1), max_size=2, unique=True)),
        )
        if draw(st.booleans()):
            cfg["layer_types"] = draw(
                st.lists(st.sampled_from(["full_attention", "linear_attention"]), min_size=n, max_size=n)
            )
        else:
            cfg["full_attention_interval"] = draw(st.integers(1, 5))
        cfg["mamba_ssm_dtype"] = draw(st.sampled_from(["float32", "bfloat16"]))
    elif fam == "jamba":
        period = draw(st.integers(1, 8))
        eperiod = draw(st.integers(1, 4))
        cfg.update(
            attn_layer_period=period,
            attn_layer_offset=draw(st.integers(0, period - 1)),
            expert_layer_period=eperiod,
            expert_layer_offset=draw(st.integers(0, eperiod - 1)),
            num_experts=draw(st.integers(1, 8)),
            num_experts_per_tok=draw(st.integers(1, 2)),
            mamba_d_state=draw(st.sampled_from([4, 16])),
            mamba_d_conv=draw(st.integers(1, 4)),
            mamba_expand=draw(st.integers(1, 2)),
        )
    elif fam == "nemotron_h":
        pattern = "".join(draw(st.lists(st.sampled_from("ME*-"), min_size=n, max_size=n)))
        g = draw(st.sampled_from([1, 2, 4]))
        cfg.update(
            hybrid_override_pattern=pattern,
            head_dim=d,
            mamba_num_heads=g * draw(st.integers(1, 3)),
            mamba_head_dim=draw(st.sampled_from([4, 8])),
            n_groups=g,
            ssm_state_size=draw(st.sampled_from([4, 16])),
            conv_kernel=draw(st.integers(1, 4)),
            chunk_size=draw(st.sampled_from([4, 16, 128])),
            n_routed_experts=draw(st.integers(1, 8)),
            num_experts_per_tok=draw(st.integers(1, 3)),
            moe_intermediate_size=draw(st.integers(1, 64)),
            moe_shared_expert_intermediate_size=draw(st.integers(1, 64)),
            mamba_ssm_cache_dtype=draw(st.sampled_from(["float32", "float16"])),
        )
    elif fam == "granitemoehybrid":
        g = draw(st.sampled_from([1, 2]))
        mh = g * draw(st.sampled_from([1, 2, 4]))
        cfg.update(
            layer_types=draw(st.lists(st.sampled_from(["mamba", "attention"]), min_size=n, max_size=n)),
            mamba_n_heads=mh,
            mamba_n_groups=g,
            mamba_expand=draw(st.sampled_from([1, 2])),
            mamba_d_state=draw(st.sampled_from([4, 16])),
            mamba_chunk_size=draw(st.sampled_from([8, 256])),
            shared_intermediate_size=draw(st.integers(1, 64)),
            num_local_experts=draw(st.integers(0, 6)),
            num_experts_per_tok=draw(st.integers(1, 3)),
            position_embedding_type=draw(st.sampled_from(["rope", "nope"])),
        )
    elif fam == "falcon_h1":
        mh = draw(st.sampled_from([1, 2, 4]))
        cfg.update(
            head_dim=d,
            mamba_n_heads=mh,
            mamba_d_head=draw(st.sampled_from([4, 8])),
            mamba_n_groups=1,
            mamba_d_state=draw(st.sampled_from([4, 16])),
            mamba_chunk_size=draw(st.sampled_from([8, 256])),
            mamba_rms_norm=draw(st.booleans()),
        )
        cfg["mamba_d_ssm"] = cfg["mamba_n_heads"] * cfg["mamba_d_head"]
    elif fam in ("mamba", "falcon_mamba"):  # attention-free: no attention layer, no MLP
        cfg.update(
            state_size=draw(st.sampled_from([4, 16])),
            conv_kernel=draw(st.integers(1, 4)),
            expand=draw(st.integers(1, 2)),
            time_step_rank=draw(st.sampled_from(["auto", 2, 8])),
            use_bias=draw(st.booleans()),
            use_conv_bias=draw(st.booleans()),
        )
        if draw(st.booleans()):  # a saved intermediate_size overrides expand·hidden
            cfg["intermediate_size"] = draw(st.integers(1, 96))
        else:
            cfg.pop("intermediate_size")
    elif fam in ("mamba2", "bamba"):
        g = draw(st.sampled_from([1, 2]))
        mh = g * draw(st.sampled_from([1, 2, 4]))
        expand = draw(st.sampled_from([1, 2]))
        width = expand * cfg["hidden_size"]
        p = width // mh if width % mh == 0 else draw(st.sampled_from([4, 8]))  # else a mismatch: a ValueError
        fields = dict(n_heads=mh, d_head=p, n_groups=g, expand=expand, d_state=draw(st.sampled_from([4, 16])))
        fields.update(chunk_size=draw(st.sampled_from([8, 256])), conv=draw(st.integers(1, 4)))
        if fam == "mamba2":
            cfg.update(
                num_heads=mh,
                head_dim=p,
                n_groups=g,
                expand=expand,
                state_size=fields["d_state"],
                chunk_size=fields["chunk_size"],
                conv_kernel=fields["conv"],
                use_bias=draw(st.booleans()),
            )
        else:
            cfg.update(
                mamba_n_heads=mh,
                mamba_d_head=p,
                mamba_n_groups=g,
                mamba_expand=expand,
                mamba_d_state=fields["d_state"],
                mamba_chunk_size=fields["chunk_size"],
                mamba_d_conv=fields["conv"],
                attn_layer_indices=draw(st.lists(st.integers(0, n - 1), max_size=3, unique=True)),
            )
    elif fam == "minimax":
        cfg.update(
            layer_types=draw(st.lists(st.sampled_from(["linear_attention", "full_attention"]), min_size=n, max_size=n)),
            num_local_experts=draw(st.integers(1, 8)),
            num_experts_per_tok=draw(st.integers(1, 3)),
            block_size=draw(st.sampled_from([4, 32, 256])),
        )
    else:
        cfg.update(
            layer_types=draw(st.lists(st.sampled_from(["conv", "full_attention"]), min_size=n, max_size=n)),
            num_experts=draw(st.integers(1, 8)),
            num_experts_per_tok=draw(st.integers(1, 3)),
            moe_intermediate_size=draw(st.integers(1, 64)),
            num_dense_layers=draw(st.integers(0, 3)),
            conv_L_cache=draw(st.integers(1, 4)),
            block_auto_adjust_ff_dim=draw(st.booleans()),
            block_multiple_of=draw(st.sampled_from([1, 8, 256])),
        )
    for e_key in ("num_experts", "num_local_experts", "n_routed_experts"):
        # mostly a valid top-k (k ≤ experts): the examples should reach the checks, not the refusal
        if cfg.get(e_key) and cfg.get("num_experts_per_tok", 0) > cfg[e_key] and draw(st.integers(0, 9)):
            cfg["num_experts_per_tok"] = cfg[e_key]
    if draw(st.integers(0, 9)) == 0:  # sometimes a broken field
        cfg[draw(st.sampled_from(sorted(cfg)))] = draw(st.sampled_from([0, -1, None, "x", 2.5, []]))
    return cfg


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cfg=hybrid_configs(),
    batch=st.integers(1, 16),
    prompt=st.integers(1, 300),
    gen=st.integers(1, 12),
    tp=st.sampled_from([1, 1, 2]),
    flash=st.sampled_from(["off", "ideal"]),
)
def test_random_hybrids_are_consistent_or_rejected(cfg, batch, prompt, gen, tp, flash):
    try:
        r = lr.analyze(cfg, HW, batch_size=batch, prompt_len=prompt, gen_len=gen, tp=tp, flash_attention=flash)
    except ValueError as e:
        assert str(e)
        REACHED["value_error"] += 1
        return
    REACHED["ok"] += 1
    d = r.to_dict()
    _assert_consistent(d, bounds=("compute", "memory", "communication"))
    m = d["memory"]
    rec = m["recurrent_state_bytes"]
    assert math.isfinite(rec) and rec >= 0
    # the state does not grow with the generation, and the total adds up its parts
    assert m["recurrent_state_prompt_bytes"] == rec
    parts = m["weights_bytes"] + m["kv_cache_bytes"] + rec + m["activations_bytes"] + m["draft_bytes"]
    assert math.isclose(m["total_bytes"], parts, rel_tol=1e-9)
    kinds = {lt.mixer.kind for lt in r.model.layer_types if lt.mixer}
    # a layer of each kind in the plan, counted once: the counts cover every layer
    assert sum(lt.count for lt in r.model.layer_types) == r.model.num_layers
    assert (rec > 0) == bool(kinds)
    if not any(lt.attention for lt in r.model.layer_types):
        assert m["kv_cache_bytes"] == 0
    # decode steps of a model without attention cost the same at every context (a flat timeline)
    if not any(lt.attention for lt in r.model.layer_types) and gen > 2:
        steps = d["generation"]["decode_step_times_s"]
        assert max(steps) - min(steps) <= 1e-12 * max(steps)


def test_most_examples_reach_the_assertions():
    # runs after the property test in this module (pytest keeps file order)
    total = REACHED["ok"] + REACHED["value_error"]
    assert total > 0
    assert REACHED["ok"] >= total / 2, REACHED
