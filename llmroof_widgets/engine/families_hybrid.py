"""Hybrid and recurrent families: which layers hold attention, a recurrent / convolution mixer, an MLP or a MoE.

Each family's conventions are those of its ``transformers`` 5.x configuration and modeling files:

- Qwen3-Next (``qwen3_next``): ``layer_types`` (``linear_attention`` / ``full_attention``), by default every
  ``full_attention_interval``-th layer full; Gated DeltaNet mixers; MoE on every ``decoder_sparse_step``-th
  layer except ``mlp_only_layers``; gated attention (``q_proj`` doubled for a sigmoid output gate).
- Jamba (``jamba``): attention where ``i % attn_layer_period == attn_layer_offset``, Mamba elsewhere; MoE where
  ``i % expert_layer_period == expert_layer_offset``; no positional encoding.
- Nemotron-H (``nemotron_h``): ``layers_block_type`` or ``hybrid_override_pattern`` (``M`` Mamba2, ``E`` MoE,
  ``*`` attention, ``-`` MLP): one mixer *or* one MLP per block; no positional encoding; squared-ReLU MLPs.
- LFM2 (``lfm2``): ``layer_types`` (``conv`` / ``full_attention``), or ``full_attn_idxs``; gated short convolution.

A recurrent layer keeps a per-sequence state that does not grow with the context: the last ``K`` inputs of its
causal convolution (transformers keeps ``K`` columns) and, for SSM / linear-attention mixers, the recurrent state
matrix, kept in the dtype the config names (``mamba_ssm_cache_dtype`` / ``mamba_ssm_dtype``; float32 by default,
as transformers computes the scan in float32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .family_traits import FamilyTraits

# model_type → family traits (same keys as models.FAMILIES) plus ``hybrid``: the layer-plan convention
HYBRID_FAMILIES: dict[str, FamilyTraits] = {
    "qwen3_next": FamilyTraits(
        norm="rms",
        mlp="gated",
        pos="rope",
        tie=False,
        qkv_bias="attention_bias",
        o_bias="attention_bias",
        qk_norm="head",
        out_gate=True,
        hybrid="qwen3_next",
    ),
    "jamba": FamilyTraits(norm="rms", mlp="gated", pos="rope", no_rope=True, tie=False, hybrid="jamba"),
    "granitemoehybrid": FamilyTraits(norm="rms", mlp="gated", pos="rope", tie=False, hybrid="granitemoehybrid"),
    "lfm2_moe": FamilyTraits(norm="rms", mlp="gated", pos="rope", tie=True, qk_norm="head", hybrid="lfm2"),
    "nemotron_h": FamilyTraits(norm="rms", mlp="plain", pos="rope", no_rope=True, tie=False, hybrid="nemotron_h"),
    "lfm2": FamilyTraits(norm="rms", mlp="gated", pos="rope", tie=True, qk_norm="head", hybrid="lfm2"),
    "minimax": FamilyTraits(norm="rms", mlp="gated", pos="rope", tie=False, hybrid="minimax"),
    # Falcon-H1: every layer runs attention and a Mamba2 mixer side by side on the same normed input (kind "hybrid")
    "falcon_h1": FamilyTraits(
        norm="rms",
        mlp="gated",
        pos="rope",
        tie=False,
        qkv_bias="attention_bias",
        o_bias="attention_bias",
        hybrid="falcon_h1",
    ),
}

HYBRID_FAMILIES["qwen3_5_text"] = HYBRID_FAMILIES["qwen3_next"]  # Qwen3.5: the same layers (GDN projections split)
HYBRID_FAMILIES["qwen3_5_moe_text"] = HYBRID_FAMILIES["qwen3_next"]

# which mixer each layer kind holds (transformers' `layer_types` names; "mlp" = a Nemotron-H MLP-only block)
ATTENTION_KINDS = ("full_attention", "sliding_attention", "chunked_attention", "hybrid")
MIXER_KINDS = ("linear_attention", "conv", "hybrid")
HYBRID_KINDS = ("full_attention", "linear_attention", "conv", "moe", "mlp")

RECURRENT_KINDS = ("mamba", "mamba2", "gated_deltanet", "lightning", "short_conv")

_DTYPE_BYTES = {"float32": 4, "fp32": 4, "float": 4, "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2, "half": 2}


@dataclass(frozen=True)
class RecurrentSpec:
    """A recurrent or convolution token mixer (in place of, or beside, attention).

    Shapes per layer: ``num_heads`` heads of ``head_dim`` values, each with a state of ``state_size`` per value
    (Mamba: one "head" per inner channel, head_dim 1; Mamba2: heads × head_dim × d_state; Gated DeltaNet: value
    heads × d_v × d_k); ``conv_dim`` channels through a depthwise causal convolution of ``conv_kernel`` taps.
    """

    kind: str  # "mamba", "mamba2", "gated_deltanet", "lightning", "short_conv"
    d_inner: int  # width of the scanned stream (Mamba expand·h, Mamba2 heads·head_dim, GDN value_dim, conv h)
    num_heads: int = 0
    head_dim: int = 0
    state_size: int = 0
    n_groups: int = 1  # Mamba2 B/C groups; Gated DeltaNet key heads
    key_head_dim: int = 0  # Gated DeltaNet d_k (= state_size)
    conv_dim: int = 0
    conv_kernel: int = 0
    conv_bias: bool = False
    proj_bias: bool = False
    dt_rank: int = 0  # Mamba (v1) time-step rank
    chunk_size: int = 0  # chunk length of the prefill scan (0: sequential scan)
    state_bytes: int = 4  # bytes per element of the SSM / recurrent state (0: the model's activation dtype)
    act: str = "silu"  # activation after the convolution ("" for none)
    out_bias: bool | None = None  # bias of out_proj (None: as proj_bias)
    gated_norm: bool = True  # Mamba2: RMSNorm(y·silu(z)) with a weight; False: the gate alone (Falcon-H1)
    dt_bc_norm: str = "weighted"  # Mamba: RMS norms of dt, B, C: "weighted" (Jamba), "plain" (falcon-mamba), "" none

    def conv_state_elements(self) -> int:
        """Elements of the convolution state per sequence: the last K inputs of every channel."""
        return self.conv_dim * self.conv_kernel

    def ssm_state_elements(self) -> int:
        """Elements of the recurrent (SSM / linear-attention) state per sequence."""
        return self.num_heads * self.head_dim * self.state_size


def state_dtype_bytes(cfg: dict, *keys: str, default: int = 4) -> int:
    """Bytes per element of the recurrent state from the config's dtype fields (float32 unless stated)."""
    for k in keys:
        v = cfg.get(k)
        if v is None:
            continue
        name = str(v).replace("torch.", "").lower()
        if name not in _DTYPE_BYTES:
            raise ValueError(
                f"config field {k!r} = {v!r} is not a dtype this engine knows; allowed: {sorted(_DTYPE_BYTES)}"
            )
        return _DTYPE_BYTES[name]
    return default


def _ints(cfg: dict, key: str, n: int) -> list[int]:
    v = cfg.get(key) or []
    if not isinstance(v, list) or any(isinstance(x, bool) or not isinstance(x, int) or not 0 <= x < n for x in v):
        raise ValueError(f"config field {key!r} must list layer indices in [0, {n})")
    return v


def layer_kinds(cfg: dict, fam: FamilyTraits, n: int) -> list[str]:
    """The kind of every layer of a hybrid family (transformers' ``layer_types`` names, plus "moe"/"mlp" blocks)."""
    from . import families_ssm
    from .models import _opt_int

    conv = fam["hybrid"]
    if conv in families_ssm.CONVENTIONS:  # Mamba, falcon-mamba, Mamba2, Bamba (families_ssm.py)
        return families_ssm.layer_kinds(cfg, conv, n)
    given = cfg.get("layer_types")
    if conv == "nemotron_h":
        pattern = cfg.get("hybrid_override_pattern")
        if pattern is not None and not isinstance(pattern, str):
            raise ValueError(f"config field 'hybrid_override_pattern' must be a string of M, E, *, -; got {pattern!r}")
        blocks = cfg.get("layers_block_type") or given
        if blocks is None and isinstance(pattern, str):
            legend = {"M": "linear_attention", "E": "moe", "*": "full_attention", "-": "mlp"}
            bad = sorted(set(pattern) - set(legend))
            if bad:
                raise ValueError(
                    f"config field 'hybrid_override_pattern' has {bad}; allowed: M (Mamba2), E (MoE), * (attention), - (MLP)"
                )
            blocks = [legend[c] for c in pattern]
        if blocks is None:
            raise ValueError("config is missing the field 'layers_block_type' (or 'hybrid_override_pattern')")
        legacy = {"mamba": "linear_attention", "attention": "full_attention"}
        kinds = [legacy.get(b, b) for b in blocks] if isinstance(blocks, list) else blocks
    elif given is not None:
        kinds = given
    elif conv == "qwen3_next":
        every = _opt_int(cfg, "full_attention_interval", 4, minimum=1)  # every `every`-th layer is full attention
        kinds = ["full_attention" if (i + 1) % every == 0 else "linear_attention" for i in range(n)]
    elif conv == "jamba":
        period = _opt_int(cfg, "attn_layer_period", 8, minimum=1)
        offset = _opt_int(cfg, "attn_layer_offset", 4)
        if offset >= period:
            raise ValueError(f"config field 'attn_layer_offset' = {offset} must be < 'attn_layer_period' = {period}")
        kinds = ["full_attention" if i % period == offset else "linear_attention" for i in range(n)]
    elif conv == "granitemoehybrid":
        kinds = ["linear_attention"] * n  # transformers' default: every layer Mamba2
    elif conv == "falcon_h1":
        kinds = ["hybrid"] * n  # attention and Mamba2 in parallel in every layer
    elif conv == "minimax":
        types = cfg.get("attn_type_list")  # MiniMax's own configs: 0 lightning, 1 softmax attention
        if isinstance(types, list):
            if any(t not in (0, 1) for t in types):
                raise ValueError(
                    "config field 'attn_type_list' must hold 0 (lightning) or 1 (softmax attention) per layer"
                )
            kinds = ["full_attention" if t == 1 else "linear_attention" for t in types]
        else:  # transformers' MiniMaxConfig default: alternate, starting with full attention
            kinds = ["full_attention" if (i + 1) % 2 else "linear_attention" for i in range(n)]
    elif conv == "lfm2":
        idx = cfg.get("full_attn_idxs")
        full = set(range(n)) if idx is None else set(_ints(cfg, "full_attn_idxs", n))
        kinds = ["full_attention" if i in full else "conv" for i in range(n)]
    else:  # pragma: no cover - every hybrid family is listed above
        raise ValueError(f"no layer plan for hybrid family {conv!r}")
    if not isinstance(kinds, list) or len(kinds) != n:
        raise ValueError(f"config field 'layer_types' must list {n} entries (one per layer)")
    if conv == "granitemoehybrid":  # Granite-4 configs use the legacy names
        kinds = [{"mamba": "linear_attention", "attention": "full_attention"}.get(k, k) for k in kinds]
    allowed: dict[str, tuple[str, ...]] = {
        "qwen3_next": ("full_attention", "linear_attention"),
        "jamba": ("full_attention", "linear_attention"),
    }
    allowed["granitemoehybrid"] = allowed["minimax"] = ("full_attention", "linear_attention")
    allowed["falcon_h1"] = ("hybrid",)
    allowed["lfm2"] = ("full_attention", "conv")
    allowed["nemotron_h"] = HYBRID_KINDS
    for t in kinds:
        if t not in allowed[conv]:
            raise ValueError(f"config field 'layer_types' has {t!r}; allowed for {conv}: {', '.join(allowed[conv])}")
    return list(kinds)


def num_layers(cfg: dict, fam: FamilyTraits, default: int | None) -> int | None:
    """Nemotron-H takes its depth from the block pattern (``num_hidden_layers`` is deprecated there)."""
    if fam.get("hybrid") == "nemotron_h":
        blocks = cfg.get("layers_block_type") or cfg.get("layer_types") or cfg.get("hybrid_override_pattern")
        if isinstance(blocks, (list, str)) and blocks:
            return len(blocks)
    return default


def plan(
    cfg: dict, fam: FamilyTraits, mt: str, kinds: list[str], h: int, inter: int, act: str, dense_mlp, moe_factory
) -> dict:
    """MLP of every layer and the recurrent mixer spec of a hybrid family.

    Returns ``dense`` (the dense MLP spec), ``moe`` (MoE spec or None), ``mlp`` (per layer: "dense", "moe" or None)
    and ``mixer`` (the :class:`RecurrentSpec` of the recurrent layers, or None).
    ``moe_factory(**kw)`` builds an ``MLPSpec(kind="moe", ...)``.
    """
    from dataclasses import replace

    from . import families_ssm
    from .models import ACT_FLOPS, _opt_int, _req_int

    n = len(kinds)
    conv = fam["hybrid"]
    if conv in families_ssm.CONVENTIONS:  # Mamba, falcon-mamba, Mamba2, Bamba (families_ssm.py)
        return families_ssm.plan(cfg, conv, n, h, dense_mlp)
    moe = None
    dense = dense_mlp
    mlp: list[str | None]  # per layer: "dense", "moe", or None (a Nemotron-H block without an MLP)
    if conv == "qwen3_next":
        E = _opt_int(cfg, "num_experts", 0) or 0
        if E:
            shared = _opt_int(cfg, "shared_expert_intermediate_size", 0) or 0
            moe = moe_factory(
                intermediate_size=_req_int(cfg, "moe_intermediate_size"),
                gated=True,
                act=act,
                num_experts=E,
                top_k=_req_int(cfg, "num_experts_per_tok"),
                shared_intermediate_size=shared,
                shared_gate=bool(shared),
            )
        step = _opt_int(cfg, "decoder_sparse_step", 1, minimum=1)
        only = set(_ints(cfg, "mlp_only_layers", n))
        mlp = ["moe" if (moe and i not in only and (i + 1) % step == 0) else "dense" for i in range(n)]
        hk, hv = _req_int(cfg, "linear_num_key_heads"), _req_int(cfg, "linear_num_value_heads")
        dk, dv = _req_int(cfg, "linear_key_head_dim"), _req_int(cfg, "linear_value_head_dim")
        if hv % hk:
            raise ValueError(
                f"config field 'linear_num_value_heads' = {hv} must be a multiple of 'linear_num_key_heads' = {hk}"
            )
        mixer = RecurrentSpec(
            kind="gated_deltanet",
            d_inner=hv * dv,
            num_heads=hv,
            head_dim=dv,
            state_size=dk,
            n_groups=hk,
            key_head_dim=dk,
            conv_dim=2 * hk * dk + hv * dv,  # q, k and v pass through the convolution
            conv_kernel=_opt_int(cfg, "linear_conv_kernel_dim", 4, minimum=1),
            chunk_size=64,  # transformers' torch_chunk_gated_delta_rule (and FLA's kernels) use chunks of 64
            state_bytes=state_dtype_bytes(cfg, "mamba_ssm_dtype", "mamba_ssm_cache_dtype"),
        )
    elif conv == "jamba":
        E = _opt_int(cfg, "num_experts", 16, minimum=1)
        k = _opt_int(cfg, "num_experts_per_tok", 2, minimum=1)
        if E > 1:
            moe = moe_factory(intermediate_size=inter, gated=True, act=act, num_experts=E, top_k=k)
        period = _opt_int(cfg, "expert_layer_period", 2, minimum=1)
        offset = _opt_int(cfg, "expert_layer_offset", 1)
        if offset >= period:
            raise ValueError(
                f"config field 'expert_layer_offset' = {offset} must be < 'expert_layer_period' = {period}"
            )
        mlp = ["moe" if (moe and i % period == offset) else "dense" for i in range(n)]
        d_inner = _opt_int(cfg, "mamba_expand", 2, minimum=1) * h
        rank = cfg.get("mamba_dt_rank", "auto")
        rank = math.ceil(h / 16) if rank == "auto" else _req_int(cfg, "mamba_dt_rank")
        mixer = RecurrentSpec(
            kind="mamba",
            d_inner=d_inner,
            num_heads=d_inner,
            head_dim=1,
            state_size=_opt_int(cfg, "mamba_d_state", 16, minimum=1),
            conv_dim=d_inner,
            conv_kernel=_opt_int(cfg, "mamba_d_conv", 4, minimum=1),
            conv_bias=bool(cfg.get("mamba_conv_bias", True)),
            proj_bias=bool(cfg.get("mamba_proj_bias", False)),
            dt_rank=rank,
            state_bytes=state_dtype_bytes(cfg, "mamba_ssm_cache_dtype"),
        )
    elif conv == "nemotron_h":
        mlp_act = cfg.get("mlp_hidden_act", "relu2")
        if mlp_act not in ACT_FLOPS:
            raise ValueError(
                f"config field 'mlp_hidden_act' = {mlp_act!r} is not supported; supported: {sorted(ACT_FLOPS)}"
            )
        dense = replace(dense_mlp, gated=False, act=mlp_act, bias=bool(cfg.get("mlp_bias", False)))
        if "moe" in kinds:
            moe = moe_factory(
                intermediate_size=_req_int(cfg, "moe_intermediate_size"),
                gated=False,
                act=mlp_act,
                num_experts=_req_int(cfg, "n_routed_experts", "num_local_experts"),
                top_k=_req_int(cfg, "num_experts_per_tok"),
                shared_intermediate_size=(
                    _req_int(cfg, "moe_shared_expert_intermediate_size")
                    if (_opt_int(cfg, "n_shared_experts", 1) or 0)
                    else 0
                ),
                router_score_bias=True,
                # latent MoE (Nemotron-3 Super / Ultra): the routed experts run in moe_latent_size, between a
                # down- and an up-projection of the hidden state (NemotronHMoE.fc1/fc2_latent_proj)
                latent_size=_opt_int(cfg, "moe_latent_size", 0, minimum=1),  # null / absent: no latent projection
            )
        mlp = ["moe" if k == "moe" else "dense" if k == "mlp" else None for k in kinds]
        heads = _req_int(cfg, "mamba_num_heads")
        p = _req_int(cfg, "mamba_head_dim")
        g = _opt_int(cfg, "n_groups", 8, minimum=1)
        ns = _opt_int(cfg, "ssm_state_size", 128, minimum=1)
        if heads % g:
            raise ValueError(f"config field 'n_groups' = {g} must divide 'mamba_num_heads' = {heads}")
        mixer = RecurrentSpec(
            kind="mamba2",
            d_inner=heads * p,
            num_heads=heads,
            head_dim=p,
            state_size=ns,
            n_groups=g,
            conv_dim=heads * p + 2 * g * ns,  # x, B and C pass through the convolution
            conv_kernel=_opt_int(cfg, "conv_kernel", 4, minimum=1),
            conv_bias=bool(cfg.get("use_conv_bias", True)),
            proj_bias=bool(cfg.get("use_bias", False)),
            chunk_size=_opt_int(cfg, "chunk_size", 128, minimum=1),
            state_bytes=state_dtype_bytes(cfg, "mamba_ssm_cache_dtype"),
        )
    elif conv == "granitemoehybrid":
        E = _opt_int(cfg, "num_local_experts", 8) or 0
        shared = _req_int(cfg, "shared_intermediate_size")
        dense = replace(dense_mlp, intermediate_size=shared)  # the shared MLP alone when there are no experts
        if E:
            moe = moe_factory(
                intermediate_size=inter,
                gated=True,
                act=act,
                num_experts=E,
                top_k=_opt_int(cfg, "num_experts_per_tok", 2, minimum=1),
                shared_intermediate_size=shared,
            )
        mlp = ["moe" if moe else "dense"] * n
        mixer = families_ssm.bamba_mamba2_spec(cfg, h)  # Bamba's mamba_* fields and Mamba2 mixer
    elif conv == "falcon_h1":
        dense = replace(dense_mlp, bias=bool(cfg.get("mlp_bias", False)))
        mlp = ["dense"] * n
        d_inner = _opt_int(cfg, "mamba_d_ssm", None, minimum=1) or _opt_int(cfg, "mamba_expand", 2, minimum=1) * h
        heads = _opt_int(cfg, "mamba_n_heads", 128, minimum=1)
        p = cfg.get("mamba_d_head", "auto")
        p = d_inner // heads if p == "auto" else _req_int(cfg, "mamba_d_head")
        g = _opt_int(cfg, "mamba_n_groups", 1, minimum=1)
        ns = _opt_int(cfg, "mamba_d_state", 256, minimum=1)
        if heads % g:
            raise ValueError(f"config field 'mamba_n_groups' = {g} must divide 'mamba_n_heads' = {heads}")
        mixer = RecurrentSpec(
            kind="mamba2",
            d_inner=heads * p,
            num_heads=heads,
            head_dim=p,
            state_size=ns,
            n_groups=g,
            conv_dim=d_inner + 2 * g * ns,
            conv_kernel=_opt_int(cfg, "mamba_d_conv", 4, minimum=1),
            conv_bias=bool(cfg.get("mamba_conv_bias", True)),
            proj_bias=bool(cfg.get("mamba_proj_bias", False)),
            out_bias=bool(cfg.get("projectors_bias", False)),
            gated_norm=bool(cfg.get("mamba_rms_norm", False)),
            chunk_size=_opt_int(cfg, "mamba_chunk_size", 256, minimum=1),
            state_bytes=state_dtype_bytes(cfg, "mamba_ssm_cache_dtype"),
        )
        if heads * p != d_inner:
            raise ValueError(
                f"config fields 'mamba_n_heads' = {heads} × 'mamba_d_head' = {p} must equal the SSM width {d_inner}"
            )
    elif conv == "minimax":
        moe = moe_factory(
            intermediate_size=inter,
            gated=True,
            act=act,
            num_experts=_req_int(cfg, "num_local_experts"),
            top_k=_req_int(cfg, "num_experts_per_tok"),
        )
        mlp = ["moe"] * n
        heads = _req_int(cfg, "num_attention_heads")
        d = _opt_int(cfg, "head_dim", None, minimum=1) or h // heads
        mixer = RecurrentSpec(
            kind="lightning",
            d_inner=heads * d,
            num_heads=heads,
            head_dim=d,
            state_size=d,  # the state of a head is Kᵀ·V: d × d
            n_groups=heads,
            chunk_size=_opt_int(cfg, "block_size", 256, minimum=1),
            state_bytes=0,  # transformers keeps it in the model dtype
        )
    elif mt == "lfm2_moe":
        first_dense = _opt_int(cfg, "num_dense_layers", 2) or 0  # the first layers keep a dense MLP
        moe = moe_factory(
            intermediate_size=_req_int(cfg, "moe_intermediate_size"),
            gated=True,
            act=act,
            num_experts=_req_int(cfg, "num_experts"),
            top_k=_req_int(cfg, "num_experts_per_tok"),
            router_score_bias=bool(cfg.get("use_expert_bias", True)),  # expert_bias: a buffer, read with the router
        )
        mlp = ["dense" if i < first_dense else "moe" for i in range(n)]
        mixer = RecurrentSpec(
            kind="short_conv",
            d_inner=h,
            conv_dim=h,
            conv_kernel=_opt_int(cfg, "conv_L_cache", 3, minimum=1),
            conv_bias=bool(cfg.get("conv_bias", False)),
            proj_bias=bool(cfg.get("conv_bias", False)),
            act="",
        )
    elif conv == "lfm2":
        width = _opt_int(cfg, "block_ff_dim", None, minimum=1) or inter
        if cfg.get("block_auto_adjust_ff_dim", True):
            width = int(2 * width / 3)  # Lfm2MLP: 2/3 of the width, times the multiplier, rounded up to a multiple
            mult = cfg.get("block_ffn_dim_multiplier", 1.0)
            if mult is not None and (isinstance(mult, bool) or not isinstance(mult, (int, float)) or mult <= 0):
                raise ValueError(f"config field 'block_ffn_dim_multiplier' must be a positive number, got {mult!r}")
            if mult is not None:
                step = _opt_int(cfg, "block_multiple_of", 256, minimum=1)
                width = step * ((int(float(mult) * width) + step - 1) // step)
        dense = replace(dense_mlp, intermediate_size=width)
        mlp = ["dense"] * n
        mixer = RecurrentSpec(
            kind="short_conv",
            d_inner=h,
            conv_dim=h,
            conv_kernel=_opt_int(cfg, "conv_L_cache", 3, minimum=1),
            conv_bias=bool(cfg.get("conv_bias", False)),
            proj_bias=bool(cfg.get("conv_bias", False)),
            act="",
        )
    else:  # pragma: no cover
        raise ValueError(f"no layer plan for hybrid family {conv!r}")
    if any(k == "dense" for k in mlp) and dense.intermediate_size < 1:
        raise ValueError("config is missing the field 'intermediate_size' (the width of the dense MLP layers)")
    if moe is not None and moe.top_k > moe.num_experts:
        raise ValueError(
            f"config field 'num_experts_per_tok' = {moe.top_k} exceeds the number of experts {moe.num_experts}"
        )
    return {"dense": dense, "moe": moe, "mlp": mlp, "mixer": mixer}


def layer_name(attention: bool, window: bool, mixer, mlp, *, any_window: bool, any_full: bool) -> str:
    """Name of a hybrid layer type: its mixer kind(s), then "+moe" for a MoE (e.g. "gated_deltanet+moe")."""
    parts = []
    if attention:
        parts.append(("sliding" if window else "full") if (any_window and any_full) else "attention")
    if mixer is not None:
        parts.append(mixer.kind)
    if mlp is not None and mlp.kind == "moe":
        parts.append("moe")
    elif not parts:
        parts.append("mlp")
    return "+".join(parts)
