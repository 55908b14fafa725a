"""Attention, MoE and multi-token-prediction variants (issue 12, items 3 and 4), checked by hand derivation.

Chunked attention and NoPE layers (Llama-4, SmolLM3), sparse attention with an indexer (DeepSeek-V3.2,
GLM-5), partial rotary, MoE layouts (Llama-4 interleaving with a shared expert, GLM-4.5, MiniMax-M2) and
the MTP modules (parameters, memory and the speculative draft's real shapes).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_properties import HW_LINKED, _assert_consistent, configs  # the shared random base config and checks

import llmroof_widgets as lr
from llmroof_widgets.engine.analysis import _mtp_draft
from llmroof_widgets.engine.ops import PassBuilder
from llmroof_widgets.engine.precision import Precision

H100 = "h100-sxm"
FP16 = Precision(16, 16, 16)


def ops(phase, layer_type=None):
    return {o["name"]: o for o in phase["ops"] if layer_type is None or o["layer_type"] == layer_type}


def rows_by(rows, name, layer_type):
    return next(r for r in rows if r.name == name and r.layer_type == layer_type)


# ---- chunked attention and NoPE layers (Llama-4) ----------------------------------------------


def test_llama4_scout_layer_plan():
    m = lr.load_model("llama-4-scout")
    types = {lt.name: (lt.count, lt.attention.chunk, lt.attention.rotary_dim) for lt in m.layer_types}
    # 48 layers, every 4th one NoPE (full attention, no rotary); the other 36 chunked with RoPE; all MoE
    assert types == {"moe+chunked": (36, 8192, 128), "moe+nope": (12, None, 0)}
    assert m.layer_plan[:4] == ["moe+chunked", "moe+chunked", "moe+chunked", "moe+nope"]
    nope = next(lt for lt in m.layer_types if lt.name == "moe+nope").attention
    chunked = next(lt for lt in m.layer_types if lt.name == "moe+chunked").attention
    assert nope.temperature and not nope.qk_norm  # temperature tuning on NoPE layers; L2 qk norm on RoPE ones
    assert chunked.qk_norm == "l2" and not chunked.temperature


def test_chunked_kv_cap_and_sawtooth():
    m = lr.load_model("llama-4-scout")
    per_layer_token = 2 * 8 * 128 * 2  # K and V, 8 KV heads × 128, fp16
    r = lr.analyze(m, H100, batch_size=1, prompt_len=10000, gen_len=1).to_dict()
    # chunked layers keep the last chunk − 1 tokens (as transformers caches them); NoPE layers keep all
    assert r["memory"]["kv_cache_prompt_bytes"] == (36 * 8191 + 12 * 10000) * per_layer_token
    d = ops(r["decode"], "moe+chunked")
    f = ops(r["decode"], "moe+nope")
    # the decode token at position 10000 sees the keys of its chunk: 10000 mod 8192 + 1 = 1809
    assert d["attn_score"]["matmul_flops"] == 2 * 40 * 128 * 1809
    assert f["attn_score"]["matmul_flops"] == 2 * 40 * 128 * 10001
    # across a chunk boundary the attended span falls back to 1: a sawtooth of period 8192
    cached = np.array([8190.0, 8191.0, 8192.0, 8193.0])
    rows = PassBuilder(m, FP16, batch=1, tokens=1, cached=cached, logits_tokens=1, attention="causal", mla="absorbed")
    score = rows_by(rows.build(), "attn_score", "moe+chunked")
    assert list(score.matmul_flops / (2 * 40 * 128)) == [8191, 8192, 1, 2]
    # a causal prefill of 20 000 tokens: two full periods of 1 + … + 8192 and 1 + … + 3616
    pre = ops(lr.analyze(m, H100, prompt_len=20000, gen_len=1).to_dict()["prefill"], "moe+chunked")
    pairs = 2 * 8192 * 8193 / 2 + 3616 * 3617 / 2
    assert pre["attn_score"]["matmul_flops"] == pytest.approx(2 * 40 * 128 * pairs, rel=1e-12)


def test_nope_layers_have_no_rotary():
    r = lr.analyze("llama-4-scout", H100, batch_size=1, prompt_len=256, gen_len=1).to_dict()
    chunked, nope = ops(r["prefill"], "moe+chunked"), ops(r["prefill"], "moe+nope")
    assert chunked["rotary"]["flops"] == 256 * (40 + 8) * 128 * 3  # q and k heads × 128 dims × 3 FLOPs
    assert "rotary" not in nope and "qk_norm" not in nope
    assert nope["attn_temperature"]["flops"] == 256 * 40 * 128  # one multiply per q element
    assert chunked["qk_norm"]["params"] == 0  # the L2 norm has no weights
    # SmolLM3: 9 of 36 layers are NoPE (no_rope_layers[i] = 0)
    s = lr.analyze("smollm3-3b", H100, batch_size=1, prompt_len=128, gen_len=1)
    counts = {lt.name: lt.count for lt in s.model.layer_types}
    assert counts == {"full": 27, "nope": 9}
    rot = [r for r in s.prefill.rows if r.name == "rotary"]
    assert sum(r.count * r.flops for r in rot) == 27 * 128 * (16 + 4) * 128 * 3


def test_partial_rotary_everywhere():
    dims = {
        "glm-4.5": 64,  # partial_rotary_factor 0.5 of head_dim 128 (the Glm4MoeConfig default)
        "minimax-m2.5": 64,  # rotary_dim 64
        "phi-2": 32,  # partial_rotary_factor 0.4 of 80
        "llama-3.1-8b": 128,
    }
    for name, d in dims.items():
        assert lr.load_model(name).layer_types[0].attention.rotary_dim == d, name
    base = dict(
        model_type="llama",
        hidden_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        vocab_size=10,
    )
    assert lr.load_model(dict(base, rotary_pct=0.25)).layer_types[0].attention.rotary_dim == 4
    assert (
        lr.load_model(dict(base, rope_parameters={"partial_rotary_factor": 0.5})).layer_types[0].attention.rotary_dim
        == 8
    )
    with pytest.raises(ValueError, match="partial_rotary_factor"):
        lr.load_model(dict(base, partial_rotary_factor=1.5))
    with pytest.raises(ValueError, match="rotary_dim"):
        lr.load_model(dict(base, rotary_dim=32))


# ---- MoE variants ------------------------------------------------------------------------------


def test_llama4_interleaved_moe_with_shared_expert():
    m = lr.load_model("llama-4-maverick")
    kinds = {lt.name: lt.count for lt in m.layer_types}
    # interleave_moe_layer_step 2: odd layers MoE (128 experts, top-1, + a shared expert); even layers dense
    assert kinds == {"dense+chunked": 24, "moe+chunked": 12, "moe+nope": 12}
    r = lr.analyze(m, H100, batch_size=1, prompt_len=64, gen_len=2).to_dict()
    h, I, Id = 5120, 8192, 16384
    moe = ops(r["decode"], "moe+chunked")
    assert moe["experts_gate_up"]["matmul_flops"] == 2 * 1 * h * 2 * I  # the routed top-1 expert only
    assert moe["shared_gate_up"]["matmul_flops"] == 2 * h * 2 * I
    assert moe["router"]["matmul_flops"] == 2 * h * 128
    dense = ops(r["decode"], "dense+chunked")
    assert dense["gate_proj"]["matmul_flops"] == 2 * h * Id  # intermediate_size_mlp on dense layers
    # "17B active" (Meta) is the language model's: params_active also counts the vision tower the catalog
    # entries carry (dense, 871,932,416 parameters; tests/test_reference_vision.py)
    from llmroof_widgets.engine.vision import vision_params

    for key in ("llama-4-maverick", "llama-4-scout"):
        res = lr.analyze(key, H100, prompt_len=64, gen_len=2)
        assert res.params_active - vision_params(res.model.vision) == pytest.approx(17e9, rel=0.015)


def _active_without_tables(r):
    """Active parameters less the embedding and output tables (how several model cards count "active")."""
    m = r.model
    return r.params_active - m.vocab_size * m.hidden_size * (1 if m.tie_embeddings else 2)


def test_glm45_layout():
    m = lr.load_model("glm-4.5")
    assert {lt.name: lt.count for lt in m.layer_types} == {"dense": 3, "moe": 89}  # first_k_dense_replace 3
    moe = next(lt for lt in m.layer_types if lt.name == "moe")
    a = moe.attention
    assert (a.qkv_bias, a.o_bias, a.qk_norm) == (True, False, "head")
    assert (moe.mlp.num_experts, moe.mlp.top_k, moe.mlp.shared_intermediate_size) == (160, 8, 1536)
    assert moe.mlp.router_score_bias
    air = lr.load_model("glm-4.5-air")
    assert air.layer_types[0].attention.qk_norm is None  # use_qk_norm false
    # the published "12B active" leaves out the embedding and output tables (2 × 151552 × 4096)
    assert _active_without_tables(lr.analyze(air, H100, prompt_len=64, gen_len=2)) == pytest.approx(12e9, rel=0.03)
    g = lr.analyze(m, H100, prompt_len=64, gen_len=2)
    assert g.params_total == pytest.approx(355e9, rel=0.01)
    assert _active_without_tables(g) == pytest.approx(32e9, rel=0.03)


def test_minimax_and_catalog_published_totals():
    mm = lr.analyze("minimax-m2.5", H100, prompt_len=64, gen_len=2)
    a = mm.model.layer_types[0].attention
    assert a.qk_norm == "full"  # RMSNorm over the whole q and k projections
    assert mm.params_total == pytest.approx(230e9, rel=0.01)
    assert _active_without_tables(mm) == pytest.approx(10e9, rel=0.03)
    kimi = lr.analyze("kimi-k2", H100, prompt_len=64, gen_len=2)
    assert kimi.params_total == pytest.approx(1.0e12, rel=0.03)
    assert kimi.params_active == pytest.approx(32e9, rel=0.03)  # Kimi's "32B activated" counts the tables
    q = lr.analyze("qwen3-235b-a22b", H100, prompt_len=64, gen_len=2)
    assert q.params_total == pytest.approx(235e9, rel=0.002) and q.params_active == pytest.approx(22e9, rel=0.03)
    g = lr.analyze("gpt-oss-120b", H100, prompt_len=64, gen_len=2)
    assert g.params_total == pytest.approx(117e9, rel=0.01)
    # OpenAI's model card: 116.83B total, 5.13B active, counting the unembedding but not the embedding table
    assert g.params_active - 201088 * 2880 == pytest.approx(5.13e9, rel=0.002)


# ---- sparse attention with an indexer (DeepSeek-V3.2) -------------------------------------------


def test_sparse_attention_topk_and_indexer():
    m = lr.load_model("deepseek-v3.2")
    a = m.layer_types[0].attention
    assert (a.index_heads, a.index_head_dim, a.index_topk) == (64, 128, 2048)
    P = 8000
    served = lr.analyze(m, H100, batch_size=1, prompt_len=P, gen_len=1, mla="absorbed").to_dict()
    eager = lr.analyze(m, H100, batch_size=1, prompt_len=P, gen_len=1, mla="naive").to_dict()
    s, e = ops(served["decode"], "moe"), ops(eager["decode"], "moe")
    # serving kernels attend the 2048 selected latents; transformers masks a dense score matrix
    assert s["attn_score"]["matmul_flops"] == 2 * 128 * (512 + 64) * 2048
    assert e["attn_score"]["matmul_flops"] == 2 * 128 * (128 + 64) * (P + 1)
    # the indexer scores every cached key: ReLU(q·k) per indexer head, then the weighted sum over heads
    assert s["indexer_scores"]["matmul_flops"] == 2 * 64 * 128 * (P + 1) + 2 * 64 * (P + 1)
    assert s["indexer_scores"]["kv_bytes"] == (P + 1) * 128 * 2
    assert s["indexer_wq_b"]["params"] == 1536 * 64 * 128 and s["indexer_wk"]["params"] == 7168 * 128
    # below 2048 keys the top-k keeps everything: the two formulations agree on attention pairs
    short = ops(lr.analyze(m, H100, prompt_len=1000, gen_len=1).to_dict()["decode"], "moe")
    assert short["attn_score"]["matmul_flops"] == 2 * 128 * 576 * 1001
    # a causal prefill: query p attends min(p + 1, 2048) keys
    pre = ops(lr.analyze(m, H100, prompt_len=P, gen_len=1).to_dict()["prefill"], "moe")
    pairs = 2048 * 2049 / 2 + (P - 2048) * 2048
    assert pre["attn_score"]["matmul_flops"] == pytest.approx(2 * 128 * 192 * pairs, rel=1e-12)
    # memory: the latent, the RoPE key and the indexer's key per token per layer
    assert served["memory"]["kv_bytes_per_token"] == 61 * (512 + 64 + 128) * 2


def test_glm5_shared_indexer_layers():
    cfg = lr.load_model("glm-5").raw
    assert {lt.attention.index_heads for lt in lr.load_model("glm-5").layer_types} == {32}
    # index_topk_freq 4 (offset 2): layers 1, 2, 3, 5, 6, 7 … reuse the previous selection: no indexer
    m = lr.load_model(dict(cfg, index_topk_freq=4, index_skip_topk_offset=2))
    heads = [next(lt for lt in m.layer_types if i in lt.layers).attention.index_heads for i in range(8)]
    assert heads == [32, 32, 0, 0, 0, 32, 0, 0]
    r = lr.analyze(m, H100, prompt_len=64, gen_len=1)
    full = lr.analyze("glm-5", H100, prompt_len=64, gen_len=1)
    per_indexer = 2048 * 32 * 128 + 6144 * 128 + 2 * 128 + 6144 * 32
    shared_layers = sum(1 for i in range(78) if max(i - 1, 0) % 4)
    assert full.params_total - r.params_total == shared_layers * per_indexer


# ---- multi-token prediction ---------------------------------------------------------------------


def _mla_moe_layer_params(h, H, q_lora, kvl, nope, rope, v, E, I, n_shared):
    attn = h * q_lora + q_lora + q_lora * H * (nope + rope) + h * (kvl + rope) + kvl + kvl * H * (nope + v) + H * v * h
    moe = E * h + E * 3 * h * I + n_shared * 3 * h * I  # router, routed experts, shared expert
    return attn + moe + 2 * h  # + the two RMSNorms


def test_mtp_params_by_hand():
    # DeepSeek-V3 §2.2 / vLLM DeepSeekMTP: enorm, hnorm, eh_proj (2h → h), one MoE decoder block, a final
    # norm; embedding and output head shared with the main model
    h = 7168
    block = _mla_moe_layer_params(h, 128, 1536, 512, 128, 64, 128, 256, 2048, 1)
    expected = h + h + 2 * h * h + block + h
    r = lr.analyze("deepseek-v3", H100, prompt_len=64, gen_len=2)
    assert r.params_mtp == expected == 11_610_067_968  # also transformers' MtpModel (reference test)
    assert r.params_total == 671_026_404_352 and r.params_total_with_mtp == r.params_total + expected
    assert r.to_dict()["model"]["params_total_with_mtp"] == pytest.approx(685e9, rel=0.02)  # "685B" on the hub
    assert r.memory["mtp_weights_bytes"] == 2 * expected + 2 * 256  # 16-bit, + the router's score-bias buffer
    assert lr.analyze("kimi-k2", H100, prompt_len=64, gen_len=2).params_mtp == 0  # num_nextn_predict_layers 0
    assert lr.analyze("llama-3.1-8b", H100, prompt_len=64, gen_len=2).params_mtp == 0


def test_mtp_speculative_draft_has_the_real_shapes():
    m = lr.load_model("deepseek-v3")
    d = _mtp_draft(m)
    (block,) = d.layer_types
    # the declared MTP block is a MoE + MLA layer (get_mtp_config sets first_k_dense_replace = 0), not a
    # copy of whatever layer type sorts last
    assert block.mlp.kind == "moe" and block.attention.kind == "mla" and block.count == 1
    spec = lr.Speculative(draft="mtp", gamma=2, acceptance=0.8)
    P, G = 512, 33
    r = lr.analyze(m, H100, prompt_len=P, gen_len=G, speculative=spec)
    kv_draft = (512 + 64) * 2 * (P + G - 1 + 2)  # the block's own latent cache
    assert r.memory["draft_bytes"] == pytest.approx(r.memory["mtp_weights_bytes"] + kv_draft)
    names = {
        row.name
        for row in PassBuilder(
            d, FP16, batch=1, tokens=1, cached=8, logits_tokens=1, attention="causal", mla="absorbed"
        ).build()
    }
    assert {"mtp_enorm", "mtp_hnorm", "mtp_eh_proj", "experts_gate_up", "lm_head"} <= names
    # a model without MTP layers drafts with a hypothetical module shaped like its last layer
    llama = lr.analyze("llama-3.1-8b", H100, prompt_len=P, gen_len=G, speculative=spec)
    h, I, kv = 4096, 14336, 1024
    layer = 2 * h * h + 2 * h * kv + 3 * h * I + 2 * h
    mtp_weights = (h + h + 2 * h * h + layer + h) * 2  # embedding and head shared with the target
    assert llama.memory["draft_bytes"] == pytest.approx(mtp_weights + 2 * kv * 2 * (P + G - 1 + 2))


def test_mtp_fields_parsed():
    base = dict(
        model_type="qwen3",
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        vocab_size=10,
    )
    for field in ("num_nextn_predict_layers", "num_mtp_layers", "mtp_num_hidden_layers"):
        m = lr.load_model(dict(base, **{field: 2}))
        assert m.mtp_layers == 2 and m.mtp_layer is not None, field
    with pytest.raises(ValueError, match="num_nextn_predict_layers"):
        lr.load_model(dict(base, num_nextn_predict_layers=-1))
    two = lr.analyze(dict(base, num_nextn_predict_layers=2), H100, prompt_len=8, gen_len=2)
    one = lr.analyze(dict(base, num_nextn_predict_layers=1), H100, prompt_len=8, gen_len=2)
    assert two.params_mtp == 2 * one.params_mtp > 0 and two.params_total == one.params_total


# ---- KV shared across layers, per-layer inputs, AltUp, LAuReL (Gemma-3n) -------------------------


def test_gemma3n_shared_kv_memory():
    m = lr.load_model("gemma-3n-e4b")
    plan = m.layer_plan
    # 35 layers: every 5th full; the first 10 with activation sparsity; the last 15 reuse earlier K/V
    assert plan[0] == "sliding+sparse-act" and plan[4] == "full+sparse-act" and plan[10] == "sliding"
    assert plan[20] == "sliding+kv-shared" and plan[34] == "full+kv-shared"
    P = 4096
    r = lr.analyze(m, H100, batch_size=1, prompt_len=P, gen_len=1).to_dict()
    per_layer_token = 2 * 2 * 256 * 2  # K and V, 2 KV heads × 256, fp16
    # only layers 0–19 hold a cache: 4 full ones (P tokens) and 16 sliding ones (window − 1 = 511)
    assert r["memory"]["kv_cache_prompt_bytes"] == (4 * P + 16 * 511) * per_layer_token
    assert r["memory"]["kv_bytes_per_token"] == 20 * per_layer_token
    shared, own = ops(r["decode"], "full+kv-shared"), ops(r["decode"], "full")
    assert "k_proj" not in shared and "v_proj" not in shared and "k_proj" in own
    # a shared layer still reads the K/V of its producer: the same attention as the layer it borrows from
    assert shared["attn_score"]["matmul_flops"] == own["attn_score"]["matmul_flops"] == 2 * 8 * 256 * (P + 1)
    assert shared["attn_score"]["kv_bytes"] == own["attn_score"]["kv_bytes"] == (P + 1) * 2 * 256 * 2


def test_gemma3n_extras_by_hand():
    r = lr.analyze("gemma-3n-e2b", H100, batch_size=1, prompt_len=64, gen_len=1).to_dict()
    h, P, n, L = 2048, 256, 4, 30
    model = ops(r["decode"], "model")
    assert model["per_layer_model_projection"]["matmul_flops"] == 2 * h * L * P
    assert model["embed_tokens_per_layer"]["params"] == 262144 * L * P
    assert model["altup_projection_1"]["params"] == h * h and "altup_unembed_projection_3" in model
    layer = ops(r["decode"], "sliding")
    assert layer["altup_predict_mix"]["matmul_flops"] == 2 * h * n * n  # n streams mixed by n × n coefficients
    assert layer["laurel_left"]["params"] == h * 64 and layer["laurel_right"]["params"] == 64 * h
    assert layer["per_layer_input_gate"]["matmul_flops"] == 2 * h * P
    assert layer["gate_proj"]["params"] == h * 8192
    assert layer["altup_correct_modality_router"]["params"] == 0  # the predict step's router, run again


def test_variant_fields_fail_loudly():
    base = dict(
        model_type="llama",
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        vocab_size=10,
    )
    with pytest.raises(ValueError, match="attention_chunk_size"):
        lr.load_model(dict(base, layer_types=["chunked_attention", "full_attention"]))
    m = lr.load_model(dict(base, layer_types=["chunked_attention", "full_attention"], attention_chunk_size=16))
    assert [lt.attention.chunk for lt in sorted(m.layer_types, key=lambda lt: lt.layers)] == [16, None]
    l4 = dict(base, model_type="llama4_text", num_local_experts=2, num_experts_per_tok=1, intermediate_size_mlp=128)
    with pytest.raises(ValueError, match="no_rope_layers"):
        lr.load_model(dict(l4, no_rope_layers=[1, 2]))
    with pytest.raises(ValueError, match="moe_layers"):
        lr.load_model(dict(l4, moe_layers=[5]))
    with pytest.raises(ValueError, match="intermediate_size_mlp"):
        lr.load_model({k: v for k, v in l4.items() if k != "intermediate_size_mlp"})
    ds = lr.load_model("deepseek-v3.2").raw
    with pytest.raises(ValueError, match="indexer_types"):
        lr.load_model(dict(ds, model_type="glm_moe_dsa", indexer_types=["full"]))
    with pytest.raises(ValueError, match="q_lora_rank"):
        lr.load_model(dict(ds, q_lora_rank=None))
    g3n = lr.load_model("gemma-3n-e2b").raw
    with pytest.raises(ValueError, match="num_kv_shared_layers"):
        lr.load_model(dict(g3n, num_kv_shared_layers=30))
    with pytest.raises(ValueError, match="intermediate_size"):
        lr.load_model(dict(g3n, intermediate_size=[8192] * 3))


# ---- property test: random variant configs give consistent results or a ValueError ---------------

VARIANT_FAMILIES = ["llama4_text", "smollm3", "glm4_moe", "minimax_m2", "kimi_k2", "deepseek_v32", "glm_moe_dsa"]
VARIANT_FAMILIES += ["gemma3n_text"]


@st.composite
def variant_configs(draw):
    cfg = draw(configs())
    layers = cfg.get("num_hidden_layers")
    n = layers if isinstance(layers, int) and 0 < layers < 50 else 2
    cfg["model_type"] = draw(st.sampled_from(VARIANT_FAMILIES))
    cfg["attention_chunk_size"] = draw(st.sampled_from([None, 4, 16, 8192]))
    cfg["no_rope_layer_interval"] = draw(st.integers(1, 4))
    if draw(st.booleans()):
        cfg["no_rope_layers"] = [draw(st.sampled_from([0, 1])) for _ in range(n)]
    cfg["interleave_moe_layer_step"] = draw(st.integers(1, 3))
    cfg["intermediate_size_mlp"] = draw(st.integers(1, 64))
    cfg["use_qk_norm"] = draw(st.booleans())
    cfg["index_n_heads"] = draw(st.integers(1, 4))
    cfg["index_head_dim"] = draw(st.sampled_from([4, 8]))
    cfg["index_topk"] = draw(st.integers(1, 64))
    if draw(st.booleans()):
        cfg["indexer_types"] = [draw(st.sampled_from(["full", "shared"])) for _ in range(n)]
    if draw(st.booleans()):
        cfg["mlp_layer_types"] = [draw(st.sampled_from(["dense", "sparse"])) for _ in range(n)]
    cfg[draw(st.sampled_from(["num_nextn_predict_layers", "num_mtp_layers", "mtp_num_hidden_layers"]))] = draw(
        st.integers(0, 2)
    )
    if draw(st.booleans()):
        cfg["rotary_dim"] = draw(st.sampled_from([0, 2, 4]))
    cfg["num_kv_shared_layers"] = draw(st.integers(0, n))
    cfg["laurel_rank"] = draw(st.integers(1, 8))
    cfg["altup_num_inputs"] = draw(st.integers(1, 4))
    cfg["hidden_size_per_layer_input"] = draw(st.integers(1, 8))
    cfg["vocab_size_per_layer_input"] = draw(st.integers(1, 64))
    if draw(st.integers(0, 5)) == 0:  # a broken variant field now and then
        cfg[draw(st.sampled_from(["attention_chunk_size", "index_topk", "no_rope_layers", "moe_layers"]))] = "x"
    return cfg


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cfg=variant_configs(),
    prompt=st.integers(1, 80),
    gen=st.integers(1, 12),
    mla=st.sampled_from(["absorbed", "naive"]),
    flash=st.sampled_from(["off", "tiled"]),
    spec=st.sampled_from([None, (2, 0.7)]),
    tp=st.sampled_from([1, 2]),
)
def test_random_variant_configs_are_consistent_or_value_error(cfg, prompt, gen, mla, flash, spec, tp):
    sp = None if spec is None else lr.Speculative(draft="mtp", gamma=spec[0], acceptance=spec[1])
    try:
        r = lr.analyze(
            cfg, HW_LINKED, prompt_len=prompt, gen_len=gen, mla=mla, flash_attention=flash, speculative=sp, tp=tp
        )
    except ValueError:
        return
    d = r.to_dict()
    _assert_consistent(d, bounds=("compute", "memory", "communication"))
    assert d["model"]["params_total_with_mtp"] == d["model"]["params_total"] + d["model"]["params_mtp"]
    assert (d["model"]["params_mtp"] > 0) == (r.model.mtp_layers > 0)


def test_gemma3n_shared_layers_need_a_producer():
    g3n = lr.load_model("gemma-3n-e2b").raw
    # 30 layers, every 5th full: with 26 shared layers only layers 0–3 (all sliding) produce a cache
    with pytest.raises(ValueError, match="full_attention"):
        lr.load_model(dict(g3n, num_kv_shared_layers=26))
    assert lr.load_model(dict(g3n, num_kv_shared_layers=25)).layer_plan[4] == "full+sparse-act"
