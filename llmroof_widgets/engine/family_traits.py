"""The typed family table: the traits of a ``model_type`` that the operator math depends on.

:data:`.models.FAMILIES`, :data:`.families_more.FAMILIES_MORE` and :data:`.families_hybrid.HYBRID_FAMILIES`
map a ``model_type`` to a :class:`FamilyTraits`; the type checker (``mypy``, pyproject config) checks every key
and value type. A *flag* trait is a constant bool, the name of a config field that holds the bool, or
(field name, default when the field is absent).
"""

from __future__ import annotations

from typing import TypedDict

# a bias / lm-head flag: constant, a config field, or (config field, default when absent)
Flag = bool | str | tuple[str, bool]


class FamilyTraits(TypedDict, total=False):
    """Traits of one family (each checked against that family's transformers 5.x modeling file)."""

    norm: str  # "rms", "ln" (LayerNorm with bias), "ln_nobias" (LayerNorm without bias: Cohere, MPT)
    mlp: str  # "gated" (gate · up → down) or "plain" (up → act → down)
    pos: str  # positions: "rope", "learned" (a position-embedding table), "alibi" or "none" (attention-free)
    tie: bool  # lm_head tied to the token embedding when the config has no tie_word_embeddings
    qkv_bias: Flag  # biases on the q, k and v projections
    o_bias: Flag  # bias on the attention output projection
    mlp_bias: Flag  # biases on the MLP projections (default: the config field "mlp_bias")
    lm_head_bias: Flag  # a bias on the lm_head
    qk_norm: str | tuple[str, str]  # q/k norm: "head" (per head), "full" (whole projection), or (config flag, kind)
    moe: str  # MoE convention of the family ("mixtral", "qwen2_moe", "deepseek", "gpt_oss", "llama4", ...)
    mla: bool  # DeepSeek multi-head latent attention (low-rank q and kv projections)
    indexer: bool  # DeepSeek-V3.2 / GLM-5 sparse-attention indexer on the layers that run it
    sliding_all: bool  # every layer uses the config's sliding_window (Mistral)
    qwen_sliding: bool  # Qwen: sliding window only with use_sliding_window, from max_window_layers on
    alternate_sliding: bool  # sliding and full attention alternate (Gemma-2 without layer_types)
    layer_types: bool  # layer_types may be given; else every sliding_pattern-th layer is full (Gemma-3)
    sliding_pattern: int  # default sliding_window_pattern when the config has no layer_types
    nope: bool  # NoPE layers from no_rope_layers / no_rope_layer_interval (Llama-4, SmolLM3)
    nope_full: str  # full-attention layers without RoPE: "always" (Cohere-2) or "with_window" (EXAONE-4)
    no_rope: bool  # no positional encoding in any attention layer (Jamba, Nemotron-H)
    rotary_default: float  # share of each head RoPE rotates when the config gives no factor
    softcap: bool  # tanh soft-capping of attention / final logits when the config sets it (Gemma-2)
    sinks: bool  # learned attention sinks per head (gpt-oss)
    out_gate: bool  # a sigmoid output gate on attention (q_proj doubled: Qwen3-Next)
    fused_qkv: bool  # one fused q|k|v projection (a single GEMM)
    fused_gate_up: bool  # one fused gate|up projection
    parallel: bool  # attention and MLP read the same normed input in parallel (GPT-J, Falcon, phi)
    post_norms: bool  # extra norms after attention and MLP (Gemma-2/3 sandwich norms)
    post_only: bool  # norms only after attention and MLP, none before (OLMo-2/3, EXAONE-4)
    embed_scale: bool  # embeddings scaled by √hidden (Gemma): one multiply per element
    embed_norm: bool  # a LayerNorm right after the token embedding (Bloom)
    gemma3n: bool  # Gemma-3n text: KV sharing, per-layer inputs, AltUp, LAuReL (families_gemma3n.py)
    gemma4: bool  # Gemma-4 text: per-layer head_dim, K = V, KV sharing, per-layer inputs, MoE (families_gemma4.py)
    hybrid: str  # layer-plan convention of a hybrid / recurrent family (families_hybrid.py)
    attention_free: bool  # no attention layer at all (Mamba, Mamba2): attention heads are not read
