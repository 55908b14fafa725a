"""Families of issue 12 (items 6 and 8), checked by hand: offline variant names, falcon-40b's grouped KV
cache, ALiBi, parallel blocks, post-only norms, InternLM2 (no transformers class), the catalog fragment.

The exact agreement of every new catalog model with transformers (parameters, matmul FLOPs, cache) is in
tests/test_reference_transformers.py; here each number is derived from the architecture on paper.
"""

from __future__ import annotations

import json

import pytest

import llmroof_widgets as lr
from llmroof_widgets.engine.models import (
    MODELS_DIR,
    UNSUPPORTED_FIELDS,
    _catalog_index,
    _variants_of,
    catalog_entry,
    parse_config,
)

H100 = "h100-sxm"
T = 1024  # prompt tokens


def ops(phase, layer_type=None):
    return {o["name"]: o for o in phase["ops"] if layer_type is None or o["layer_type"] == layer_type}


def names(phase):
    return [o["name"] for o in phase["ops"] if o["layer_type"] != "model"]


# ---- offline names: instruct / chat / base variants -----------------------------------------


@pytest.mark.parametrize(
    "variant, base, how",
    [
        ("meta-llama/Llama-3.1-405B-Instruct", "meta-llama/Llama-3.1-405B", "listed"),
        ("meta-llama/Llama-2-7b-chat-hf", "meta-llama/Llama-2-7b-hf", "listed"),
        ("Qwen/Qwen3-30B-A3B-Instruct-2507", "Qwen/Qwen3-30B-A3B", "listed"),
        ("tiiuae/falcon-40b-instruct", "tiiuae/falcon-40b", "listed"),
        ("google/gemma-2-9b-it", "google/gemma-2-9b", "listed"),
        # no list entry: the suffix rule onto an exact catalog id
        ("Qwen/Qwen3-4B-Instruct-2507", "Qwen/Qwen3-4B", "suffix rule '-instruct-2507'"),
        ("META-LLAMA/LLAMA-2-13B-CHAT-HF", "meta-llama/Llama-2-13b-hf", "listed"),  # case-insensitive
        ("allenai/OLMo-2-0325-32B-Instruct", "allenai/OLMo-2-0325-32B", "listed"),
        ("Qwen/Qwen3-4B-Thinking-2507", "Qwen/Qwen3-4B", "suffix rule '-thinking-2507'"),
    ],
)
def test_variant_resolves_offline_to_its_base_config(monkeypatch, variant, base, how):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never the network: the catalog alone answers
    m = lr.load_model(variant)
    assert m.name.startswith(variant) and f"config of {base}" in m.name  # the name says which config is used
    assert ("a variant listed in the catalog" if how == "listed" else how) in m.name
    assert replace_name(m) == replace_name(lr.load_model(base))


def replace_name(m):
    from dataclasses import replace

    return replace(m, name="")


def test_catalog_names_are_not_variants():
    for name in ("meta-llama/Llama-3.1-405B", "llama-3.1-405b", "Llama-3.1-405B", "tiiuae/falcon-40b"):
        e = catalog_entry(name)
        assert e is not None and "resolved_name" not in e, name
    assert lr.load_model("tiiuae/falcon-40b").name == "tiiuae/falcon-40b"


@pytest.mark.parametrize(
    "name",
    [
        "mistralai/Mixtral-8x22B-Instruct-v0.1",  # vocab 32768 ≠ the base's 32000: not listed, and no suffix rule
        "meta-llama/Llama-3.1-8B-Instruct-1M",  # an unknown suffix is never guessed
        "someone/Llama-3.1-8B-Instruct",  # another organisation: not the catalog's id
        "meta-llama/Llama-3.1-8B-Instructt",
        "Llama-3.1-8B-Instruct",  # the rule needs the full Hub id
    ],
)
def test_no_fuzzy_resolution(name):
    assert catalog_entry(name) is None


def test_every_listed_variant_resolves_to_an_existing_entry_and_collides_with_no_catalog_id():
    index = _catalog_index()
    ids = {e["hf_id"].lower() for e in index.values()}
    listed = [(key, v) for key, vs in _variants_of().items() for v in vs]
    assert len(listed) >= 60
    for key, v in listed:
        assert key in index, key
        assert v.lower() not in ids, v
        assert catalog_entry(v)["key"] == key, v


# ---- falcon: grouped KV cache, multi-query, parallel attention ------------------------------


def test_falcon_40b_grouped_kv_cache_by_hand():
    # falcon-40b: hidden 8192, 128 query heads of 64, 8 KV heads (new_decoder_architecture), 60 layers
    r = lr.analyze("falcon-40b", H100, batch_size=1, prompt_len=T, gen_len=1).to_dict()
    per_token = 60 * 2 * 8 * 64 * 2  # layers · (K and V) · KV heads · head_dim · 2 bytes
    assert r["memory"]["kv_bytes_per_token"] == per_token == 122_880
    assert r["memory"]["kv_cache_prompt_bytes"] == per_token * T
    # transformers' FalconAttention broadcasts K/V to all 128 heads before caching: 16× this size
    # (tests/test_reference_transformers.py checks the engine against it with that factor)
    assert 60 * 2 * 128 * 64 * 2 == 16 * per_token
    o = ops(r["decode"], "decoder")
    assert o["qkv_proj"]["params"] == 8192 * (128 + 2 * 8) * 64  # one fused [q | k | v] projection, no bias
    assert o["qkv_proj"]["kv_bytes"] == 2 * 8 * 64 * 2  # this token's K and V go to the cache
    # two LayerNorms (ln_attn, ln_mlp) feed attention and MLP in parallel; one residual add of both
    assert [n for n in names(r["decode"]) if "norm" in n or "residual" in n] == ["attn_norm", "mlp_norm", "residual"]
    layer = 8192 * 144 * 64 + 8192 * 8192 + 2 * 8192 * 32768 + 2 * 2 * 8192
    assert lr.analyze("falcon-40b", H100, prompt_len=16, gen_len=1).params_total == (
        65024 * 8192 + 60 * layer + 2 * 8192  # tied embedding + layers + ln_f
    )


def test_falcon_7b_multi_query_one_norm():
    r = lr.analyze("falcon-7b", H100, batch_size=1, prompt_len=T, gen_len=1).to_dict()
    assert r["memory"]["kv_bytes_per_token"] == 32 * 2 * 1 * 64 * 2  # one K/V head of 64 per layer
    o = ops(r["decode"], "decoder")
    assert o["qkv_proj"]["params"] == 4544 * (4544 + 2 * 64)  # transformers: hidden + 2·head_dim
    assert [n for n in names(r["decode"]) if "norm" in n or "residual" in n] == ["attn_norm", "residual"]


# ---- ALiBi ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["bloom-560m", "mpt-7b", "falcon-rw-1b"])
def test_alibi_adds_one_flop_per_score_no_rotary_no_parameters(key):
    m = lr.load_model(key)
    assert m.position == "alibi" and m.position_rows == 0
    assert all(lt.attention.alibi and lt.attention.rotary_dim == 0 for lt in m.layer_types)
    r = lr.analyze(key, H100, batch_size=1, prompt_len=T, gen_len=1, attention="causal").to_dict()
    o = ops(r["prefill"], "decoder")
    assert "rotary" not in o
    H = m.num_heads
    pairs = T * (T + 1) / 2  # causal prefill: query i sees i + 1 keys
    assert o["attn_softmax"]["flops"] == H * pairs * (5 + 1)  # softmax 5 + the bias add 1 per score
    assert o["attn_softmax"]["params"] == 0
    assert "ALiBi" in o["attn_softmax"]["flops_formula"]


def test_bloom_embedding_layernorm_and_tied_head():
    r = lr.analyze("bloom-560m", H100, prompt_len=16, gen_len=1)
    o = ops(r.to_dict()["decode"], "model")
    assert o["embed_norm"]["params"] == 2 * 1024  # word_embeddings_layernorm: weight and bias
    h, L, V = 1024, 24, 250880
    layer = h * 3 * h + 3 * h + h * h + h + 2 * h * 4 * h + 4 * h + h + 2 * 2 * h
    assert r.params_total == V * h + 2 * h + L * layer + 2 * h


# ---- parallel blocks -----------------------------------------------------------------------


def test_parallel_blocks_one_or_two_norms_and_sequential_neox():
    def layer_ops(key):
        d = lr.analyze(key, H100, prompt_len=16, gen_len=1).to_dict()["decode"]
        return [n for n in names(d) if "norm" in n or "residual" in n]

    assert layer_ops("gpt-j-6b") == ["attn_norm", "residual"]  # GPT-J: x + attn(ln(x)) + mlp(ln(x))
    assert layer_ops("gpt-neox-20b") == ["attn_norm", "mlp_norm", "residual"]  # x + attn(ln1 x) + mlp(ln2 x)
    # RedPajama-INCITE-3B: use_parallel_residual false → the sequential block
    assert layer_ops("RedPajama-INCITE-Base-3B-v1") == ["attn_norm", "attn_residual", "mlp_norm", "mlp_residual"]
    assert layer_ops("c4ai-command-r-v01") == ["attn_norm", "residual"]  # Cohere: one norm, parallel
    assert "parallel_attn" not in UNSUPPORTED_FIELDS and "use_parallel_residual" not in UNSUPPORTED_FIELDS


def test_parallel_residual_adds_attention_and_mlp_once():
    d = lr.analyze("gpt-j-6b", H100, batch_size=2, prompt_len=16, gen_len=1).to_dict()["decode"]
    res = ops(d, "decoder")["residual"]
    assert res["flops"] == 2 * 2 * 4096  # x + attention + MLP: 2 adds per element, 2 tokens


def test_cohere_layernorm_without_bias_and_qk_norm():
    r = lr.analyze("c4ai-command-r-v01", H100, prompt_len=16, gen_len=1).to_dict()
    assert ops(r["decode"], "decoder")["attn_norm"]["params"] == 8192  # CohereLayerNorm: a weight, no bias
    cfg = json.loads((MODELS_DIR / _catalog_index()["c4ai-command-r-v01"]["file"]).read_text())
    with_qk = parse_config(dict(cfg, use_qk_norm=True))
    a = with_qk.layer_types[0].attention
    assert a.qk_norm == "full"  # q_norm (heads, head_dim) and k_norm (kv heads, head_dim)
    gap = (
        lr.analyze(with_qk, H100, prompt_len=16, gen_len=1).params_total
        - lr.analyze("c4ai-command-r-v01", H100, prompt_len=16, gen_len=1).params_total
    )
    assert gap == 40 * (64 + 64) * 128


# ---- post-only norms, sliding layers without rotary ----------------------------------------


def test_olmo2_norms_after_attention_and_mlp_only():
    d = lr.analyze("OLMo-2-1124-7B", H100, prompt_len=16, gen_len=1).to_dict()["decode"]
    assert [n for n in names(d) if "norm" in n] == ["qk_norm", "post_attn_norm", "post_mlp_norm"]
    assert ops(d, "decoder")["qk_norm"]["params"] == (32 + 32) * 128  # q and k RMSNorm over the whole projection


def test_exaone4_and_cohere2_full_layers_have_no_rotary():
    for key, full, sliding in (("EXAONE-4.0-32B", 16, 48), ("c4ai-command-r7b-12-2024", 8, 24)):
        m = lr.load_model(key)
        counts = {lt.name: lt.count for lt in m.layer_types}
        assert counts == {"full": full, "sliding": sliding}, key
        assert m.layer_plan[:4] == ["sliding", "sliding", "sliding", "full"]
        d = lr.analyze(key, H100, prompt_len=16, gen_len=1).to_dict()["decode"]
        assert "rotary" in ops(d, "sliding") and "rotary" not in ops(d, "full"), key


def test_ernie_moe_layer_plan():
    m = lr.load_model("ERNIE-4.5-21B-A3B-PT")
    assert m.layer_plan == ["dense"] + ["moe"] * 27  # moe_layer_start_index 1, interval 1
    moe = next(lt for lt in m.layer_types if lt.name == "moe").mlp
    assert (moe.num_experts, moe.top_k, moe.shared_intermediate_size) == (64, 6, 2 * 1536)


# ---- InternLM2: no transformers class, derived by hand ------------------------------------


def test_internlm2_by_hand():
    # internlm2-chat-7b: h 4096, 32 heads of 128, 8 KV heads, MLP 14336, vocab 92544, 32 layers, untied
    h, H, Hkv, d, I, V, L = 4096, 32, 8, 128, 14336, 92544, 32
    # wqkv [q | k | v] + wo + w1, w3, w2 (gated SiLU) + attention_norm and ffn_norm, no biases
    linear = h * (H + 2 * Hkv) * d + H * d * h + 3 * h * I
    r = lr.analyze("internlm2-chat-7b", H100, batch_size=1, prompt_len=T, gen_len=2, logits="all", attention="full")
    assert r.params_total == V * h + L * (linear + 2 * h) + h + V * h
    # prefill: 2 FLOPs per weight per token, + scores and values over the full T×T matrix per head
    assert r.prefill.matmul_flops == 2 * T * (L * linear + h * V) + L * 2 * (2 * H * d * T * T)
    # decode of token T+1: it attends the T cached keys and itself
    assert r.decode.matmul_flops == 2 * (L * linear + h * V) + L * 2 * (2 * H * d * (T + 1))
    assert r.memory["kv_bytes_per_token"] == L * 2 * Hkv * d * 2
    d0 = ops(r.to_dict()["decode"], "decoder")
    assert "qkv_proj" in d0 and "q_proj" not in d0  # one fused projection


# ---- configs the engine refuses, by name --------------------------------------------------


@pytest.mark.parametrize(
    "key, edit, field",
    [
        ("mpt-7b", {"attn_config": {"attn_type": "multiquery_attention"}}, "attn_config.attn_type"),
        ("mpt-7b", {"attn_config": {"qk_ln": True}}, "attn_config.qk_ln"),
        ("falcon-40b", {"parallel_attn": False}, "parallel_attn"),
        ("bloom-560m", {"apply_residual_connection_post_layernorm": True}, "apply_residual_connection_post_layernorm"),
        ("ERNIE-4.5-21B-A3B-PT", {"use_bias": True}, "use_bias"),
        ("phi-4", {"partial_rotary_factor": 1.5}, "partial_rotary_factor"),
    ],
)
def test_unsupported_settings_name_the_field(key, edit, field):
    cfg = json.loads((MODELS_DIR / _catalog_index()[key]["file"]).read_text())
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        parse_config({**cfg, **edit})


# ---- the catalog fragment ------------------------------------------------------------------


def test_fragment_entries_have_files_sources_and_published_sizes():
    frag = json.loads((MODELS_DIR / "index_arch-families.json").read_text())
    entries = frag["models"]
    assert len(entries) >= 25 and len(_catalog_index()) >= 60
    for key, e in entries.items():
        assert (MODELS_DIR / e["file"]).is_file(), key
        assert e["source_url"].startswith("https://") and e["provenance"], key
        assert catalog_entry(e["hf_id"])["key"] == key
    # each config's parameter count matches the size in its name or model card (rounded: InternLM2 "7B" has
    # 7.74 B) — a check of the reconstructed shapes: one layer more or less is already 3 % at 32 layers
    scale = {"M": 1e6, "B": 1e9}
    for key, e in entries.items():
        pub = float(e["published_params"][:-1]) * scale[e["published_params"][-1]]
        got = lr.analyze(key, H100, prompt_len=16, gen_len=1).params_total
        assert got == pytest.approx(pub, rel=0.11 if pub >= 1e9 else 0.01), (key, got, pub)


# ---- families and options without a catalog entry: transformers' config defaults, on meta ---------


@pytest.mark.parametrize(
    "mt, overrides",
    [
        ("olmo3", {}),  # 3 sliding + 1 full layer by default
        ("ministral", {"head_dim": 128}),
        ("cohere", {"use_qk_norm": True}),
        ("exaone4", {}),
        ("gpt_bigcode", {"multi_query": False}),
        (
            "falcon",
            {
                "new_decoder_architecture": True,
                "hidden_size": 4096,
                "num_attention_heads": 32,
                "num_kv_heads": 8,
                "num_ln_in_parallel_attn": 1,
            },
        ),  # falcon-11B-like
        ("falcon", {"alibi": True, "multi_query": False, "parallel_attn": False, "bias": True}),
        ("gpt_neox", {"use_parallel_residual": False, "rotary_pct": 0.5}),
        ("starcoder2", {"use_bias": False}),
        ("hunyuan_v1_dense", {"head_dim": 128, "num_key_value_heads": 8}),
        ("seed_oss", {"attention_out_bias": True, "mlp_bias": True}),
        ("ernie4_5", {"use_bias": True}),
    ],
)
def test_family_defaults_match_transformers(mt, overrides):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from torch.utils.flop_counter import FlopCounterMode

    n_layers = {"num_hidden_layers": 4, "n_layer": 4}
    cfg = transformers.AutoConfig.for_model(mt, **overrides)
    for k, v in n_layers.items():
        if hasattr(cfg, k):
            setattr(cfg, k, v)
    if hasattr(cfg, "layer_types") and cfg.layer_types is not None:
        cfg.layer_types = cfg.layer_types[:4]
    cfg._attn_implementation = "eager"
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(cfg)
    d = cfg.to_dict()
    ids = torch.zeros((1, 64), dtype=torch.long, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        out = model(input_ids=ids, use_cache=True)
    cache = out.past_key_values
    kv = sum(t.numel() for layer in cache.layers for t in (layer.keys, layer.values) if isinstance(t, torch.Tensor))
    r = lr.analyze(parse_config(d), H100, batch_size=1, prompt_len=64, gen_len=1, logits="all", attention="full")
    assert r.params_total == sum(p.numel() for p in model.parameters())
    assert r.prefill.matmul_flops == pytest.approx(fc.get_total_flops(), rel=5e-3)
    expand = d["num_attention_heads"] // d["num_kv_heads"] if mt == "falcon" and d["new_decoder_architecture"] else 1
    assert r.memory["kv_cache_prompt_bytes"] * expand == kv * 2


# ---- ChatGLM (remote code): by hand, and against transformers' `glm` port on the mapped config ------


def test_chatglm3_by_hand():
    # chatglm3-6b: hidden 4096, 28 layers, 32 heads of kv_channels 128, 2 K/V groups, ffn 13696, padded vocab 65024
    h, L, H, G, d, I, V = 4096, 28, 32, 2, 128, 13696, 65024
    qkv = h * (H + 2 * G) * d + (H + 2 * G) * d  # query_key_value with add_qkv_bias
    layer = qkv + H * d * h + h * 2 * I + I * h + 2 * h  # + dense, dense_h_to_4h [gate | up], dense_4h_to_h, 2 RMSNorms
    r = lr.analyze("chatglm3-6b", H100, prompt_len=16, gen_len=1)
    assert r.params_total == V * h + L * layer + h + V * h == 6_243_584_000  # the count THUDM publishes
    assert r.memory["kv_bytes_per_token"] == L * 2 * G * d * 2
    a = r.model.layer_types[0].attention
    assert a.rotary_dim == d // 2  # ChatGLM rotates half of each head


def test_chatglm_equals_transformers_glm_port():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from torch.utils.flop_counter import FlopCounterMode

    c = json.loads((MODELS_DIR / _catalog_index()["chatglm3-6b"]["file"]).read_text())
    c = dict(c, num_layers=2)
    glm = transformers.AutoConfig.for_model(
        "glm",
        hidden_size=c["hidden_size"],
        num_hidden_layers=c["num_layers"],
        num_attention_heads=c["num_attention_heads"],
        num_key_value_heads=c["multi_query_group_num"],
        head_dim=c["kv_channels"],
        intermediate_size=c["ffn_hidden_size"],
        vocab_size=c["padded_vocab_size"],
        attention_bias=c["add_qkv_bias"],
        pad_token_id=0,
    )
    glm._attn_implementation = "eager"
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(glm)
    ids = torch.zeros((1, 64), dtype=torch.long, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(input_ids=ids)
    r = lr.analyze(parse_config(c), H100, prompt_len=64, gen_len=1, logits="all", attention="full")
    assert r.params_total == sum(p.numel() for p in model.parameters())
    assert r.prefill.matmul_flops == fc.get_total_flops()
