"""Families added for issue 12 (items 6 and 8): the traits the math depends on, and their config fields.

Each entry was read from the transformers 5.24 modeling file of that family (parameter names and
shapes of a model built from the config class defaults on the meta device), except ``internlm2``,
a remote-code family with no transformers class: its structure is taken from InternLM's
``modeling_internlm2.py`` (``wqkv`` fused [q | k | v] per KV group, ``wo``, ``w1``/``w3``/``w2``
gated SiLU MLP, ``attention_norm`` and ``ffn_norm`` RMSNorms, untied ``output``) and checked by a
hand derivation in tests/test_families.py.

Trait keys beyond those of :data:`models.FAMILIES`:
- ``norm="ln_nobias"``: a LayerNorm with a weight and no bias (Cohere, MPT);
- ``post_only``: no norm before attention and MLP, one after each (OLMo-2/3, EXAONE-4);
- ``sliding_pattern``: the default ``sliding_window_pattern`` (every n-th layer full) when the config
  has no ``layer_types``;
- ``nope_full``: full-attention layers apply no rotary embedding ("always": Cohere-2; "with_window":
  EXAONE-4, only when the config has a sliding window);
- ``embed_norm``: a LayerNorm right after the token embedding (Bloom).

Scalar multipliers that leave every FLOP count unchanged and are therefore not modelled: Granite's
``embedding_multiplier``, ``residual_multiplier``, ``attention_multiplier`` (replaces 1/√d, folded into
Q like it) and ``logits_scaling`` (a division of the logits); Cohere's ``logit_scale``.
"""

from __future__ import annotations

from typing import Any

from .family_traits import FamilyTraits

FAMILIES_MORE: dict[str, FamilyTraits] = {
    # Falcon: fused query_key_value, one or two LayerNorms feeding attention and MLP in parallel,
    # rotary or ALiBi (falcon-rw), all linear biases from `bias`; tied lm_head
    "falcon": FamilyTraits(
        norm="ln", mlp="plain", pos="rope", tie=True, fused_qkv=True, qkv_bias="bias", o_bias="bias", mlp_bias="bias"
    ),
    # GPT-NeoX / Pythia: fused qkv with bias, partial rotary (rotary_pct), parallel residual with two norms
    "gpt_neox": FamilyTraits(
        norm="ln",
        mlp="plain",
        pos="rope",
        tie=False,
        fused_qkv=True,
        qkv_bias=("attention_bias", True),
        o_bias=("attention_bias", True),
        mlp_bias=True,
    ),
    # GPT-J: q/k/v/out without bias, fc_in/fc_out with bias, one LayerNorm, parallel block, lm_head bias
    "gptj": FamilyTraits(
        norm="ln", mlp="plain", pos="rope", tie=False, mlp_bias=True, parallel=True, lm_head_bias=True
    ),
    # Bloom: ALiBi, LayerNorm after the embedding, fused qkv, biases everywhere, tied
    "bloom": FamilyTraits(
        norm="ln",
        mlp="plain",
        pos="alibi",
        tie=True,
        fused_qkv=True,
        qkv_bias=True,
        o_bias=True,
        mlp_bias=True,
        embed_norm=True,
    ),
    # MPT: ALiBi, fused Wqkv, no linear biases, LayerNorms without bias, tied
    "mpt": FamilyTraits(norm="ln_nobias", mlp="plain", pos="alibi", tie=True, fused_qkv=True, mlp_bias=False),
    # GPTBigCode (StarCoder 1, SantaCoder): GPT-2 with multi-query attention in one fused c_attn
    "gpt_bigcode": FamilyTraits(
        norm="ln", mlp="plain", pos="learned", tie=True, fused_qkv=True, qkv_bias=True, o_bias=True, mlp_bias=True
    ),
    # StarCoder2: LayerNorm with bias, plain GELU MLP, GQA, biases from `use_bias`, window on every layer
    "starcoder2": FamilyTraits(
        norm="ln",
        mlp="plain",
        pos="rope",
        tie=True,
        qkv_bias=("use_bias", True),
        o_bias=("use_bias", True),
        mlp_bias=("use_bias", True),
        sliding_all=True,
    ),
    # Cohere (Command-R, Aya): one bias-free LayerNorm feeds attention and MLP in parallel; optional
    # per-head q/k LayerNorms of shape (heads, head_dim)
    "cohere": FamilyTraits(
        norm="ln_nobias",
        mlp="gated",
        pos="rope",
        tie=True,
        qkv_bias="attention_bias",
        o_bias="attention_bias",
        mlp_bias=False,
        parallel=True,
    ),
    # Cohere-2 (Command-R7B, Command-A): as Cohere, 3 sliding + 1 full layer, no rotary on full layers
    "cohere2": FamilyTraits(
        norm="ln_nobias",
        mlp="gated",
        pos="rope",
        tie=True,
        qkv_bias="attention_bias",
        o_bias="attention_bias",
        mlp_bias=False,
        parallel=True,
        layer_types=True,
        sliding_pattern=4,
        nope_full="always",
    ),
    # OLMo-2: norms after attention and after the MLP only; q/k RMSNorm over the whole projection
    "olmo2": FamilyTraits(
        norm="rms",
        mlp="gated",
        pos="rope",
        tie=False,
        qkv_bias="attention_bias",
        o_bias="attention_bias",
        mlp_bias=False,
        qk_norm="full",
        post_only=True,
    ),
    # OLMo-3: OLMo-2 with 3 sliding-window layers out of 4
    "olmo3": FamilyTraits(
        norm="rms",
        mlp="gated",
        pos="rope",
        tie=False,
        qkv_bias="attention_bias",
        o_bias="attention_bias",
        mlp_bias=False,
        qk_norm="full",
        post_only=True,
        layer_types=True,
        sliding_pattern=4,
    ),
    # Granite: Llama with scalar multipliers (see the module docstring)
    "granite": FamilyTraits(
        norm="rms", mlp="gated", pos="rope", tie=False, qkv_bias="attention_bias", o_bias="attention_bias"
    ),
    # GLM-4 dense (0414): q/k/v bias, fused gate_up, norms before and after attention and MLP, partial rotary
    "glm4": FamilyTraits(
        norm="rms",
        mlp="gated",
        pos="rope",
        tie=False,
        qkv_bias="attention_bias",
        mlp_bias=False,
        fused_gate_up=True,
        post_norms=True,
    ),
    # GLM (transformers' port of GLM-4-9B-chat, glm-4-9b-chat-hf): q/k/v bias, fused gate_up, partial rotary
    "glm": FamilyTraits(
        norm="rms", mlp="gated", pos="rope", tie=False, qkv_bias="attention_bias", mlp_bias=False, fused_gate_up=True
    ),
    # ChatGLM2/3 and GLM-4-9B-chat (remote code, read analytically): the same blocks as `glm` with one fused
    # query_key_value, multi_query_group_num KV heads, dense_h_to_4h = [gate | up]; biases from add_qkv_bias
    # and add_bias_linear; checked against transformers' `glm` class on the mapped config (tests/test_families.py)
    "chatglm": FamilyTraits(
        norm="rms",
        mlp="gated",
        pos="rope",
        tie=False,
        fused_qkv=True,
        fused_gate_up=True,
        qkv_bias="add_qkv_bias",
        o_bias="add_bias_linear",
        mlp_bias="add_bias_linear",
    ),
    # EXAONE-4: post-norm only, per-head q/k RMSNorm, 3 sliding + 1 full layer without rotary
    "exaone4": FamilyTraits(
        norm="rms",
        mlp="gated",
        pos="rope",
        tie=False,
        mlp_bias=False,
        qk_norm="head",
        post_only=True,
        layer_types=True,
        sliding_pattern=4,
        nope_full="with_window",
    ),
    # ERNIE-4.5 dense: Llama-like, every linear (q, k, v, o, MLP) biased by `use_bias`, tied
    "ernie4_5": FamilyTraits(
        norm="rms", mlp="gated", pos="rope", tie=True, qkv_bias="use_bias", o_bias="use_bias", mlp_bias="use_bias"
    ),
    # ERNIE-4.5 MoE: routed + shared experts from moe_layer_start_index every moe_layer_interval layers
    "ernie4_5_moe": FamilyTraits(
        norm="rms",
        mlp="gated",
        pos="rope",
        tie=True,
        qkv_bias="use_bias",
        o_bias="use_bias",
        mlp_bias="use_bias",
        moe="ernie",
        lm_head_bias="use_bias",
    ),
    # Seed-OSS: q/k/v bias (attention_bias), o bias (attention_out_bias), MLP bias (mlp_bias)
    "seed_oss": FamilyTraits(
        norm="rms", mlp="gated", pos="rope", tie=False, qkv_bias="attention_bias", o_bias="attention_out_bias"
    ),
    # Hunyuan dense: per-head q/k RMSNorm, attention biases, MLP without bias
    "hunyuan_v1_dense": FamilyTraits(
        norm="rms",
        mlp="gated",
        pos="rope",
        tie=False,
        qkv_bias="attention_bias",
        o_bias="attention_bias",
        mlp_bias=False,
        qk_norm="head",
    ),
    # Ministral (transformers' `ministral`): Mistral with per-layer `layer_types`
    "ministral": FamilyTraits(norm="rms", mlp="gated", pos="rope", tie=False, sliding_all=True),
    # InternLM3: transformers builds it as Llama; `qkv_bias` biases q, k, v and o, `bias` the MLP
    "internlm3": FamilyTraits(
        norm="rms", mlp="gated", pos="rope", tie=False, qkv_bias="qkv_bias", o_bias="qkv_bias", mlp_bias="bias"
    ),
    # InternLM2 / 2.5 (remote code): Llama with one fused wqkv projection; biases from `bias`
    "internlm2": FamilyTraits(
        norm="rms", mlp="gated", pos="rope", tie=False, fused_qkv=True, qkv_bias="bias", o_bias="bias", mlp_bias=False
    ),
}


def _int(cfg: dict, key: str, default: int | None, minimum: int = 0) -> int | None:
    """An optional integer field: models' ``_opt_int`` (one validation rule for every family)."""
    from .models import _opt_int  # imported here: models imports this module

    return _opt_int(cfg, key, default, minimum=minimum)


def _reject(cond: bool, field: str, what: str) -> None:
    if cond:
        raise ValueError(f"config field {field!r}: {what} is not supported by this engine")


def family_fields(cfg: dict, mt: str, *, h: int, n_heads: int) -> dict[str, Any]:
    """Family-specific readings of a config: KV heads, MLP width and activation, block layout, positions.

    Returns only the keys a family sets: ``num_kv_heads``, ``intermediate_size``, ``act``, ``parallel``,
    ``parallel_norms`` (norms feeding a parallel block), ``pos``, ``head_dim``, ``vocab_size``.
    """
    out: dict[str, Any] = {}
    if mt == "falcon":
        new_arch = bool(cfg.get("new_decoder_architecture"))
        if new_arch:  # grouped KV heads (falcon-40b/180b); transformers' config reads n_head_kv into num_kv_heads
            kv = _int(cfg, "num_kv_heads", None, 1) or _int(cfg, "n_head_kv", None, 1) or n_heads
        elif cfg.get("multi_query", True):
            kv = 1  # falcon-7b: one K/V head
        else:
            kv = n_heads  # transformers splits query_key_value into 3 × num_heads heads
        _reject(new_arch and not cfg.get("parallel_attn", True), "parallel_attn", "false with new_decoder_architecture")
        out["num_kv_heads"] = kv
        out["intermediate_size"] = _int(cfg, "ffn_hidden_size", None, 1) or 4 * h
        out["act"] = cfg.get("activation") or "gelu"
        out["parallel"] = new_arch or bool(cfg.get("parallel_attn", True))
        n_ln = _int(cfg, "num_ln_in_parallel_attn", None, 1)
        out["parallel_norms"] = (n_ln or 2) if new_arch else 1  # ln_attn + ln_mlp, or one input_layernorm
        out["pos"] = "alibi" if cfg.get("alibi") else "rope"
    elif mt == "gpt_neox":
        out["parallel"] = bool(cfg.get("use_parallel_residual", True))
        out["parallel_norms"] = 2  # input_layernorm → attention, post_attention_layernorm → MLP
    elif mt == "gptj":
        out["intermediate_size"] = _int(cfg, "n_inner", None, 1) or 4 * h
        out["act"] = cfg.get("activation_function") or "gelu_new"
        out["parallel_norms"] = 1
    elif mt == "bloom":
        _reject(
            bool(cfg.get("apply_residual_connection_post_layernorm")),
            "apply_residual_connection_post_layernorm",
            "true",
        )
        out["intermediate_size"] = 4 * h  # dense_h_to_4h
        out["act"] = "gelu"  # bloom_gelu_forward: the tanh approximation
    elif mt == "mpt":
        ac = cfg.get("attn_config") or {}
        if not isinstance(ac, dict):
            raise ValueError("config field 'attn_config' must be a dict")
        _reject(
            ac.get("attn_type", "multihead_attention") != "multihead_attention",
            "attn_config.attn_type",
            f"{ac.get('attn_type')!r} (transformers' MPT builds multihead_attention only)",
        )
        _reject(bool(ac.get("qk_ln")), "attn_config.qk_ln", "true (transformers' MPT has no q/k LayerNorm)")
        _reject(ac.get("alibi", True) is False, "attn_config.alibi", "false (transformers' MPT always uses ALiBi)")
        out["intermediate_size"] = (_int(cfg, "expansion_ratio", 4, 1) or 4) * h
        out["act"] = "gelu"
    elif mt == "gpt_bigcode":
        _reject(bool(cfg.get("add_cross_attention")), "add_cross_attention", "true")
        out["num_kv_heads"] = 1 if cfg.get("multi_query", True) else n_heads
        out["intermediate_size"] = _int(cfg, "n_inner", None, 1) or 4 * h
        out["act"] = cfg.get("activation_function") or "gelu_pytorch_tanh"
    elif mt in ("cohere", "cohere2"):
        out["parallel_norms"] = 1
    elif mt == "chatglm":
        _reject(cfg.get("rmsnorm") is False, "rmsnorm", "false (LayerNorm ChatGLM-6B v1)")
        _reject(
            bool(cfg.get("apply_residual_connection_post_layernorm")),
            "apply_residual_connection_post_layernorm",
            "true",
        )
        _reject(cfg.get("post_layer_norm") is False, "post_layer_norm", "false")
        out["num_kv_heads"] = (
            _int(cfg, "multi_query_group_num", 1, 1) if cfg.get("multi_query_attention") else n_heads
        )  # K/V groups
        out["head_dim"] = _int(cfg, "kv_channels", None, 1) or h // n_heads
        out["vocab_size"] = _int(cfg, "padded_vocab_size", None, 1) or _int(cfg, "vocab_size", None, 1)
        out["intermediate_size"] = _int(cfg, "ffn_hidden_size", None, 1) or 4 * h
        out["act"] = "silu"  # swiglu: silu(gate) · up
    elif mt == "ernie4_5_moe":
        _reject(bool(cfg.get("use_bias")), "use_bias", "true in an ERNIE-4.5 MoE model (biased experts)")
    return out


def rotary_dim_of(cfg: dict, mt: str, head_dim: int) -> int:
    """Dimensions rotated per head: ``rotary_dim`` (GPT-J), else head_dim × the partial rotary factor.

    The factor is read from ``partial_rotary_factor`` (top level or in ``rope_parameters``), or GPT-NeoX's
    ``rotary_pct`` (default 0.25 there); GLM-4's default is 0.5, everyone else's 1.
    """
    if mt == "gptj":
        rd = _int(cfg, "rotary_dim", None, 1)
        return head_dim if rd is None else min(rd, head_dim)
    rp = cfg["rope_parameters"] if isinstance(cfg.get("rope_parameters"), dict) else {}
    default = {"gpt_neox": 0.25, "glm4": 0.5, "glm": 0.5, "chatglm": 0.5}.get(mt, 1.0)  # ChatGLM: half of each head
    f = cfg.get("partial_rotary_factor", rp.get("partial_rotary_factor"))
    if f is None and mt == "gpt_neox":
        f = cfg.get("rotary_pct")
    f = default if f is None else f
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
        raise ValueError(f"config field 'partial_rotary_factor' must be a number in (0, 1], got {f!r}")
    return int(head_dim * f)  # transformers: int(head_dim * partial_rotary_factor)
