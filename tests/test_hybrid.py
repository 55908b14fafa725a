"""Hybrid and recurrent layers: layer plans from each family's config conventions, recurrent operators, the
per-sequence state in the memory footprint, and small models of every hybrid family checked against transformers.

The small models (a few layers, narrow widths, a 100-token prompt that is not a whole number of scan chunks) are
built by ``transformers`` on the meta device from the family's config class and compared exactly: parameters,
matrix-product FLOPs of the prefill and of a decode step (``FlopCounterMode``), KV-cache and recurrent-state
elements. The catalog models are checked the same way at full size in ``test_reference_transformers.py``.
"""

from __future__ import annotations

import inspect
import math

import pytest

import llmroof_widgets as lr
from llmroof_widgets.engine.families_hybrid import RecurrentSpec

HW = lr.Hardware(
    name="ref", memory_bytes=80e9, memory_bandwidth=2e12, peak_flops={"fp16": 1e15}, interconnect_bandwidth=4e11
)


def plan(cfg):
    return lr.load_model(cfg).layer_plan


QWEN_NEXT = {
    "model_type": "qwen3_next",
    "hidden_size": 64,
    "num_hidden_layers": 8,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "intermediate_size": 96,
    "vocab_size": 300,
    "linear_num_key_heads": 2,
    "linear_num_value_heads": 4,
    "linear_key_head_dim": 16,
    "linear_value_head_dim": 8,
    "linear_conv_kernel_dim": 4,
    "num_experts": 8,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 32,
    "shared_expert_intermediate_size": 48,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [0],
    "full_attention_interval": 4,
}
JAMBA = {
    "model_type": "jamba",
    "hidden_size": 64,
    "num_hidden_layers": 8,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 96,
    "vocab_size": 300,
    "attn_layer_period": 4,
    "attn_layer_offset": 2,
    "expert_layer_period": 2,
    "expert_layer_offset": 1,
    "num_experts": 4,
    "num_experts_per_tok": 2,
    "mamba_d_state": 8,
    "mamba_d_conv": 4,
    "mamba_expand": 2,
    "mamba_dt_rank": 8,
}
NEMOTRON = {
    "model_type": "nemotron_h",
    "hidden_size": 64,
    "num_hidden_layers": 6,
    "hybrid_override_pattern": "ME*M-E",
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "intermediate_size": 96,
    "vocab_size": 300,
    "mamba_num_heads": 8,
    "mamba_head_dim": 8,
    "n_groups": 2,
    "ssm_state_size": 16,
    "conv_kernel": 4,
    "chunk_size": 32,
    "n_routed_experts": 4,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 32,
    "moe_shared_expert_intermediate_size": 48,
}
LFM2 = {
    "model_type": "lfm2",
    "hidden_size": 64,
    "num_hidden_layers": 5,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 192,
    "vocab_size": 300,
    "layer_types": ["conv", "full_attention", "conv", "conv", "full_attention"],
    "conv_L_cache": 3,
    "block_multiple_of": 16,
}
LFM2_MOE = {
    "model_type": "lfm2_moe",
    "hidden_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 96,
    "moe_intermediate_size": 32,
    "num_experts": 4,
    "num_experts_per_tok": 2,
    "num_dense_layers": 1,
    "vocab_size": 300,
    "layer_types": ["conv", "full_attention", "conv", "full_attention"],
}
GRANITE = {
    "model_type": "granitemoehybrid",
    "hidden_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 32,
    "shared_intermediate_size": 48,
    "num_local_experts": 4,
    "num_experts_per_tok": 2,
    "vocab_size": 300,
    "layer_types": ["mamba", "attention", "mamba", "mamba"],
    "mamba_n_heads": 8,
    "mamba_n_groups": 2,
    "mamba_d_state": 16,
    "mamba_d_conv": 4,
    "mamba_expand": 2,
    "mamba_chunk_size": 32,
    "position_embedding_type": "nope",
}
MINIMAX = {
    "model_type": "minimax",
    "hidden_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "intermediate_size": 48,
    "num_local_experts": 4,
    "num_experts_per_tok": 2,
    "vocab_size": 300,
    "layer_types": ["linear_attention", "linear_attention", "linear_attention", "full_attention"],
    "block_size": 32,
    "partial_rotary_factor": 0.5,
}
FALCON_H1 = {
    "model_type": "falcon_h1",
    "hidden_size": 64,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "intermediate_size": 96,
    "vocab_size": 300,
    "mamba_d_ssm": 96,
    "mamba_n_heads": 6,
    "mamba_d_head": 16,
    "mamba_n_groups": 2,
    "mamba_d_state": 8,
    "mamba_d_conv": 4,
    "mamba_chunk_size": 32,
}
# attention-free Mamba / Mamba2 models and Bamba (engine/families_ssm.py)
MAMBA = {
    "model_type": "mamba",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "vocab_size": 300,
    "state_size": 8,
    "conv_kernel": 4,
    "expand": 2,
    "time_step_rank": 8,
}
# falcon-mamba: a saved intermediate_size overrides expand·hidden (as falcon-mamba-7b's config does)
FALCON_MAMBA = {**MAMBA, "model_type": "falcon_mamba", "expand": 16, "intermediate_size": 96, "time_step_rank": "auto"}
MAMBA2 = {
    "model_type": "mamba2",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "vocab_size": 300,
    "num_heads": 8,
    "head_dim": 16,
    "expand": 2,
    "n_groups": 2,
    "state_size": 16,
    "conv_kernel": 4,
    "chunk_size": 32,
    "use_bias": True,
}
BAMBA = {
    "model_type": "bamba",
    "hidden_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 96,
    "vocab_size": 300,
    "attn_layer_indices": [1],
    "mamba_n_heads": 8,
    "mamba_n_groups": 2,
    "mamba_d_state": 16,
    "mamba_d_conv": 4,
    "mamba_expand": 2,
    "mamba_chunk_size": 32,
}
SMALL = {
    "mamba": MAMBA,
    "falcon_mamba": FALCON_MAMBA,
    "mamba2": MAMBA2,
    "bamba": BAMBA,
    "falcon_h1": FALCON_H1,
    "falcon_h1_norm": {**FALCON_H1, "mamba_rms_norm": True, "projectors_bias": True, "mamba_proj_bias": True},
    "minimax": MINIMAX,
    "qwen3_next": QWEN_NEXT,
    "jamba": JAMBA,
    "nemotron_h": NEMOTRON,
    "nemotron_h_latent": {**NEMOTRON, "moe_latent_size": 24},  # latent MoE (Nemotron-3 Super / Ultra)
    "lfm2": LFM2,
    "lfm2_moe": LFM2_MOE,
    "granitemoehybrid": GRANITE,
}


# ---- layer plans -------------------------------------------------------------------------


def test_layer_plans_follow_each_family_convention():
    # Qwen3-Next: every 4th layer full attention; layer 0 in mlp_only_layers keeps a dense MLP
    assert plan(QWEN_NEXT) == ["gated_deltanet"] + ["gated_deltanet+moe"] * 2 + ["attention+moe"] + (
        ["gated_deltanet+moe"] * 3 + ["attention+moe"]
    )
    # Jamba: attention where i % 4 == 2, MoE where i % 2 == 1
    assert plan(JAMBA) == ["mamba", "mamba+moe", "attention", "mamba+moe"] * 2
    # Nemotron-H: M Mamba2, E MoE, * attention, - MLP; one mixer or one MLP per block
    assert plan(NEMOTRON) == ["mamba2", "moe", "attention", "mamba2", "mlp", "moe"]
    assert plan(LFM2) == ["short_conv", "attention", "short_conv", "short_conv", "attention"]
    assert plan(LFM2_MOE) == ["short_conv", "attention+moe", "short_conv+moe", "attention+moe"]
    assert plan(GRANITE) == ["mamba2+moe", "attention+moe", "mamba2+moe", "mamba2+moe"]
    assert plan(MINIMAX) == ["lightning+moe"] * 3 + ["attention+moe"]
    assert plan(FALCON_H1) == ["attention+mamba2"] * 3  # both mixers in every layer
    # Mamba / falcon-mamba / Mamba2: one mixer per block, no MLP, no attention; Bamba: attention at the indices
    assert plan(MAMBA) == plan(FALCON_MAMBA) == ["mamba"] * 2
    assert plan(MAMBA2) == ["mamba2"] * 2
    assert plan(BAMBA) == ["mamba2", "attention", "mamba2", "mamba2"]
    assert plan({**BAMBA, "layers_block_type": ["attention", "mamba", "mamba", "attention"]}) == [
        "attention",
        "mamba2",
        "mamba2",
        "attention",
    ]
    # MiniMax's own configs: attn_type_list, 1 = softmax attention
    m = {k: v for k, v in MINIMAX.items() if k != "layer_types"}
    assert plan({**m, "attn_type_list": [0, 1, 0, 1]}) == ["lightning+moe", "attention+moe"] * 2
    # explicit layer_types win over the interval
    m = lr.load_model({**QWEN_NEXT, "layer_types": ["linear_attention"] * 7 + ["full_attention"]})
    assert m.layer_plan.count("attention+moe") == 1


def test_layer_types_without_attention_or_mlp():
    m = lr.load_model(NEMOTRON)
    by = {lt.name: lt for lt in m.layer_types}
    assert by["mamba2"].attention is None and by["mamba2"].mlp is None and by["mamba2"].mixer.kind == "mamba2"
    assert by["mlp"].attention is None and by["mlp"].mixer is None and by["mlp"].mlp.kind == "dense"
    assert by["attention"].mlp is None and by["attention"].attention.rotary_dim == 0  # Nemotron-H has no RoPE
    assert m.num_heads == 4 and m.num_kv_heads == 2 and m.head_dim == 16  # from the first attention layer
    d = m.to_dict()
    assert {t["name"]: t["mixer"] for t in d["layer_types"]}["mamba2"] == "mamba2"
    # every view sees the kinds in the operator rows
    r = lr.analyze(NEMOTRON, HW, prompt_len=64, gen_len=3).to_dict()
    assert {o["layer_type"] for o in r["decode"]["ops"]} == {"model", "mamba2", "moe", "attention", "mlp"}


@pytest.mark.parametrize(
    "bad, field",
    [
        ({**NEMOTRON, "hybrid_override_pattern": "MX*M-E"}, "hybrid_override_pattern"),
        ({**QWEN_NEXT, "layer_types": ["linear_attention"] * 3}, "layer_types"),
        ({**QWEN_NEXT, "layer_types": ["conv"] * 8}, "layer_types"),
        ({**QWEN_NEXT, "linear_num_value_heads": 3}, "linear_num_value_heads"),
        ({**JAMBA, "attn_layer_offset": 4}, "attn_layer_offset"),
        ({**LFM2, "conv_L_cache": 0}, "conv_L_cache"),
        ({**QWEN_NEXT, "mamba_ssm_dtype": "float8"}, "mamba_ssm_dtype"),
        ({**NEMOTRON, "moe_latent_size": 0}, "moe_latent_size"),
        ({**NEMOTRON, "moe_latent_size": 2.5}, "moe_latent_size"),
        ({**GRANITE, "mamba_n_heads": 6}, "mamba_n_heads"),
        ({**QWEN_NEXT, "mlp_only_layers": [9]}, "mlp_only_layers"),
        ({**LFM2, "block_ffn_dim_multiplier": [1]}, "block_ffn_dim_multiplier"),
        ({**NEMOTRON, "hybrid_override_pattern": 5}, "hybrid_override_pattern"),
        ({**MINIMAX, "layer_types": None, "attn_type_list": [0, 2, 0, 1]}, "attn_type_list"),
        ({**FALCON_H1, "mamba_d_head": 7}, "mamba_d_head"),
        ({**GRANITE, "layer_types": ["mamba", "conv", "mamba", "mamba"]}, "layer_types"),
        ({**MAMBA2, "num_heads": 6}, "num_heads"),
        ({**MAMBA2, "n_groups": 3}, "n_groups"),
        ({**MAMBA, "state_size": 0}, "state_size"),
        ({**MAMBA, "time_step_rank": "big"}, "time_step_rank"),
        ({**MAMBA, "mamba_ssm_cache_dtype": "int3"}, "mamba_ssm_cache_dtype"),
        ({**BAMBA, "attn_layer_indices": [4]}, "attn_layer_indices"),
        ({**BAMBA, "layers_block_type": ["mamba", "conv", "mamba", "mamba"]}, "layers_block_type"),
        ({**BAMBA, "mamba_d_head": 7}, "mamba_d_head"),
        ({**MAMBA, "hidden_act": "swoosh"}, "hidden_act"),
    ],
)
def test_bad_hybrid_fields_name_the_field(bad, field):
    with pytest.raises(ValueError, match=field):
        lr.load_model(bad)


# ---- operators and memory ----------------------------------------------------------------


def _ops(phase, lt):
    return {o["name"]: o for o in phase["ops"] if o["layer_type"] == lt}


def test_gated_deltanet_state_and_flat_decode():
    r = lr.analyze(QWEN_NEXT, HW, batch_size=3, prompt_len=100, gen_len=50)
    d = r.to_dict()
    spec = next(lt.mixer for lt in r.model.layer_types if lt.mixer)
    # per sequence and layer: conv K·(2·Hk·dk + Hv·dv) in fp16, state Hv·dk·dv in fp32
    conv = 4 * (2 * 2 * 16 + 4 * 8) * 2
    state = 4 * 16 * 8 * 4
    n_rec = sum(lt.count for lt in r.model.layer_types if lt.mixer)
    assert spec.conv_state_elements() == 4 * (2 * 2 * 16 + 4 * 8)
    assert d["memory"]["recurrent_state_bytes"] == 3 * n_rec * (conv + state)
    # the KV cache holds only the attention layers (2 of 8)
    assert d["memory"]["kv_bytes_per_token"] == 2 * 2 * (16 + 16) * 2
    # a decode step reads and writes the state once: the same bytes at every context
    step = _ops(d["decode"], "gated_deltanet+moe")["gdn_recurrent_step"]
    assert step["kv_bytes"] == 2 * 3 * 4 * 16 * 8 * 4
    assert step["matmul_flops"] == 0  # element-wise (FlopCounterMode counts none of it either)
    scan = _ops(d["prefill"], "gated_deltanet+moe")["gdn_chunk_scan"]
    tp_, c = 128, 64  # 100 tokens padded to two chunks of 64
    assert scan["matmul_flops"] == 3 * 4 * (4 * tp_ * c * 16 + 2 * tp_ * c * 8 + 6 * tp_ * 16 * 8)
    # the recurrent layers' decode cost does not grow; only the attention layers' does
    rows = lambda cached: lr.analyze(QWEN_NEXT, HW, batch_size=3, prompt_len=cached, gen_len=2).decode.rows
    rec = lambda cached: sum(x.count * x.bytes for x in rows(cached) if x.layer_type.startswith("gated"))
    att = lambda cached: sum(x.count * x.bytes for x in rows(cached) if x.layer_type.startswith("attention"))
    assert rec(100) == rec(5000)
    assert att(5000) > att(100)


def test_memory_totals_include_the_state_and_it_limits_the_batch():
    r = lr.analyze(NEMOTRON, HW, batch_size=4, prompt_len=256, gen_len=8).memory
    assert r["recurrent_state_bytes"] > 0
    parts = r["weights_bytes"] + r["kv_cache_bytes"] + r["recurrent_state_bytes"] + r["activations_bytes"]
    assert r["total_bytes"] == pytest.approx(parts, rel=1e-12)
    assert r["recurrent_state_prompt_bytes"] == r["recurrent_state_bytes"]  # does not grow with the generation
    # a device whose memory fits the weights plus little more: the state per sequence caps the batch
    w = r["weights_bytes"]
    per_seq = (r["kv_cache_bytes"] + r["recurrent_state_bytes"] + r["activations_bytes"]) / 4
    small = lr.Hardware(name="s", memory_bytes=w + 10.5 * per_seq, memory_bandwidth=1e12, peak_flops={"fp16": 1e14})
    assert lr.analyze(NEMOTRON, small, batch_size=4, prompt_len=256, gen_len=8).memory["max_batch_size"] == 10


def test_ssm_state_dtype_from_config():
    f32 = lr.analyze(NEMOTRON, HW, prompt_len=64, gen_len=2).memory["recurrent_state_bytes"]
    f16 = lr.analyze({**NEMOTRON, "mamba_ssm_cache_dtype": "float16"}, HW, prompt_len=64, gen_len=2)
    spec = RecurrentSpec(kind="mamba2", d_inner=64, num_heads=8, head_dim=8, state_size=16, n_groups=2)
    assert f32 - f16.memory["recurrent_state_bytes"] == 2 * spec.ssm_state_elements() * 2  # 2 Mamba2 layers, 2 B less


def test_tensor_parallel_shards_heads_or_says_why_not():
    one = lr.analyze(NEMOTRON, HW, batch_size=2, prompt_len=64, gen_len=2, tp=1).memory["recurrent_state_bytes"]
    two = lr.analyze(NEMOTRON, HW, batch_size=2, prompt_len=64, gen_len=2, tp=2).memory["recurrent_state_bytes"]
    assert two == pytest.approx(one / 2)
    # Mamba (v1, Jamba) shards its inner channels; x_proj is row-parallel: its dt, B, C are all-reduced
    j1, j2 = (lr.analyze(JAMBA, HW, batch_size=2, prompt_len=64, gen_len=2, tp=t) for t in (1, 2))
    assert j2.memory["recurrent_state_bytes"] == pytest.approx(j1.memory["recurrent_state_bytes"] / 2)
    names = {o["name"] for o in j2.to_dict()["decode"]["ops"]}
    assert {"x_proj_allreduce", "mixer_allreduce"} <= names
    with pytest.raises(ValueError, match="heads"):
        lr.analyze({**NEMOTRON, "mamba_num_heads": 6, "n_groups": 1}, HW, tp=4)


def test_course_kv_formula_counts_only_attention_layers():
    scenario = dict(model=QWEN_NEXT, hardware=HW, prompt_len=64, gen_len=2)
    c = lr.check(None, quantity="kv_bytes_per_token", scenario=scenario, show_formula=True)
    assert c.expected == 2 * 2 * 2 * 16 * 2  # 2 attention layers of 8, K and V, 2 KV heads of 16, fp16
    # the memory engine's terms: only the attention layer type, layers · kv_heads · (d_k + d_v) · bytes
    assert c.formula.endswith("attention+moe: layers·kv_heads·(d_k + d_v)·2 B = 2·2·32·2")


def test_mtp_draft_of_a_hybrid_is_an_attention_layer():
    r = lr.analyze(QWEN_NEXT, HW, prompt_len=64, gen_len=8, speculative=lr.Speculative("mtp", 2, 0.8))
    assert r.generation["speculative_tokens_per_round"] > 1


@pytest.mark.parametrize("family", ["qwen3_next", "nemotron_h", "jamba", "minimax", "mamba", "mamba2", "bamba"])
def test_vectorized_sweep_equals_single_analyses(family):
    # lr.sweep evaluates the prefill over an array of prompt lengths at once (chunk padding included)
    cfg = SMALL[family]
    df = lr.sweep(cfg, HW, prompt_len=[1, 63, 100, 300], gen_len=[1, 5], batch_size=[1, 3])
    for row in df.itertuples():
        r = lr.analyze(cfg, HW, prompt_len=row.prompt_len, gen_len=row.gen_len, batch_size=row.batch_size)
        assert row.ttft_s == pytest.approx(r.generation["ttft_s"], rel=1e-9)
        assert row.e2e_s == pytest.approx(r.generation["e2e_s"], rel=1e-9)
        assert row.recurrent_state_bytes == pytest.approx(r.memory["recurrent_state_bytes"], rel=1e-12)
        assert row.total_bytes == pytest.approx(r.memory["total_bytes"], rel=1e-9)


def test_memory_view_shows_the_recurrent_state_as_its_own_segment():
    import llmroof_widgets.widgets as lw

    s = lw.State(model=NEMOTRON, hardware=HW, prompt_len=256, gen_len=8)
    mem = lw.MemoryBreakdown(s)
    assert list(mem.bars.labels) == ["weights", "KV cache", "activations", "recurrent state"]
    assert mem.bars.y.shape == (4, 3)  # prefill, end of decode, fits check
    rec = s.result.memory["recurrent_state_bytes"] / 1e9
    assert mem.bars.y[3].tolist() == pytest.approx([rec, rec, rec])
    mem.by.value = "batch"  # per batch size: the state grows with the sequences
    assert list(mem.bars.labels)[3] == "recurrent state" and mem.bars.y[3][-1] > mem.bars.y[3][0]
    dense = lw.MemoryBreakdown(lw.State(model="gpt2", hardware=HW, prompt_len=64, gen_len=4))
    assert "recurrent state" not in list(dense.bars.labels)


# ---- small models of every family against transformers -----------------------------------

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

PROMPT = 100


def _count(fn):
    with FlopCounterMode(display=False) as fc:
        fn()
    conv = sum(v for op, v in fc.get_flop_counts()["Global"].items() if "convolution" in str(op))
    return int(fc.get_total_flops()) - int(conv)


def _reference(cfg):
    config = transformers.AutoConfig.for_model(**cfg)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(
            config, experts_implementation="batched_mm", attn_implementation="eager"
        )
    model.eval()
    ids = torch.zeros((1, PROMPT), dtype=torch.long, device="meta")
    outs = []
    with torch.no_grad():
        pre = _count(lambda: outs.append(model(input_ids=ids, use_cache=True)))
        # Mamba / Mamba2 return their cache as `cache` and take it as `cache=` (an unknown past_key_values= is dropped)
        cache = getattr(outs[0], "past_key_values", None)
        if cache is None:
            cache = outs[0].cache
        kv = conv = rec = 0
        # MiniMax keeps each lightning layer's Kᵀ·V state in a list, in the model dtype
        rec_model = sum(t.numel() for t in getattr(cache, "linear_cache", None) or [] if isinstance(t, torch.Tensor))
        for layer in cache.layers:
            kv += sum(getattr(layer, n).numel() for n in ("keys", "values") if getattr(layer, n, None) is not None)
            conv += sum(t.numel() for t in (getattr(layer, "conv_states", None) or {}).values() if t is not None)
            rec += sum(t.numel() for t in (getattr(layer, "recurrent_states", None) or {}).values() if t is not None)
        nxt = torch.zeros((1, 1), dtype=torch.long, device="meta")
        takes = inspect.signature(model.forward).parameters
        kw = {"cache": cache} if "cache" in takes and "past_key_values" not in takes else {"past_key_values": cache}
        dec = _count(lambda: model(input_ids=nxt, use_cache=True, **kw))
    params = sum(p.numel() for p in model.parameters())
    return dict(params=params, prefill=pre, decode=dec, kv=kv, conv=conv, rec=rec, rec_model=rec_model)


@pytest.mark.reference
@pytest.mark.parametrize("family", sorted(SMALL))
def test_small_hybrids_match_transformers(family):
    cfg = SMALL[family]
    ref = _reference(cfg)
    r = lr.analyze(cfg, HW, prompt_len=PROMPT, gen_len=2, logits="all", attention="full")
    assert r.params_total == ref["params"], family
    assert r.prefill.matmul_flops == pytest.approx(ref["prefill"], rel=1e-9), family
    assert r.decode.matmul_flops == pytest.approx(ref["decode"], rel=1e-9), family
    assert r.memory["kv_cache_prompt_bytes"] == ref["kv"] * 2, family
    # conv states in the model dtype (2 B here), recurrent states in float32 as transformers keeps them
    assert r.memory["recurrent_state_prompt_bytes"] == ref["conv"] * 2 + ref["rec"] * 4 + ref["rec_model"] * 2, family
    assert math.isfinite(r.generation["tpot_s"])
