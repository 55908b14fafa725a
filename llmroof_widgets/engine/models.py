"""Model configurations: read a Hugging Face ``config.json`` into a normalized description.

A :class:`ModelConfig` is data only (it never executes code from a config, never uses
``trust_remote_code``). It lists the *layer types* of a model (dense, MoE, sliding-window,
full-attention, MLA ...) with how many layers of each there are, so the operator builder in
:mod:`llmroof_widgets.engine.ops` can count each type once and multiply.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field, replace
from typing import Any, overload

import numpy as np

from . import families_gemma3n, families_gemma4, variants
from . import families_hybrid as hybrid
from .catalog import (  # noqa: F401 - re-exported: the catalog and file reading lived here
    DATA_DIR,
    HUB_TIMEOUT_S,
    MAX_CONFIG_BYTES,
    MODELS_DIR,
    VARIANT_SUFFIXES,
    _catalog_index,
    _fetch_hub_config,
    _hub_offline,
    _load_catalog_config,
    _name_map,
    _resolve_variant,
    _short,
    _variants_of,
    catalog_entry,
    list_models,
    read_config,
    read_json_file,
    read_text_file,
)
from .families_hybrid import HYBRID_FAMILIES, RecurrentSpec
from .families_more import FAMILIES_MORE, family_fields, rotary_dim_of
from .families_ssm import SSM_FAMILIES
from .family_traits import FamilyTraits

# model_type → family traits the math depends on. Each entry was checked against the
# transformers 5.x modeling file of that family (parameter names, biases, norms, ties).
FAMILIES: dict[str, FamilyTraits] = {
    # Llama-like: RMSNorm, gated SiLU MLP, RoPE; `attention_bias` → q/k/v/o biases, `mlp_bias` → MLP biases
    "llama": FamilyTraits(
        norm="rms", mlp="gated", pos="rope", tie=False, qkv_bias="attention_bias", o_bias="attention_bias"
    ),
    "mistral": FamilyTraits(norm="rms", mlp="gated", pos="rope", tie=False, sliding_all=True),
    "mixtral": FamilyTraits(norm="rms", mlp="gated", pos="rope", tie=False, sliding_all=True, moe="mixtral"),
    "qwen2": FamilyTraits(norm="rms", mlp="gated", pos="rope", tie=False, qkv_bias=True, qwen_sliding=True),
    "qwen2_moe": FamilyTraits(
        norm="rms", mlp="gated", pos="rope", tie=False, qkv_bias=True, moe="qwen2_moe", qwen_sliding=True
    ),
    "qwen3": FamilyTraits(
        norm="rms",
        mlp="gated",
        pos="rope",
        tie=False,
        qkv_bias="attention_bias",
        o_bias="attention_bias",
        qk_norm="head",
        qwen_sliding=True,
    ),
    "qwen3_moe": FamilyTraits(
        norm="rms",
        mlp="gated",
        pos="rope",
        tie=False,
        qkv_bias="attention_bias",
        o_bias="attention_bias",
        qk_norm="head",
        moe="qwen3_moe",
        qwen_sliding=True,
    ),
    "olmoe": FamilyTraits(
        norm="rms",
        mlp="gated",
        pos="rope",
        tie=False,
        qkv_bias="attention_bias",
        o_bias="attention_bias",
        qk_norm="full",
        moe="olmoe",
    ),
    "gemma": FamilyTraits(norm="rms", mlp="gated", pos="rope", tie=True, embed_scale=True),
    "gemma2": FamilyTraits(
        norm="rms",
        mlp="gated",
        pos="rope",
        tie=True,
        embed_scale=True,
        post_norms=True,
        softcap=True,
        alternate_sliding=True,
    ),
    "gemma3_text": FamilyTraits(
        norm="rms",
        mlp="gated",
        pos="rope",
        tie=True,
        embed_scale=True,
        post_norms=True,
        qk_norm="head",
        softcap=True,
        layer_types=True,
    ),
    "phi3": FamilyTraits(
        norm="rms", mlp="gated", pos="rope", tie=False, fused_qkv=True, fused_gate_up=True, sliding_all=True
    ),
    "phimoe": FamilyTraits(
        norm="ln",
        mlp="gated",
        pos="rope",
        tie=False,
        qkv_bias="attention_bias",
        o_bias="attention_bias",
        moe="phimoe",
        sliding_all=True,
        lm_head_bias="lm_head_bias",
    ),
    # phi-1/phi-2: one LayerNorm feeds attention and MLP in parallel; partial rotary; biases everywhere
    "phi": FamilyTraits(
        norm="ln",
        mlp="plain",
        pos="rope",
        tie=False,
        qkv_bias=True,
        o_bias=True,
        mlp_bias=True,
        parallel=True,
        lm_head_bias=True,
    ),
    "gpt2": FamilyTraits(
        norm="ln", mlp="plain", pos="learned", tie=True, qkv_bias=True, o_bias=True, mlp_bias=True, fused_qkv=True
    ),
    "opt": FamilyTraits(
        norm="ln",
        mlp="plain",
        pos="learned",
        tie=True,
        qkv_bias=("enable_bias", True),
        o_bias=("enable_bias", True),
        mlp_bias=("enable_bias", True),
    ),
    "deepseek_v2": FamilyTraits(norm="rms", mlp="gated", pos="rope", tie=False, mla=True, moe="deepseek"),
    "deepseek_v3": FamilyTraits(norm="rms", mlp="gated", pos="rope", tie=False, mla=True, moe="deepseek"),
    "gpt_oss": FamilyTraits(
        norm="rms",
        mlp="gated",
        pos="rope",
        tie=False,
        qkv_bias=True,
        o_bias=True,
        moe="gpt_oss",
        layer_types=True,
        sinks=True,
    ),
    # attention / MoE / MTP variants (issue 12): see engine/variants.py for the per-layer fields
    # Kimi-K2: DeepseekV3's code
    "kimi_k2": FamilyTraits(norm="rms", mlp="gated", pos="rope", tie=False, mla=True, moe="deepseek"),
    "deepseek_v32": FamilyTraits(
        norm="rms", mlp="gated", pos="rope", tie=False, mla=True, moe="deepseek", indexer=True
    ),
    # GLM-5: DeepSeek-V3.2's MLA + indexer layout; `indexer_types` "shared" layers reuse the previous selection
    "glm_moe_dsa": FamilyTraits(norm="rms", mlp="gated", pos="rope", tie=False, mla=True, moe="deepseek", indexer=True),
    # GLM-4.5/4.6: q/k/v bias from attention_bias (o_proj never), optional per-head qk norm, half rotary
    "glm4_moe": FamilyTraits(
        norm="rms",
        mlp="gated",
        pos="rope",
        tie=False,
        qkv_bias="attention_bias",
        qk_norm=("use_qk_norm", "head"),
        moe="deepseek",
        rotary_default=0.5,
    ),
    # MiniMax-M2: RMSNorm over the whole q and k projections, sigmoid router with a score bias, rotary_dim
    "minimax_m2": FamilyTraits(norm="rms", mlp="gated", pos="rope", tie=False, qk_norm="full", moe="minimax"),
    # SmolLM3: Llama with NoPE layers (no_rope_layers[i] = 0), biases from attention_bias / mlp_bias
    "smollm3": FamilyTraits(
        norm="rms",
        mlp="gated",
        pos="rope",
        tie=True,
        qkv_bias="attention_bias",
        o_bias="attention_bias",
        nope=True,
        layer_types=True,
    ),
    # Gemma-3n text: KV shared by the last layers, per-layer inputs, AltUp, LAuReL (engine/families_gemma3n.py)
    "gemma3n_text": FamilyTraits(
        norm="rms",
        mlp="gated",
        pos="rope",
        tie=True,
        embed_scale=True,
        post_norms=True,
        qk_norm="head",
        softcap=True,
        layer_types=True,
        sliding_pattern=5,
        gemma3n=True,
    ),
    # Gemma-4 text: per-layer head_dim (global_head_dim on full layers), K = V on full layers, KV shared by
    # the last layers, per-layer inputs, dense MLP + routed experts (engine/families_gemma4.py)
    "gemma4_text": FamilyTraits(
        norm="rms",
        mlp="gated",
        pos="rope",
        tie=True,
        embed_scale=True,
        post_norms=True,
        qk_norm="head",
        softcap=True,
        layer_types=True,
        sliding_pattern=6,
        gemma4=True,
    ),
    # Llama-4 text: chunked attention on RoPE layers, NoPE layers with temperature tuning, L2 qk norm,
    # MoE layers (routed experts + a shared expert) interleaved with dense ones
    "llama4_text": FamilyTraits(
        norm="rms",
        mlp="gated",
        pos="rope",
        tie=False,
        qkv_bias="attention_bias",
        o_bias="attention_bias",
        nope=True,
        layer_types=True,
        moe="llama4",
    ),
}
FAMILIES.update(FAMILIES_MORE)

FAMILIES.update(HYBRID_FAMILIES)  # hybrid / recurrent families (engine/families_hybrid.py)
FAMILIES.update(SSM_FAMILIES)  # Mamba, falcon-mamba, Mamba2, Bamba (engine/families_ssm.py)

# Fields whose presence changes the math in a way this engine does not represent.
UNSUPPORTED_FIELDS: dict[str, str | None] = {}

# FLOPs per element of each activation function (documented convention, see docs/conventions).
ACT_FLOPS = {
    "silu": 4,  # x·sigmoid(x): neg, exp, add, div (the multiply by x is the gate below)
    "swish": 4,
    "gelu": 8,  # erf/tanh polynomial, counted like tanh-GELU
    "gelu_new": 8,  # 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))): x³ (2), fma (2), tanh (~2), add, mul ×2
    "gelu_pytorch_tanh": 8,
    "gelu_fast": 8,
    "quick_gelu": 6,  # x·sigmoid(1.702·x): scale, neg, exp, add, div, mul (CLIP)
    "relu": 1,  # max(x, 0)
    "relu2": 2,  # max(x, 0)², squared ReLU (Nemotron-H)
    "gpt_oss_glu": 6,  # clamp, clamp, mul α, sigmoid (~4) → counted 6 incl. (up+1)
}


@dataclass(frozen=True)
class AttentionSpec:
    kind: str  # "mha" (MHA/GQA/MQA) or "mla"
    num_heads: int
    num_kv_heads: int
    head_dim: int  # dimension of q·k (MLA: nope + rope)
    v_head_dim: int
    window: int | None  # sliding window (None = full attention)
    qkv_bias: bool = False
    o_bias: bool = False
    fused_qkv: bool = False
    qk_norm: str | None = None  # None, "head" (per-head RMSNorm of head_dim), "full" (whole projection)
    sinks: bool = False  # per-head attention-sink logits (gpt-oss)
    softcap: bool = False  # tanh soft-capping of scores (gemma-2)
    rotary_dim: int = 0  # dims rotated per head (0 for learned positions, ALiBi and NoPE layers)
    alibi: bool = False  # ALiBi: a per-head linear bias added to every score (no rotary, no parameters)
    kv_shared: bool = False  # reuses an earlier layer's K/V (Gemma-3n): no k/v projections, no cache of its own
    v_norm: bool = False  # a weightless RMSNorm of v (Gemma-3n, Gemma-4)
    k_eq_v: bool = False  # no v_proj: the values are the k projection's output (Gemma-4 attention_k_eq_v)
    chunk: int | None = None  # chunked local attention (Llama-4): a query sees the keys of its own chunk only
    temperature: bool = False  # per-query attention temperature on q (Llama-4 NoPE layers)
    # sparse attention with an indexer (DeepSeek-V3.2 DSA): indexer heads, head dim, keys kept per query
    index_heads: int = 0
    index_head_dim: int = 0
    index_topk: int = 0
    out_gate: bool = False  # q_proj also yields a per-head sigmoid gate on the output (Qwen3-Next gated attention)
    # MLA (DeepSeek-V2/V3)
    q_lora_rank: int | None = None
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0

    def kv_elements_per_token(self) -> int:
        """Elements one token adds to this layer's KV cache."""
        if self.kv_shared:
            return 0  # the layer attends another layer's cache
        if self.kind == "mla":
            # MLA caches the shared latent c_KV and the decoupled RoPE key, not per-head K and V
            return self.kv_lora_rank + self.qk_rope_head_dim + self.index_head_dim  # + the indexer's key
        return self.num_kv_heads * (self.head_dim + self.v_head_dim)  # K and V of every KV head


@dataclass(frozen=True)
class MLPSpec:
    kind: str  # "dense" or "moe"
    intermediate_size: int
    gated: bool
    act: str
    bias: bool = False
    fused_gate_up: bool = False
    # MoE
    num_experts: int = 0
    top_k: int = 0
    expert_bias: bool = False
    router_bias: bool = False
    router_score_bias: bool = False  # DeepSeek-V3 e_score_correction_bias
    shared_intermediate_size: int = 0  # total width of the shared expert(s)
    shared_gate: bool = False  # Qwen-MoE sigmoid gate on the shared expert
    act_sparsity: bool = False  # Gemma-3n gaussian top-k on the gate activations (element-wise)
    latent_size: int = 0  # Nemotron-H moe_latent_size: routed experts work in this width (0: the hidden size)


@dataclass(frozen=True)
class LayerType:
    name: str  # e.g. "decoder", "sliding", "full", "moe", "dense", "mamba2", "gated_deltanet+moe"
    count: int
    attention: AttentionSpec | None  # None: a recurrent / convolution mixer, or an MLP-only block
    mlp: MLPSpec | None  # None: a mixer-only block (Nemotron-H)
    norms: int  # number of hidden-size norms in the layer
    post_norms: bool = False
    parallel: bool = False  # attention and MLP read the same normed input; one residual add of both
    pre_norms: bool = True  # a norm before attention and before the MLP (False: OLMo-2 / EXAONE-4 post-norm only)
    layers: tuple[int, ...] = ()  # indices (0-based) of the layers of this type
    mixer: RecurrentSpec | None = None  # recurrent / convolution token mixer (Mamba, Gated DeltaNet, short conv)


@dataclass(frozen=True)
class ModelConfig:
    name: str
    model_type: str
    hidden_size: int
    num_layers: int
    vocab_size: int
    layer_types: tuple[LayerType, ...]
    norm: str  # "rms" or "ln" (LayerNorm with bias)
    tie_embeddings: bool
    position: str  # "rope" or "learned"
    max_positions: int
    position_rows: int  # rows of the learned position table (OPT adds 2)
    embed_scale: bool = False
    final_norm: bool = True
    final_softcap: bool = False
    lm_head_bias: bool = False
    embed_dim: int = 0  # OPT word_embed_proj_dim (== hidden when no projection)
    embed_norm: bool = False  # a LayerNorm right after the token embedding (Bloom)
    quantization: dict | None = None
    # multi-token prediction: MTP modules the config declares (transformers does not build them), the
    # decoder block of one; ``mtp_head`` marks a ModelConfig that IS that module (a speculative draft)
    mtp_layers: int = 0
    mtp_layer: LayerType | None = None
    mtp_head: bool = False
    gemma3n: dict | None = None  # Gemma-3n extras (families_gemma3n.parse)
    gemma4: dict | None = None  # Gemma-4 extras (families_gemma4.parse)
    raw: dict = field(default_factory=dict, compare=False, repr=False)
    vision: Any = None  # vision.VisionSpec of a vision-language model (its encoder and projector), else None
    traced: Any = None  # traced.TracedModel when the rows come from tracing transformers (the traced path)

    @property
    def first_attention(self) -> AttentionSpec | None:
        """The attention of the first layer type that has one (None for an attention-free model)."""
        return next((lt.attention for lt in self.layer_types if lt.attention is not None), None)

    @property
    def num_heads(self) -> int:
        a = self.first_attention
        return a.num_heads if a else 0

    @property
    def num_kv_heads(self) -> int:
        a = self.first_attention
        return a.num_kv_heads if a else 0

    @property
    def head_dim(self) -> int:
        a = self.first_attention
        return a.head_dim if a else 0

    @property
    def layer_plan(self) -> list[str]:
        """The layer type name of every layer, in order."""
        plan = [""] * self.num_layers
        for lt in self.layer_types:
            for i in lt.layers:
                if 0 <= i < self.num_layers:
                    plan[i] = lt.name
        return plan

    @property
    def is_moe(self) -> bool:
        return any(lt.mlp is not None and lt.mlp.kind == "moe" for lt in self.layer_types)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "model_type": self.model_type,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "num_kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "vocab_size": self.vocab_size,
            "tie_word_embeddings": self.tie_embeddings,
            "moe": self.is_moe,
            "layer_types": [
                {
                    "name": lt.name,
                    "count": lt.count,
                    "attention": lt.attention.kind if lt.attention else None,
                    "window": lt.attention.window if lt.attention else None,
                    # per-layer attention geometry (Gemma-4 full layers: global_head_dim, global KV heads)
                    "head_dim": lt.attention.head_dim if lt.attention else None,
                    "num_kv_heads": lt.attention.num_kv_heads if lt.attention else None,
                    "mixer": lt.mixer.kind if lt.mixer else None,
                    "mlp": lt.mlp.kind if lt.mlp else None,
                    "num_experts": lt.mlp.num_experts if lt.mlp else 0,
                    "top_k": lt.mlp.top_k if lt.mlp else 0,
                    "layers": list(lt.layers),
                }
                for lt in self.layer_types
            ],
            **({"vision": self.vision.to_dict()} if self.vision is not None else {}),
            **({"traced": True, "trace_notes": list(self.traced.notes)} if self.traced is not None else {}),
        }


def load_model(x: Any, *, name: str | None = None, trace: bool = False) -> ModelConfig:
    """Load a model description.

    ``x`` is a catalog name (the Hugging Face id, case-insensitive, or a short alias such as
    ``"llama-2-7b"``), a path to a ``config.json`` or to a folder holding one, a dict of a
    config's contents, or an existing :class:`ModelConfig`. A Hub id that is not in the catalog
    is fetched with ``huggingface_hub`` (``config.json`` only) when a network is available.

    A ``model_type`` the analytic parser does not know goes to the traced path (rows counted by tracing
    ``transformers`` on the meta device, see :mod:`.traced`) when torch and transformers are installed;
    ``trace=True`` traces a known model too.
    """
    if trace:
        from .traced import trace_config

        m = load_model(x, name=name)
        if m.traced is not None:
            return m
        if m.vision is not None:
            raise ValueError("trace=True: vision-language models are not traced; use the analytic path (trace=False)")
        return trace_config(m.raw, name=m.name)
    if isinstance(x, ModelConfig):
        return x
    if isinstance(x, dict):
        return parse_config(x, name=name or x.get("_name_or_path") or x.get("name") or "custom model")
    if isinstance(x, os.PathLike):
        x = os.fspath(x)
    if not isinstance(x, str):
        raise ValueError(f"model: expected a catalog name, a path to a config.json or a dict, got {type(x).__name__}")
    text = x.strip()
    if not text:
        raise ValueError("model: empty name; choose one of lr.list_models() or pass a config.json path or dict")
    cfg, shown = read_config(text, name)
    return parse_config(cfg, name=shown)


# ----------------------------------------------------------------------------------------
# parsing

MAX_CONFIG_DEPTH = 32  # nesting of objects and lists in a config (real ones nest 3–4 deep)
MAX_CONFIG_NODES = 1_000_000  # values in one config
DEFAULT_INT_MAX = 10**9  # any integer field without a tighter physical bound below
# physical bounds, far above any model published (Llama-3.1-405B: 126 layers, 16 384 wide, 128 256 words)
INT_MAX = {
    "num_hidden_layers": 10**4,
    "n_layer": 10**4,
    "hidden_size": 10**7,
    "n_embd": 10**7,
    "d_model": 10**7,
    "word_embed_proj_dim": 10**7,
    "num_attention_heads": 10**5,
    "n_head": 10**5,
    "num_key_value_heads": 10**5,
    "head_dim": 10**5,
    "kv_lora_rank": 10**7,
    "q_lora_rank": 10**7,
    "qk_rope_head_dim": 10**5,
    "qk_nope_head_dim": 10**5,
    "v_head_dim": 10**5,
    "vocab_size": 10**8,
    "intermediate_size": 10**8,
    "n_inner": 10**8,
    "ffn_dim": 10**8,
    "moe_intermediate_size": 10**8,
    "shared_expert_intermediate_size": 10**8,
    "num_local_experts": 10**5,
    "num_experts": 10**5,
    "n_routed_experts": 10**5,
    "n_shared_experts": 10**4,
    "num_experts_per_tok": 10**5,
    "experts_per_token": 10**5,
}
# integer fields checked whenever present (finite, whole, ≥ minimum, ≤ bound), whoever reads them later
INT_FIELDS = {
    **{k: 1 for k in INT_MAX},
    "n_inner": 1,
    "n_shared_experts": 0,
    # 0 is meaningful: no experts (a dense model, Qwen-style), no shared expert
    "num_experts": 0,
    "num_local_experts": 0,
    "shared_expert_intermediate_size": 0,
    "sliding_window": 1,
    "sliding_window_pattern": 1,
    "max_window_layers": 0,
    "max_position_embeddings": 0,
    "n_positions": 0,
    "decoder_sparse_step": 1,
    "first_k_dense_replace": 0,
    "moe_layer_freq": 1,
    # fields of the families added in 0.2 (falcon, MoE and attention variants, MTP)
    "num_kv_heads": 1,
    "n_head_kv": 1,
    "attention_chunk_size": 1,
    "index_topk": 1,
    "index_n_heads": 1,
    "index_head_dim": 1,
    "num_nextn_predict_layers": 0,
    "mtp_num_hidden_layers": 0,
    "num_kv_shared_layers": 0,
    # Gemma-4 (families_gemma4.py)
    "global_head_dim": 1,
    "num_global_key_value_heads": 1,
    "hidden_size_per_layer_input": 0,
    "vocab_size_per_layer_input": 1,
    "top_k_experts": 1,
    "rotary_dim": 0,
    "interleave_moe_layer_step": 1,
    "moe_k": 1,
    "moe_num_experts": 1,
}
PER_LAYER_INT_FIELDS = ("intermediate_size",)  # may list one value per layer (Gemma-3n)
# fields that must be JSON booleans when present ("false" as a string is an error, not True)
BOOL_FIELDS = (
    "tie_word_embeddings",
    "attention_bias",
    "mlp_bias",
    "use_sliding_window",
    "enable_bias",
    "do_layer_norm_before",
    "layer_norm_elementwise_affine",
    "qk_layernorm",
    "lm_head_bias",
    "parallel_attn",
    "use_parallel_residual",
    "new_decoder_architecture",
    "multi_query",
    "alibi",
    "attn_temperature_tuning",
    "attention_k_eq_v",
    "enable_moe_block",
    "use_double_wide_mlp",
)
# float fields: (low, high, low end open)
FLOAT_FIELDS: dict[str, tuple[float, float, bool]] = {
    "partial_rotary_factor": (0.0, 1.0, True),
    "attn_logit_softcapping": (0.0, 1e6, False),
    "final_logit_softcapping": (0.0, 1e6, False),
}
STR_FIELDS = ("model_type", "hidden_act", "hidden_activation", "activation_function")


def _is_number(v) -> bool:
    """A real number: Python or numpy ints and floats, never a bool."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _finite(v) -> bool:
    """A number that is finite (a Python int always is: math.isfinite would overflow converting a huge one)."""
    return isinstance(v, (int, np.integer)) or math.isfinite(v)


def _as_int(field_name: str, v: Any, minimum: int, maximum: int) -> int:
    """A whole, finite number in [minimum, maximum] (Python or numpy; 4096.0 accepted), else ValueError naming it."""
    if not _is_number(v) or (isinstance(v, (float, np.floating)) and not (math.isfinite(v) and float(v).is_integer())):
        raise ValueError(f"config field {field_name!r} must be a whole number, got {_short(v)}")
    if isinstance(v, (float, np.floating)) and abs(float(v)) > 2.0**62:
        raise ValueError(f"config field {field_name!r} must be ≤ {maximum}, got {_short(v)}")
    n = int(v)
    if n < minimum:
        raise ValueError(f"config field {field_name!r} must be ≥ {minimum}, got {n}")
    if n > maximum:
        raise ValueError(f"config field {field_name!r} must be ≤ {maximum}, got {_short(n)}")
    return n


def _req_int(cfg: dict, *keys: str, minimum: int = 1, maximum: int | None = None) -> int:
    for k in keys:
        v = cfg.get(k)
        if v is not None:
            return _as_int(k, v, minimum, maximum if maximum is not None else INT_MAX.get(k, DEFAULT_INT_MAX))
    raise ValueError(
        f"config is missing the field {keys[0]!r}"
        + (f" (or {', '.join(map(repr, keys[1:]))})" if len(keys) > 1 else "")
    )


@overload
def _opt_int(cfg: dict, key: str, default: int, minimum: int = 0, maximum: int | None = None) -> int: ...
@overload
def _opt_int(cfg: dict, key: str, default: None, minimum: int = 0, maximum: int | None = None) -> int | None: ...
def _opt_int(cfg: dict, key: str, default: int | None, minimum: int = 0, maximum: int | None = None) -> int | None:
    """The integer field ``key`` (bounded), or ``default`` when absent: an int default gives an int."""
    v = cfg.get(key)
    if v is None:
        return default
    return _as_int(key, v, minimum, maximum if maximum is not None else INT_MAX.get(key, DEFAULT_INT_MAX))


def _as_bool(field_name: str, v) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise ValueError(f"config field {field_name!r} must be true or false (a JSON boolean), got {_short(v)}")
    return bool(v)


def _flag(cfg: dict, spec: Any, default: bool = False) -> bool:
    """A family trait: a constant bool, the name of a config field, or (field, default when absent)."""
    if isinstance(spec, bool):
        return spec
    if isinstance(spec, tuple):
        spec, default = spec
    if isinstance(spec, str):
        v = cfg.get(spec)
        return default if v is None else _as_bool(spec, v)
    return default


# transformers' ALLOWED_LAYER_TYPES (configuration_utils) and what this engine does with each
LAYER_KINDS_SUPPORTED = ("full_attention", "sliding_attention", "chunked_attention")
LAYER_KINDS_KNOWN = (
    "full_attention",
    "sliding_attention",
    "chunked_attention",
    "linear_attention",
    "hybrid",
    "conv",
    "moe",
    "deepseek_sparse_attention",
    "compressed_sparse_attention",
)


def _indexer(cfg: dict, i: int | None, n_layers: int) -> dict:
    """DeepSeek-V3.2 sparse attention: the lightning indexer's heads and head dim, and keys kept per query.

    A GLM-5 layer whose ``indexer_types`` entry is "shared" has no indexer (it reuses the previous layer's
    top-k selection) but still attends only the selected keys.
    """
    if _opt_int(cfg, "q_lora_rank", None, minimum=1) is None:
        raise ValueError("config field 'q_lora_rank' is required by the sparse-attention indexer (index_topk)")
    topk = _opt_int(cfg, "index_topk", 2048, minimum=1)
    if i is not None and variants.indexer_kind(cfg, n_layers, i) == "shared":
        return dict(index_topk=topk)
    return dict(
        index_heads=_opt_int(cfg, "index_n_heads", 64, minimum=1),
        index_head_dim=_opt_int(cfg, "index_head_dim", 128, minimum=1),
        index_topk=topk,
    )


def _layer_kinds(cfg: dict, fam: FamilyTraits, n_layers: int, window: int | None) -> list[str]:
    """The mixer kind of every layer, named as transformers' ``layer_types`` names them.

    Read from ``layer_types`` when the config lists it, else from the family's convention
    (gemma-2 alternation, gemma-3 ``sliding_window_pattern``, windows on every layer).
    Without a window every layer is full attention.
    """
    n = n_layers
    if fam.get("hybrid"):  # recurrent / hybrid families: their own conventions (families_hybrid.py)
        return hybrid.layer_kinds(cfg, fam, n)
    given = cfg.get("layer_types")
    if given is not None and fam.get("indexer") and isinstance(given, list):
        # DSA models name every layer after its sparse attention; the per-layer indexer is in indexer_types
        given = ["full_attention" if t in ("indexed_attention", "deepseek_sparse_attention") else t for t in given]
    if given is not None:
        if not isinstance(given, list) or len(given) != n:
            raise ValueError(f"config field 'layer_types' must list {n} entries (one per layer)")
        for t in given:
            if t not in LAYER_KINDS_SUPPORTED:
                known = "" if t in LAYER_KINDS_KNOWN else " (not a transformers layer type)"
                raise ValueError(
                    f"config field 'layer_types' has {t!r}{known}; supported: {', '.join(LAYER_KINDS_SUPPORTED)}"
                )
        kinds = list(given)
    elif fam.get("nope"):
        kinds = variants.nope_layer_kinds(cfg, str(cfg.get("model_type")), n)  # Llama-4 / SmolLM3 defaults
    elif fam.get("alternate_sliding"):
        kinds = [
            "sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n)
        ]  # gemma-2: even layers slide
    elif fam.get("layer_types"):
        # every pattern-th layer is full (gemma-3: 6; Gemma-3n: 5; Cohere-2, OLMo-3, EXAONE-4: 4)
        pattern = _opt_int(cfg, "sliding_window_pattern", fam.get("sliding_pattern", 6), minimum=1)
        kinds = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(n)]
    elif fam.get("sliding_all"):
        kinds = ["sliding_attention"] * n
    else:
        kinds = ["full_attention"] * n
    if window is None:
        kinds = ["full_attention" if k == "sliding_attention" else k for k in kinds]
    elif fam.get("qwen_sliding") and "sliding_attention" in kinds:
        mwl = _opt_int(cfg, "max_window_layers", n)  # Qwen: layers below max_window_layers attend fully
        kinds = ["full_attention" if (k == "sliding_attention" and i < mwl) else k for i, k in enumerate(kinds)]
    return kinds


def _check_shape(cfg, what: str = "model config") -> None:
    """Nesting depth and size of a config (iterative: a hostile one cannot exhaust the stack)."""
    stack = [(cfg, 1)]
    nodes = 0
    while stack:
        v, depth = stack.pop()
        nodes += 1
        if depth > MAX_CONFIG_DEPTH:
            raise ValueError(f"{what} nests deeper than {MAX_CONFIG_DEPTH} levels")
        if nodes > MAX_CONFIG_NODES:
            raise ValueError(f"{what} holds more than {MAX_CONFIG_NODES:,} values")
        if isinstance(v, dict):
            if depth == 1:  # the config's own fields are named by strings (a nested id2label may use ints)
                for k in v:
                    if not isinstance(k, str):
                        raise ValueError(f"{what}: keys must be strings, got {_short(k)}")
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend((x, depth + 1) for x in v)


def _check_fields(cfg: dict) -> None:
    """Every field the engine reads, checked where present: types, finiteness, bounds."""
    for k, least in INT_FIELDS.items():
        v = cfg.get(k)
        if isinstance(v, list) and k in PER_LAYER_INT_FIELDS:  # Gemma-3n: one value per layer
            for x in v:
                _as_int(f"{k}[]", x, least, INT_MAX.get(k, DEFAULT_INT_MAX))
        elif v is not None:
            _as_int(k, v, least, INT_MAX.get(k, DEFAULT_INT_MAX))
    for k in BOOL_FIELDS:
        if cfg.get(k) is not None:
            _as_bool(k, cfg[k])
    for k, (lo, hi, open_low) in FLOAT_FIELDS.items():
        v = cfg.get(k)
        if v is None:
            continue
        if not _is_number(v) or not _finite(v) or not (lo < v <= hi if open_low else lo <= v <= hi):
            interval = f"{'(' if open_low else '['}{lo:g}, {hi:g}]"
            raise ValueError(f"config field {k!r} must be a number in {interval}, got {_short(v)}")
    for k in STR_FIELDS:
        v = cfg.get(k)
        if v is not None and not isinstance(v, str):
            raise ValueError(f"config field {k!r} must be a string, got {_short(v)}")
    for k in ("layer_types", "mlp_only_layers"):
        v = cfg.get(k)
        if v is not None and not isinstance(v, list):
            raise ValueError(f"config field {k!r} must be a list, got {_short(v)}")
    for i in cfg.get("mlp_only_layers") or []:
        _as_int("mlp_only_layers[]", i, 0, INT_MAX["num_hidden_layers"])


def parse_config(cfg: dict, *, name: str = "custom model") -> ModelConfig:
    """Normalize a Hugging Face config dict. Raises ``ValueError`` naming any field it cannot use.

    The config is read as data: its shape (nesting, size) and every field the engine reads are checked
    first (finite, whole where it must be, within physical bounds, booleans as JSON booleans); no other
    exception escapes.
    """
    if not isinstance(cfg, dict):
        raise ValueError("model config must be a dict (the contents of config.json)")
    _check_shape(cfg)
    _check_fields(cfg)
    if isinstance(cfg.get("text_config"), dict) and "hidden_size" not in cfg:
        _check_fields(cfg["text_config"])
    try:
        return _parse_config(cfg, name=name)
    except (TypeError, KeyError, AttributeError, OverflowError, RecursionError, ZeroDivisionError) as e:
        raise ValueError(f"model config could not be read: {type(e).__name__}: {_short(str(e))}") from None


def _dimensions(cfg: dict, fam: FamilyTraits, mt: str) -> tuple[int, int, int, int, int, int, dict[str, Any]]:
    """(hidden size, layers, query heads, KV heads, head dim, vocabulary, the family's own field readings)."""
    h = _req_int(cfg, "hidden_size", "n_embd", "d_model")
    n_layers = hybrid.num_layers(cfg, fam, _opt_int(cfg, "num_hidden_layers", None)) or _req_int(
        cfg, "num_hidden_layers", "n_layer", "n_layers", "num_layers"
    )
    if fam.get("attention_free"):  # Mamba, Mamba2: no attention layer, no heads to read (families_ssm.py)
        return h, n_layers, 0, 0, 0, _req_int(cfg, "vocab_size"), {}
    n_heads = _req_int(cfg, "num_attention_heads", "n_head", "n_heads")
    ext = family_fields(cfg, mt, h=h, n_heads=n_heads)  # families_more: KV heads, MLP, block layout, positions
    vocab = ext.get("vocab_size") or _req_int(cfg, "vocab_size")
    n_kv = ext.get("num_kv_heads") or _opt_int(cfg, "num_key_value_heads", n_heads, minimum=1)
    if n_kv > n_heads or n_heads % n_kv:
        raise ValueError(f"config field 'num_key_value_heads' = {n_kv} must divide 'num_attention_heads' = {n_heads}")
    head_dim = ext.get("head_dim") or _opt_int(cfg, "head_dim", None, minimum=1)
    if head_dim is None:
        if h % n_heads:
            raise ValueError(
                f"config field 'hidden_size' = {h} is not divisible by 'num_attention_heads' = {n_heads}; set 'head_dim'"
            )
        head_dim = h // n_heads
    return h, n_layers, n_heads, n_kv, head_dim, vocab, ext


def _mlp_width(
    cfg: dict, fam: FamilyTraits, mt: str, ext: dict[str, Any], h: int, n_layers: int
) -> tuple[int, str, dict | None]:
    """(MLP intermediate size, activation, Gemma-3n's per-layer fields or None)."""
    g3n = None
    if mt == "gpt2":
        inter = cfg.get("n_inner") or 4 * h
        act = cfg.get("activation_function", "gelu_new")
    elif mt == "opt":
        inter = _req_int(cfg, "ffn_dim")
        act = cfg.get("activation_function", "relu")
    elif mt == "gpt_oss":
        inter = _req_int(cfg, "intermediate_size")
        act = "gpt_oss_glu"
    elif "intermediate_size" in ext:
        inter, act = ext["intermediate_size"], ext["act"]
    elif fam.get("gemma3n"):
        g3n = families_gemma3n.parse(cfg, n_layers, _req_int)
        inter = g3n["intermediate_sizes"][0]
        act = cfg.get("hidden_activation") or cfg.get("hidden_act") or "gelu_pytorch_tanh"
    else:
        # hybrid families whose layers are all MoE may omit it (Qwen3.5-MoE); families_hybrid checks it is set when used
        inter = (
            (_opt_int(cfg, "intermediate_size", 0) or 0) if fam.get("hybrid") else _req_int(cfg, "intermediate_size")
        )
        act = cfg.get("hidden_activation") or cfg.get("hidden_act") or "silu"
    if isinstance(act, str) and act.startswith("gelu"):
        act = act if act in ACT_FLOPS else "gelu"
    if act not in ACT_FLOPS:
        raise ValueError(
            f"config field 'hidden_act' = {act!r} is not supported; supported: {', '.join(sorted(ACT_FLOPS))}"
        )
    return inter, act, g3n


def _mlp_per_layer(
    cfg: dict, fam: FamilyTraits, mt: str, n_layers: int, inter: int, act: str, mlp_bias: bool
) -> tuple[MLPSpec, MLPSpec | None, list[bool]]:
    """The dense MLP, the MoE MLP (None without experts) and which layers are MoE, by the family's MoE convention."""
    moe_kind = fam.get("moe")
    is_moe = [False] * n_layers
    dense_mlp = MLPSpec(
        kind="dense",
        intermediate_size=inter,
        gated=fam["mlp"] == "gated",
        act=act,
        bias=mlp_bias,
        fused_gate_up=bool(fam.get("fused_gate_up")),
    )
    moe_mlp = None
    if moe_kind:
        if moe_kind == "mixtral" or moe_kind == "phimoe":
            E = _req_int(cfg, "num_local_experts")
            k = _req_int(cfg, "num_experts_per_tok")
            moe_mlp = MLPSpec(kind="moe", intermediate_size=inter, gated=True, act=act, num_experts=E, top_k=k)
            is_moe = [True] * n_layers
        elif moe_kind == "gpt_oss":
            E = _req_int(cfg, "num_local_experts")
            k = _req_int(cfg, "num_experts_per_tok", "experts_per_token")
            moe_mlp = MLPSpec(
                kind="moe",
                intermediate_size=inter,
                gated=True,
                act=act,
                num_experts=E,
                top_k=k,
                expert_bias=True,
                router_bias=True,
            )
            is_moe = [True] * n_layers
        elif moe_kind in ("qwen2_moe", "qwen3_moe", "olmoe"):
            E = _req_int(cfg, "num_experts")
            k = _req_int(cfg, "num_experts_per_tok")
            moe_inter = _req_int(cfg, "moe_intermediate_size") if moe_kind != "olmoe" else inter
            shared = _opt_int(cfg, "shared_expert_intermediate_size", 0) if moe_kind == "qwen2_moe" else 0
            moe_mlp = MLPSpec(
                kind="moe",
                intermediate_size=moe_inter,
                gated=True,
                act=act,
                num_experts=E,
                top_k=k,
                shared_intermediate_size=shared or 0,
                shared_gate=bool(shared),
            )
            step = _opt_int(cfg, "decoder_sparse_step", 1, minimum=1)
            only = set(cfg.get("mlp_only_layers") or [])
            is_moe = [(i not in only) and (E > 0) and ((i + 1) % step == 0) for i in range(n_layers)]
        elif moe_kind == "deepseek":
            E = _req_int(cfg, "n_routed_experts")
            k = _req_int(cfg, "num_experts_per_tok")
            moe_inter = _req_int(cfg, "moe_intermediate_size")
            n_shared = _opt_int(cfg, "n_shared_experts", 0) or 0
            moe_mlp = MLPSpec(
                kind="moe",
                intermediate_size=moe_inter,
                gated=True,
                act=act,
                num_experts=E,
                top_k=k,
                shared_intermediate_size=moe_inter * n_shared,
                router_score_bias=(mt != "deepseek_v2"),  # V3-style e_score_correction_bias
            )
            first_dense = _opt_int(cfg, "first_k_dense_replace", 0) or 0
            freq = _opt_int(cfg, "moe_layer_freq", 1, minimum=1)
            is_moe = [i >= first_dense and i % freq == 0 for i in range(n_layers)]
            if cfg.get("mlp_layer_types") is not None:  # GLM-5: "dense" / "sparse" per layer
                is_moe = variants.mlp_layer_types(cfg, n_layers)
        elif moe_kind == "ernie":
            E = _req_int(cfg, "moe_num_experts", "num_experts")
            k = _req_int(cfg, "moe_k", "num_experts_per_tok")
            moe_inter = _req_int(cfg, "moe_intermediate_size")
            n_shared = _opt_int(cfg, "moe_num_shared_experts", 0) or 0
            # router_bias: ERNIE's e_score_correction_bias is a parameter (E values) added to the routing scores
            moe_mlp = MLPSpec(
                kind="moe",
                intermediate_size=moe_inter,
                gated=True,
                act=act,
                num_experts=E,
                top_k=k,
                router_bias=True,
                shared_intermediate_size=moe_inter * n_shared,
            )
            start = _opt_int(cfg, "moe_layer_start_index", 1) or 0
            end = cfg.get("moe_layer_end_index", -1)
            end = n_layers - 1 if end == -1 else _opt_int(cfg, "moe_layer_end_index", n_layers - 1)
            every = _opt_int(cfg, "moe_layer_interval", 1, minimum=1)
            is_moe = [(i + 1) % every == 0 and start <= i <= end for i in range(n_layers)]
        elif moe_kind == "minimax":
            # MiniMax-M2: every layer MoE; sigmoid router with e_score_correction_bias; no shared expert
            E = _req_int(cfg, "num_local_experts", "num_experts")
            k = _req_int(cfg, "num_experts_per_tok")
            moe_mlp = MLPSpec(
                kind="moe", intermediate_size=inter, gated=True, act=act, num_experts=E, top_k=k, router_score_bias=True
            )
            is_moe = [True] * n_layers
        elif moe_kind == "llama4":
            # Llama-4: routed experts of intermediate_size + one shared expert of the same width on MoE
            # layers; dense layers use intermediate_size_mlp
            E = _req_int(cfg, "num_local_experts")
            k = _req_int(cfg, "num_experts_per_tok")
            moe_mlp = MLPSpec(
                kind="moe",
                intermediate_size=inter,
                gated=True,
                act=act,
                num_experts=E,
                top_k=k,
                shared_intermediate_size=inter,
            )
            dense_mlp = replace(dense_mlp, intermediate_size=_req_int(cfg, "intermediate_size_mlp"))
            moe_idx = variants.llama4_moe_layers(cfg, n_layers)
            is_moe = [i in moe_idx for i in range(n_layers)]
        if moe_mlp is not None and moe_mlp.top_k > moe_mlp.num_experts:
            raise ValueError(
                f"config field 'num_experts_per_tok' = {moe_mlp.top_k} exceeds the number of experts {moe_mlp.num_experts}"
            )
    return dense_mlp, moe_mlp, is_moe


def _positions(cfg: dict, mt: str, pos: str, h: int) -> tuple[int, int, int]:
    """(max positions, rows of a learned position table, embedding width) of the token and position embeddings."""
    if pos == "learned":
        max_pos = _req_int(cfg, "max_position_embeddings", "n_positions")
        pos_rows = max_pos + (2 if mt == "opt" else 0)  # OPT's learned positions are offset by 2
    else:
        max_pos = _opt_int(cfg, "max_position_embeddings", 0) or 0
        pos_rows = 0
    embed_dim = _opt_int(cfg, "word_embed_proj_dim", h) if mt == "opt" else h
    if embed_dim != h:
        raise ValueError("config field 'word_embed_proj_dim' ≠ hidden_size (OPT-350m projections) is not supported")
    return max_pos, pos_rows, embed_dim


def _group_layers(
    per_layer: list[tuple[AttentionSpec | None, RecurrentSpec | None, MLPSpec | None]],
    *,
    sliding: list[bool],
    is_moe: list[bool],
    nope_or_chunk: bool,
    rope: bool,
    is_hybrid: bool,
    norms_per_layer: int,
    post: bool,
    post_only: bool,
    parallel: bool,
) -> list[LayerType]:
    """Identical layers (same attention, mixer and MLP specs) as one named :class:`LayerType` with a count."""
    any_sliding = any(sliding)
    any_moe = any(is_moe)
    any_full = not all(sliding)
    groups: dict[tuple, list[int]] = {}
    for i, spec in enumerate(per_layer):
        groups.setdefault(spec, []).append(i)
    layer_types = []
    for (a_spec, r_spec, m_spec), idx in groups.items():
        parts = []
        if any_moe and m_spec is not None:
            parts.append("moe" if m_spec.kind == "moe" else "dense")
        if any_sliding and any_full and a_spec is not None:
            parts.append("sliding" if a_spec.window is not None else "full")
        if a_spec is not None and a_spec.kv_shared:
            parts.append("kv-shared")
        if m_spec is not None and m_spec.act_sparsity:
            parts.append("sparse-act")
        if (
            a_spec is not None
            and nope_or_chunk
            and len({(a.chunk is not None, rope and not a.rotary_dim) for a, _, _ in per_layer if a is not None}) > 1
        ):
            # chunked (Llama-4) or NoPE (Llama-4, SmolLM3) layers among full RoPE ones
            parts.append(
                "chunked" if a_spec.chunk is not None else ("nope" if rope and not a_spec.rotary_dim else "full")
            )
        lt_name = "+".join(parts) if parts else "decoder"
        if is_hybrid:  # name the mixer kind(s): "attention+moe", "gated_deltanet+moe", "mamba2", "mlp"
            lt_name = hybrid.layer_name(
                a_spec is not None,
                a_spec is not None and a_spec.window is not None,
                r_spec,
                m_spec,
                any_window=any_sliding,
                any_full=any_full,
            )
        # one norm before each of the mixer and the MLP that the layer has
        norms = (
            norms_per_layer
            if not is_hybrid
            else int(a_spec is not None or r_spec is not None) + int(m_spec is not None)
        )
        layer_types.append(
            LayerType(
                name=lt_name,
                count=len(idx),
                attention=a_spec,
                mlp=m_spec,
                norms=norms,
                post_norms=post,
                parallel=parallel,
                pre_norms=not post_only,
                layers=tuple(idx),
                mixer=r_spec,
            )
        )
    names = [lt.name for lt in layer_types]
    if len(set(names)) != len(names):  # two different specs under one name: number them
        seen: dict[str, int] = {}
        for j, lt in enumerate(layer_types):
            if names.count(lt.name) > 1:
                seen[lt.name] = seen.get(lt.name, 0) + 1
                layer_types[j] = replace(lt, name=f"{lt.name}#{seen[lt.name]}")
    layer_types.sort(key=lambda lt: lt.name)
    return layer_types


def _parse_config(cfg: dict, *, name: str = "custom model") -> ModelConfig:
    """Normalize a Hugging Face config dict. Raises ``ValueError`` naming any field it cannot use."""
    if not isinstance(cfg, dict):
        raise ValueError("model config must be a dict (the contents of config.json)")
    cfg = copy.deepcopy(cfg)
    if isinstance(cfg.get("vision_config"), dict):  # a vision-language model: text model + vision encoder
        from .vision import parse_multimodal

        return parse_multimodal(cfg, name=name, parse_text=parse_config)
    if "text_config" in cfg and "hidden_size" not in cfg and isinstance(cfg["text_config"], dict):
        cfg = {**cfg["text_config"], "_outer_model_type": cfg.get("model_type")}
    mt = cfg.get("model_type")
    if mt is None:
        raise ValueError(f"config is missing the field 'model_type' (supported: {', '.join(sorted(FAMILIES))})")
    if mt not in FAMILIES:
        from .traced import INSTALL_HINT, available, trace_config

        if available():  # the traced path: transformers builds it on the meta device
            return trace_config({k: v for k, v in cfg.items() if k != "_outer_model_type"}, name=name)
        raise ValueError(
            f"config field 'model_type' = {mt!r} is not supported; supported: {', '.join(sorted(FAMILIES))}; "
            f"others can be traced with transformers: {INSTALL_HINT}"
        )
    fam = FAMILIES[mt]
    for key, what in UNSUPPORTED_FIELDS.items():
        if what and cfg.get(key):
            raise ValueError(f"config field {key!r} ({what}) is not supported by this engine")

    # --- dimensions ---------------------------------------------------------------------------
    h, n_layers, n_heads, n_kv, head_dim, vocab, ext = _dimensions(cfg, fam, mt)
    inter, act, g3n = _mlp_width(cfg, fam, mt, ext, h, n_layers)

    tie = bool(cfg.get("tie_word_embeddings", fam["tie"]))
    qkv_bias = _flag(cfg, fam.get("qkv_bias", False))
    o_bias = _flag(cfg, fam.get("o_bias", False))
    mlp_bias = _flag(cfg, fam.get("mlp_bias", "mlp_bias"))
    norm = fam["norm"]
    if mt == "opt":
        if not cfg.get("do_layer_norm_before", True):
            raise ValueError("config field 'do_layer_norm_before' = false (post-norm OPT-350m) is not supported")
        if cfg.get("layer_norm_elementwise_affine") is False:
            raise ValueError("config field 'layer_norm_elementwise_affine' = false is not supported")

    # --- per-layer plan: the mixer kind of every layer (transformers' `layer_types` names) -----
    window = _opt_int(cfg, "sliding_window", None, minimum=1)
    if fam.get("qwen_sliding") and not cfg.get("use_sliding_window", False):
        window = None
    kinds = _layer_kinds(cfg, fam, n_layers, window)
    if g3n is not None:  # Gemma-3n: a KV-shared layer reads the cache of the last earlier layer of its own kind
        first = g3n["first_shared"]
        orphan = sorted(set(kinds[first:]) - set(kinds[:first]))
        if orphan:
            raise ValueError(
                f"config field 'num_kv_shared_layers' leaves no earlier layer of kind {orphan[0]!r} to share K/V with"
            )
    sliding = [k == "sliding_attention" for k in kinds]
    g4 = families_gemma4.parse(cfg, n_layers, kinds, _req_int, _opt_int) if fam.get("gemma4") else None
    if g4 is not None and cfg.get("rope_parameters") is None:
        cfg["rope_parameters"] = families_gemma4.DEFAULT_ROPE  # the config class's (cfg is a copy)
    # per-layer attention geometry: transformers' per_layer_config (Gemma-4: global_head_dim on full layers)
    overrides = families_gemma4.attention_overrides(cfg, n_layers, kinds, _opt_int, g4 is not None)
    for i, ov in enumerate(overrides):
        if ov and (fam.get("mla") or kinds[i] not in hybrid.ATTENTION_KINDS):
            raise ValueError(
                f"config field 'per_layer_config' overrides {', '.join(sorted(ov))} on layer {i}, which has no "
                f"multi-head attention to apply them to ({'MLA' if fam.get('mla') else kinds[i]})"
            )
    first_shared = g3n["first_shared"] if g3n is not None else (g4["first_shared"] if g4 is not None else n_layers)

    # --- attention per layer ----------------------------------------------------------------
    pos = ext.get("pos", fam["pos"])  # "rope", "learned" or "alibi"
    rope = pos == "rope"
    if not rope:
        rot_dim = 0
    elif mt in FAMILIES_MORE:
        rot_dim = rotary_dim_of(cfg, mt, head_dim)  # GPT-J rotary_dim, GPT-NeoX rotary_pct, GLM's half heads
    else:
        rot_dim = variants.rotary_dim(cfg, head_dim, fam.get("rotary_default", 1.0))
    nope_full = fam.get("nope_full") == "always" or (fam.get("nope_full") == "with_window" and window is not None)
    uses_rope = variants.rope_layers(cfg, n_layers) if fam.get("nope") else [True] * n_layers
    softcap = bool(fam.get("softcap") and cfg.get("attn_logit_softcapping"))
    qk_norm = fam.get("qk_norm")
    if isinstance(qk_norm, tuple):  # (config flag, kind): the norm exists only when the flag is set
        qk_norm = qk_norm[1] if cfg.get(qk_norm[0]) else None
    chunk = (
        variants.attention_chunk(cfg, 8192 if mt == "llama4_text" else None) if "chunked_attention" in kinds else None
    )
    l4 = mt == "llama4_text"

    # attention without any rotary: Jamba and Nemotron-H, Granite-4 hybrids (position_embedding_type "nope")
    nope = bool(fam.get("no_rope")) or (mt == "granitemoehybrid" and cfg.get("position_embedding_type") != "rope")

    def attn(win: int | None, i: int | None = None) -> AttentionSpec:
        """The attention of layer i (None: a layer with RoPE and no window or chunk, e.g. an MTP block)."""
        if fam.get("mla"):
            kv_lora = _req_int(cfg, "kv_lora_rank")
            rope_d = _req_int(cfg, "qk_rope_head_dim")
            nope_d = _req_int(cfg, "qk_nope_head_dim")
            v_d = _req_int(cfg, "v_head_dim")
            return AttentionSpec(
                kind="mla",
                num_heads=n_heads,
                num_kv_heads=n_heads,
                head_dim=nope_d + rope_d,
                v_head_dim=v_d,
                window=None,
                qkv_bias=bool(cfg.get("attention_bias", False)),
                o_bias=bool(cfg.get("attention_bias", False)),
                rotary_dim=rope_d,
                q_lora_rank=_opt_int(cfg, "q_lora_rank", None, minimum=1),
                kv_lora_rank=kv_lora,
                qk_rope_head_dim=rope_d,
                qk_nope_head_dim=nope_d,
                **(_indexer(cfg, i, n_layers) if fam.get("indexer") else {}),
            )
        has_rope = i is None or uses_rope[i]
        chunked = i is not None and kinds[i] == "chunked_attention"
        # this layer's attention geometry (per_layer_config / Gemma-4 global_head_dim, else the global fields)
        ov = overrides[i] if i is not None else {}
        hd, nh, nkv = (
            ov.get("head_dim", head_dim),
            ov.get("num_attention_heads", n_heads),
            ov.get("num_key_value_heads", n_kv),
        )
        if nkv > nh or nh % nkv:
            raise ValueError(
                f"layer {i}: num_key_value_heads = {nkv} must divide num_attention_heads = {nh} (per_layer_config)"
            )
        rd = rot_dim
        if rope and i is not None and (hd != head_dim or fam.get("gemma4")):
            # the layer's own head dim; Gemma-4 names a partial rotary factor per layer kind in rope_parameters
            rd = (
                rotary_dim_of(cfg, mt, hd)
                if mt in FAMILIES_MORE
                else variants.rotary_dim(cfg, hd, fam.get("rotary_default", 1.0), kinds[i])
            )
        shared = i is not None and i >= first_shared  # Gemma-3n / Gemma-4: attends an earlier layer's K/V
        norm_kind = qk_norm
        if l4:  # Llama-4: a weightless L2 norm of q and k on RoPE layers only
            norm_kind = "l2" if (cfg.get("use_qk_norm", True) and has_rope) else None
        return AttentionSpec(
            kind="mha",
            num_heads=nh,
            num_kv_heads=nkv,
            head_dim=hd,
            v_head_dim=hd,
            window=win,
            qkv_bias=qkv_bias,
            o_bias=o_bias,
            fused_qkv=bool(fam.get("fused_qkv")),
            qk_norm=norm_kind or ("full" if mt == "cohere" and cfg.get("use_qk_norm") else None),
            sinks=bool(fam.get("sinks")),
            softcap=softcap,
            # NoPE layers (Llama-4, SmolLM3, Granite-4 hybrids) and Cohere-2/EXAONE-4 full layers rotate nothing
            rotary_dim=0 if (nope or not has_rope or (win is None and nope_full)) else rd,
            alibi=pos == "alibi",
            chunk=chunk if chunked else None,
            kv_shared=shared,
            v_norm=bool(fam.get("gemma3n") or fam.get("gemma4")),
            # Gemma-4 attention_k_eq_v: full-attention layers project k only and use it as v too
            k_eq_v=bool(g4 and g4["k_eq_v"] and win is None and not shared),
            temperature=bool(l4 and not has_rope and cfg.get("attn_temperature_tuning", True)),
            out_gate=bool(fam.get("out_gate")),
        )

    # --- MLP per layer --------------------------------------------------------------------
    dense_mlp, moe_mlp, is_moe = _mlp_per_layer(cfg, fam, mt, n_layers, inter, act, mlp_bias)

    mlp_kinds = ["moe" if m else "dense" for m in is_moe]
    mixer = None
    if fam.get("hybrid"):  # per-layer MLP / MoE / none and the recurrent mixer (families_hybrid.py)
        hp = hybrid.plan(cfg, fam, mt, kinds, h, inter, act, dense_mlp, lambda **kw: MLPSpec(kind="moe", **kw))
        dense_mlp, moe_mlp, mlp_kinds, mixer = hp["dense"], hp["moe"], hp["mlp"], hp["mixer"]
        is_moe = [k == "moe" for k in mlp_kinds]

    # --- group identical layers -----------------------------------------------------------
    post_only = bool(fam.get("post_only"))  # OLMo-2 / EXAONE-4: a norm after attention and MLP, none before
    post = bool(fam.get("post_norms")) or post_only
    parallel = bool(ext.get("parallel", fam.get("parallel")))
    norms_per_layer = 2 if post_only else (4 if post else (ext.get("parallel_norms", 1) if parallel else 2))
    if mt == "phi" and cfg.get("qk_layernorm"):
        raise ValueError("config field 'qk_layernorm' = true is not supported for phi models")
    # each layer's (attention, recurrent mixer, MLP) specs; identical layers form one LayerType counted once
    is_hybrid = bool(fam.get("hybrid"))
    per_layer = [
        (
            attn(window if sliding[i] else None, i) if kinds[i] in hybrid.ATTENTION_KINDS else None,
            mixer if kinds[i] in hybrid.MIXER_KINDS else None,
            {"moe": moe_mlp, "dense": dense_mlp}.get(mlp_kinds[i]),
        )
        for i in range(n_layers)
    ]
    if g3n is not None:  # Gemma-3n: per-layer MLP widths and activation sparsity
        per_layer = [
            (
                a,
                mx,
                replace(mlp, intermediate_size=g3n["intermediate_sizes"][i], act_sparsity=g3n["sparse_act"][i])
                if mlp is not None  # every Gemma-3n layer has an MLP
                else None,
            )
            for i, (a, mx, mlp) in enumerate(per_layer)
        ]
    if g4 is not None:  # Gemma-4: double-wide MLPs on KV-shared layers; MoE = routed experts + the dense MLP
        moe_of = lambda **kw: MLPSpec(kind="moe", **kw)
        per_layer = [
            (a, mx, families_gemma4.layer_mlp(g4, i, dense_mlp, moe_of)) for i, (a, mx, _) in enumerate(per_layer)
        ]
        is_moe = [g4["moe"] is not None] * n_layers
    layer_types = _group_layers(
        per_layer,
        sliding=sliding,
        is_moe=is_moe,
        nope_or_chunk=bool(fam.get("nope") or chunk),
        rope=rope,
        is_hybrid=is_hybrid,
        norms_per_layer=norms_per_layer,
        post=post,
        post_only=post_only,
        parallel=parallel,
    )

    max_pos, pos_rows, embed_dim = _positions(cfg, mt, pos, h)

    # multi-token prediction: a decoder block as the family builds it past the last layer (MoE where the
    # family has experts: transformers' get_mtp_config sets first_k_dense_replace = 0)
    n_mtp = variants.mtp_count(cfg)
    mtp_lt = None
    if n_mtp:
        mk = variants.mtp_kind(cfg)
        mtp_lt = LayerType(
            name="mtp",
            count=1,
            attention=attn(window if mk == "sliding_attention" else None),
            mlp=moe_mlp if moe_mlp is not None else dense_mlp,
            norms=norms_per_layer,
            post_norms=post,
            parallel=parallel,
        )

    quant = cfg.get("quantization_config")
    return ModelConfig(
        name=str(name),
        model_type=mt,
        hidden_size=h,
        num_layers=n_layers,
        vocab_size=vocab,
        layer_types=tuple(layer_types),
        norm=norm,
        tie_embeddings=tie,
        position=pos,
        max_positions=max_pos,
        position_rows=pos_rows,
        embed_scale=bool(fam.get("embed_scale")),
        final_softcap=bool(fam.get("softcap") and cfg.get("final_logit_softcapping")),
        lm_head_bias=_flag(cfg, fam.get("lm_head_bias", False)),
        embed_dim=embed_dim,
        embed_norm=bool(fam.get("embed_norm")),
        quantization=quant if isinstance(quant, dict) else None,
        gemma3n=g3n,  # None unless Gemma-3n
        gemma4=g4,  # None unless Gemma-4
        mtp_layers=n_mtp,
        mtp_layer=mtp_lt,
        raw=cfg,
    )
