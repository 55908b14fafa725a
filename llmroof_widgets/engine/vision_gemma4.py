"""Gemma-4's vision tower (``gemma4`` with a ``vision_config`` of model_type ``gemma4_vision``).

As transformers 5.x ``modeling_gemma4`` builds it (every matrix product counted):

- patch embedding: ``input_proj`` (3·p² → hidden, no bias) of each 16 × 16 patch, plus a learned 2-D position:
  the sum of an x row and a y row of ``position_embedding_table`` (2 × position_embedding_size × hidden);
- each of ``num_hidden_layers`` blocks: RMSNorm, q/k/v projections (no bias; ``Gemma4ClippableLinear`` clamps
  are buffers), q_norm and k_norm (weights of head_dim), v_norm (no weight), axial 2-D rotary of q and k,
  bidirectional attention over the image's patches, o_proj, post-attention RMSNorm, residual; pre-MLP RMSNorm,
  gated MLP, post-MLP RMSNorm, residual;
- pooler: the k × k patches of each image token averaged (k = ``pooling_kernel_size``), × √hidden; with
  ``standardize`` a shift and scale (buffers);
- ``embed_vision``: an RMSNorm without weight and ``embedding_projection`` (hidden → the text hidden size).

An image of H × W pixels (multiples of p·k, as the processor resizes) gives (H/p)·(W/p) patches and
(H/(p·k))·(W/(p·k)) image tokens, at most ``vision_soft_tokens_per_image`` (the processor's budget).
The audio tower (``audio_config``, Gemma-4 E-series) is not modelled: such a config is refused by name.
"""

from __future__ import annotations

from .models import AttentionSpec, MLPSpec
from .ops import RMS_FLOPS, ROPE_FLOPS, kv_heads_per_device


def parse(outer: dict, raw: dict, text_hidden: int, spec_cls, int_of, act_of):
    """The VisionSpec of a gemma4 config (vision_config fields; defaults: transformers' Gemma4VisionConfig)."""
    if outer.get("audio_config"):
        raise ValueError(
            "config field 'audio_config': the gemma4 audio tower is not supported; set it to null to analyse "
            "the text model and the vision tower"
        )
    vt = raw.get("model_type", "gemma4_vision")
    if vt != "gemma4_vision":
        raise ValueError(
            f"config field 'vision_config.model_type' = {vt!r} is not supported; supported: 'gemma4_vision'"
        )
    defaults = dict(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=16,
        num_attention_heads=12,
        head_dim=64,
        hidden_activation="gelu_pytorch_tanh",
        pooling_kernel_size=3,
        patch_size=16,
        position_embedding_size=10 * 1024,
        standardize=False,
    )
    v = {**defaults, **{k: x for k, x in raw.items() if x is not None}}
    w = "vision_config"
    heads = int_of(v, "num_attention_heads", w)
    kv = int_of({"num_key_value_heads": v.get("num_key_value_heads", heads)}, "num_key_value_heads", w)
    if kv != heads:
        raise ValueError(
            f"config field 'vision_config.num_key_value_heads' = {kv}: only num_key_value_heads = "
            f"num_attention_heads ({heads}) is supported for the gemma4 vision tower"
        )
    if not isinstance(v["standardize"], bool):
        raise ValueError(f"config field 'vision_config.standardize' must be true or false, got {v['standardize']!r}")
    tokens = outer.get("vision_soft_tokens_per_image", 280)
    return spec_cls(
        kind="gemma4",
        depth=int_of(v, "num_hidden_layers", w),
        hidden_size=int_of(v, "hidden_size", w),
        intermediate_size=int_of(v, "intermediate_size", w),
        num_heads=heads,
        head_dim=int_of(v, "head_dim", w),
        patch_size=int_of(v, "patch_size", w),
        temporal_patch_size=1,
        in_channels=3,
        merge=int_of(v, "pooling_kernel_size", w),
        out_hidden_size=text_hidden,
        norm="rms",
        mlp_gated=True,
        act=act_of(v.get("hidden_activation"), w),
        qkv_fused=False,
        qkv_bias=False,
        o_bias=False,
        mlp_bias=False,
        patch_bias=False,
        rope=True,
        pos_rows=2 * int_of(v, "position_embedding_size", w),  # an x table and a y table
        max_tokens=int_of({"vision_soft_tokens_per_image": tokens}, "vision_soft_tokens_per_image", "config"),
        standardize=v["standardize"],
        projector="gemma4",
        projector_bias=False,
    )


def block(b, name: str, count: int) -> None:
    """One encoder block (RMSNorm sandwich, q/k/v norms, 2-D rotary, bidirectional attention, gated MLP)."""
    v, N, p, tp = b.v, b.N, b.p, b.tp
    b._lt, b._count = name, count
    h, H, d = v.hidden_size, v.num_heads, v.head_dim
    Hl = H // tp
    b._vis_pairs = v.attention_pairs(b.image_size, False)
    b.norm("norm1", N, h)
    for nm in ("q_proj", "k_proj", "v_proj"):
        b.linear(nm, N, h, H * d, split="col")
    # q_norm and k_norm: RMSNorms over each head's d, weights of d each (replicated under TP)
    b.elementwise("qk_norm", N * 2 * Hl * d, RMS_FLOPS, weight_elems=2 * d, what="RMSNorm of q and k per head")
    b.elementwise("v_norm", N * Hl * d, RMS_FLOPS - 1, what="RMSNorm of v (no weight)")
    b.elementwise("rotary_2d", N * 2 * Hl * d, ROPE_FLOPS, what="2-D rotary embedding of q and k")
    a = AttentionSpec(kind="mha", num_heads=H, num_kv_heads=H, head_dim=d, v_head_dim=d, window=None)
    Hkvl = kv_heads_per_device(H, tp)
    b.attention_core(
        a,
        H=Hl,
        Hkv=Hkvl,
        dqk=d,
        dv=d,
        q_bytes=p.a,
        k_bytes=p.a,
        v_bytes=p.a,
        label=", within an image",
        kv_in_cache=False,
    )
    b.linear("o_proj", N, H * d, h, split="row")
    b.tp_allreduce("attn_allreduce", N)
    b.norm("post_attn_norm", N, h)
    b.elementwise("attn_residual", N * h, 1, reads=2, writes=1, what="residual add")
    b.norm("norm2", N, h)
    b.dense_mlp(MLPSpec(kind="dense", intermediate_size=v.intermediate_size, gated=True, act=v.act))
    b.tp_allreduce("mlp_allreduce", N)
    b.norm("post_mlp_norm", N, h)
    b.elementwise("mlp_residual", N * h, 1, reads=2, writes=1, what="residual add")


def build(b):
    """All rows of one encode pass of the gemma4 vision tower and its projector."""
    v, N, p = b.v, b.N, b.p
    h = v.hidden_size
    b._lt, b._count = "vision", 1
    # patch embedding: each patch's 3·p² pixels times a (3·p²) × hidden weight
    b.linear("patch_embed", N, 3 * v.patch_size**2, h, weight_label="C·p²·hidden")
    # 2-D learned positions: x row + y row, added to the patch embedding (2 adds per element)
    r = b.elementwise("pos_embed", N * h, 2, reads=3, writes=1, what="x row + y row of the position tables, added")
    r.params = v.pos_rows * h
    r.resident = v.pos_rows * h * p.hp
    r.wclass = "hp"
    block(b, "vision", v.depth)
    b._lt, b._count = "vision", 1
    M = N / v.merge**2  # image tokens of the batch's images on this device
    # pooler: each token the mean of its k × k patches (one add per patch element), × √hidden per token element
    r = b.elementwise("avg_pool", N * h, 1, reads=1, writes=0, what="average pooling of k × k patches")
    if not b.o.fused:
        r.add_term("activation", "pooled output", ("M", M), ("h", h), b._fa)
    b.elementwise("pool_scale", M * h, 2 + 2 * int(v.standardize), what="÷k², ×√h (and standardize: − bias, × scale)")
    b.elementwise("embedding_pre_projection_norm", M * h, RMS_FLOPS - 1, what="RMSNorm without weight")
    b.linear("embedding_projection", M, h, v.out_hidden_size)
    b._apply_storage()
    return b.rows
