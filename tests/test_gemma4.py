"""Per-layer attention geometry and the Gemma-4 family (issue 12, "per-layer head_dim").

The catalog Gemma-4 models are checked against transformers in tests/test_reference_transformers.py (params
exact, prefill/decode matmul FLOPs, cache bytes). Here: the per-layer operators by hand, transformers'
generic ``per_layer_config`` convention against transformers on a small model, errors, and a property test.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_properties import HW_LINKED, _assert_consistent

import llmroof_widgets as lr

H100 = "h100-sxm"


def rows_of(phase, layer_type):
    return {r.name: r for r in phase.rows if r.layer_type == layer_type}


def test_31b_full_layers_use_the_global_head_dim_and_k_as_v():
    m = lr.load_model("gemma-4-31B-it")
    h = 5376
    full = next(lt for lt in m.layer_types if lt.name == "full")
    sliding = next(lt for lt in m.layer_types if lt.name == "sliding")
    assert (full.count, sliding.count) == (10, 50)
    assert full.layers == tuple(range(5, 60, 6))
    a_f, a_s = full.attention, sliding.attention
    assert (a_f.head_dim, a_f.num_kv_heads, a_f.k_eq_v, a_f.window) == (512, 4, True, None)
    assert (a_s.head_dim, a_s.num_kv_heads, a_s.k_eq_v, a_s.window) == (256, 16, False, 1024)
    assert (a_f.rotary_dim, a_s.rotary_dim) == (128, 256)  # partial_rotary_factor 0.25 on full layers only
    r = lr.analyze(m, H100, batch_size=1, prompt_len=512, gen_len=1, flash_attention="off")
    f, s = rows_of(r.prefill, "full"), rows_of(r.prefill, "sliding")
    # each projection's parameters from its own layer's geometry: q 32 heads × d, k (and v) KV heads × d
    assert f["q_proj"].params == h * 32 * 512 and f["o_proj"].params == 32 * 512 * h
    assert f["k_proj"].params == h * 4 * 512 and "v_proj" not in f  # attention_k_eq_v: no v projection
    assert s["q_proj"].params == h * 32 * 256 and s["k_proj"].params == s["v_proj"].params == h * 16 * 256
    # the score and value products of 512 prompt tokens (causal pairs) with the layer's head dim
    pairs = 512 * 513 / 2
    assert f["attn_score"].matmul_flops == 2 * 32 * 512 * pairs
    assert s["attn_score"].matmul_flops == 2 * 32 * 256 * pairs  # window 1024 > 512: every causal pair
    assert f["attn_value"].matmul_flops == 2 * 32 * 512 * pairs
    # K and V of every layer in the cache (16-bit): a full layer 2·4·512, a sliding one 2·16·256 per token
    assert r.memory["kv_cache_prompt_bytes"] == 512 * 2 * (10 * 2 * 4 * 512 + 50 * 2 * 16 * 256)
    # = transformers' Gemma4ForConditionalGeneration (tests/test_reference_vision.py): text 30 697 345 280 +
    # vision tower 569 548 080 + its projection 6 193 152
    assert r.params_total == 31_273_086_512
    text = lr.load_model({**m.raw["text_config"], "tie_word_embeddings": True})
    assert text.vision is None and text.layer_types == m.layer_types
    assert lr.analyze(text, H100, prompt_len=16, gen_len=1).params_total == 30_697_345_280


def test_multimodal_wrapper_text_config_and_per_layer_fields_in_to_dict():
    vl = lr.load_model("gemma-4-31B-it")
    m = lr.load_model({"model_type": "gemma4", "text_config": vl.raw["text_config"], "tie_word_embeddings": True})
    assert m.layer_types == vl.layer_types and m.vision is None  # the wrapper without a vision tower
    geometry = {t["name"]: (t["head_dim"], t["num_kv_heads"]) for t in m.to_dict()["layer_types"]}
    assert geometry == {"full": (512, 4), "sliding": (256, 16)}
    # hidden_size_per_layer_input: null means no per-layer inputs (transformers' class default is 256)
    e2b = lr.load_model("gemma-4-e2b").raw
    assert lr.load_model(dict(e2b, hidden_size_per_layer_input=None)).gemma4["hidden_size_per_layer_input"] == 0
    assert (
        lr.load_model({k: v for k, v in e2b.items() if k != "hidden_size_per_layer_input"}).gemma4[
            "hidden_size_per_layer_input"
        ]
        == 256
    )


def test_kv_shared_layers_double_wide_mlp_and_per_layer_inputs():
    m = lr.load_model("gemma-4-e2b")
    plan = m.layer_plan
    assert plan[:15] == ["sliding", "sliding", "sliding", "sliding", "full"] * 3
    assert set(plan[15:]) == {"sliding+kv-shared", "full+kv-shared"}  # the last 20 layers reuse K/V
    by = {lt.name: lt for lt in m.layer_types}
    assert by["sliding"].mlp.intermediate_size == 6144 and by["sliding+kv-shared"].mlp.intermediate_size == 12288
    assert by["full+kv-shared"].attention.head_dim == 512 and by["full+kv-shared"].attention.kv_shared
    r = lr.analyze(m, H100, batch_size=1, prompt_len=256, gen_len=1)
    shared = rows_of(r.prefill, "full+kv-shared")
    assert "k_proj" not in shared and "v_proj" not in shared and shared["q_proj"].params == 1536 * 8 * 512
    # only the 15 producing layers cache: 12 sliding (2·1·256) and 3 full (2·1·512) per token
    assert r.memory["kv_cache_prompt_bytes"] == 256 * 2 * (12 * 2 * 256 + 3 * 2 * 512)
    model_rows = {x.name: x for x in r.prefill.rows if x.layer_type == "model"}
    assert model_rows["embed_tokens_per_layer"].params == 262_144 * 35 * 256
    assert model_rows["per_layer_model_projection"].params == 1536 * 35 * 256
    assert rows_of(r.prefill, "sliding")["per_layer_input_gate"].params == 1536 * 256


def test_moe_block_runs_the_dense_mlp_beside_the_routed_experts():
    m = lr.load_model("gemma-4-26b-a4b")
    lt = m.layer_types[0]
    assert m.is_moe and lt.mlp.num_experts == 128 and lt.mlp.top_k == 8
    assert lt.mlp.intermediate_size == 704 and lt.mlp.shared_intermediate_size == 2112  # the dense MLP, always on
    r = lr.analyze(m, H100, batch_size=1, prompt_len=128, gen_len=1)
    rows = rows_of(r.prefill, "moe+sliding")
    h = 2816
    assert rows["router"].params == h * 128
    assert rows["router_scale"].params == h + 128  # router scale (h) + per_expert_scale (E)
    assert rows["moe_norms"].params == 3 * h
    # routed experts: top-8 of 128, gate|up and down of width 704, 2 FLOPs per multiply-add
    assert rows["experts_gate_up"].matmul_flops == 2 * 128 * 8 * h * 2 * 704
    assert rows["shared_gate_up"].matmul_flops == 2 * 128 * h * 2 * 2112


def _tiny(**kw) -> dict:
    """A small Gemma-4 text config (every feature on), transformers' field names."""
    cfg = {
        "model_type": "gemma4_text",
        "vocab_size": 512,
        "vocab_size_per_layer_input": 256,
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 6,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "global_head_dim": 32,
        "num_global_key_value_heads": 1,
        "attention_k_eq_v": True,
        "hidden_size_per_layer_input": 8,
        "num_kv_shared_layers": 2,
        "use_double_wide_mlp": True,
        "enable_moe_block": True,
        "num_experts": 4,
        "top_k_experts": 2,
        "moe_intermediate_size": 24,
        "sliding_window": 32,
        "layer_types": ["sliding_attention", "full_attention"] * 3,
        "final_logit_softcapping": 30.0,
    }
    cfg.update(kw)
    return cfg


def _transformers_counts(cfg: dict, prompt: int = 64) -> dict:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from torch.utils.flop_counter import FlopCounterMode

    config = transformers.AutoConfig.for_model(**cfg)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(
            config, attn_implementation="eager", experts_implementation="batched_mm"
        ).eval()
    ids = torch.zeros((1, prompt), dtype=torch.long, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        out = model(input_ids=ids, use_cache=True)
    layers = out.past_key_values.layers  # KV-shared layers keep no tensors of their own
    kv = sum(t.numel() for layer in layers for t in (layer.keys, layer.values) if isinstance(t, torch.Tensor))
    return {"params": sum(p.numel() for p in model.parameters()), "prefill": fc.get_total_flops(), "kv": kv}


@pytest.mark.parametrize(
    "extra",
    [
        {},  # global_head_dim / num_global_key_value_heads on the full layers, as Gemma4TextConfig derives them
        # transformers' generic per_layer_config (a saved heterogeneous config): overrides on any layer
        # (transformers wants the same overrides on every layer of a type: its rotary tables are per type)
        {
            "per_layer_config": {
                **{str(i): {"head_dim": 8, "num_key_value_heads": 1} for i in (0, 2, 4)},
                **{str(i): {"head_dim": 24} for i in (1, 3, 5)},
            }
        },
        {"attention_k_eq_v": False, "enable_moe_block": False, "use_double_wide_mlp": False},
    ],
)
def test_per_layer_geometry_equals_transformers(extra):
    cfg = _tiny(**extra)
    ref = _transformers_counts(cfg)
    r = lr.analyze(cfg, H100, batch_size=1, prompt_len=64, gen_len=1, logits="all", attention="full")
    assert r.params_total == ref["params"]
    assert r.prefill.matmul_flops == pytest.approx(ref["prefill"], rel=1e-12)
    assert r.memory["kv_cache_prompt_bytes"] == 2 * ref["kv"]


def test_bad_gemma4_fields_name_the_field():
    with pytest.raises(ValueError, match="per_layer_config"):
        lr.load_model(_tiny(per_layer_config={"x": {"head_dim": 8}}))
    with pytest.raises(ValueError, match=r"per_layer_config\[1\]\.intermediate_size"):
        lr.load_model(_tiny(per_layer_config={"1": {"intermediate_size": 8}}))
    with pytest.raises(ValueError, match="layer 9"):
        lr.load_model(_tiny(per_layer_config={"9": {"head_dim": 8}}))
    with pytest.raises(ValueError, match="whole number"):
        lr.load_model(_tiny(per_layer_config={"1": {"head_dim": 8.5}}))
    with pytest.raises(ValueError, match="must divide"):
        lr.load_model(_tiny(per_layer_config={"1": {"num_key_value_heads": 3}}))
    with pytest.raises(ValueError, match="no multi-head attention"):
        lr.load_model(dict(lr.load_model("deepseek-v3").raw, per_layer_config={"0": {"head_dim": 64}}))
    with pytest.raises(ValueError, match="use_bidirectional_attention"):
        lr.load_model(_tiny(use_bidirectional_attention="all"))
    with pytest.raises(ValueError, match="num_kv_shared_layers"):
        lr.load_model(_tiny(num_kv_shared_layers=6))
    with pytest.raises(ValueError, match="top_k_experts"):
        lr.load_model(_tiny(top_k_experts=5))
    with pytest.raises(ValueError, match="moe_intermediate_size"):
        lr.load_model(_tiny(moe_intermediate_size=None))
    with pytest.raises(ValueError, match="attention_k_eq_v"):
        lr.load_model(_tiny(attention_k_eq_v="yes"))
    with pytest.raises(ValueError, match="global_head_dim"):
        lr.load_model(_tiny(global_head_dim=0))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 7),
    pattern=st.integers(1, 4),
    shared=st.integers(0, 7),
    ghd=st.sampled_from([8, 16, 32, 64]),
    gkv=st.sampled_from([None, 1, 2, 3]),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    ple=st.sampled_from([0, 4]),
    prompt=st.integers(1, 80),
    gen=st.integers(1, 8),
    tp=st.sampled_from([1, 2]),
)
def test_random_gemma4_configs_are_consistent_or_value_error(n, pattern, shared, ghd, gkv, flags, ple, prompt, gen, tp):
    kinds = ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(n)]
    cfg = _tiny(
        num_hidden_layers=n,
        layer_types=kinds,
        num_kv_shared_layers=shared,
        global_head_dim=ghd,
        num_global_key_value_heads=gkv,
        attention_k_eq_v=flags[0],
        enable_moe_block=flags[1],
        use_double_wide_mlp=flags[2],
        hidden_size_per_layer_input=ple,
    )
    try:
        r = lr.analyze(cfg, HW_LINKED, prompt_len=prompt, gen_len=gen, tp=tp)
    except ValueError:
        return
    _assert_consistent(r.to_dict(), bounds=("compute", "memory", "communication"))
    # the KV cache holds the producing layers only, each with its own head dim and KV heads
    per_token = sum(
        lt.count * lt.attention.kv_elements_per_token() for lt in r.model.layer_types if lt.attention is not None
    )
    assert per_token == sum(
        2 * (gkv if (k == "full_attention" and flags[0] and gkv) else 2) * (ghd if k == "full_attention" else 16)
        for i, k in enumerate(kinds)
        if i < n - shared
    )


def test_vision_tower_tokens_and_errors():
    m = lr.load_model("gemma-4-31B-it")
    v = m.vision
    assert (v.kind, v.depth, v.hidden_size, v.merge, v.max_tokens) == ("gemma4", 27, 1152, 3, 280)
    assert v.default_image_size() == (768, 768) and v.tokens_per_image(None) == 256  # 16 × 16 tokens of 48 px
    assert v.tokens_per_image((96, 144)) == 6 and v.patches_per_image((96, 144)) == 54
    r = lr.analyze(m, H100, prompt_len=64, gen_len=2, images=1, image_size=(96, 144))
    assert r.to_dict()["settings"]["image_tokens"] == 6 and r.encode.matmul_flops > 0
    enc = {x.name: x for x in r.encode.rows if x.layer_type == "vision"}
    assert enc["q_proj"].matmul_flops == 2 * 54 * 1152 * 16 * 72
    assert enc["embedding_projection"].params == 1152 * 5376 and enc["pos_embed"].params == 2 * 10240 * 1152
    with pytest.raises(ValueError, match="at most 280"):
        lr.analyze(m, H100, images=1, image_size=(48 * 17, 48 * 17))  # 289 tokens
    with pytest.raises(ValueError, match="multiples of"):
        lr.analyze(m, H100, images=1, image_size=(100, 144))
    cfg = dict(m.raw)
    with pytest.raises(ValueError, match="audio_config"):
        lr.load_model(dict(cfg, audio_config={"model_type": "gemma4_audio"}))
    with pytest.raises(ValueError, match="num_key_value_heads"):
        lr.load_model(dict(cfg, vision_config=dict(cfg["vision_config"], num_key_value_heads=4)))
    with pytest.raises(ValueError, match="vision_config.model_type"):
        lr.load_model(dict(cfg, vision_config=dict(cfg["vision_config"], model_type="siglip_vision_model")))
