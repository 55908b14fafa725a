"""Pure state-space models and Bamba: Mamba, falcon-mamba, Mamba2 (attention-free) and Bamba (Mamba2 + attention).

Each family follows its ``transformers`` 5.x configuration and modeling files:

- Mamba (``mamba``, MambaForCausalLM) and falcon-mamba (``falcon_mamba``): every block is RMSNorm → Mamba mixer,
  no MLP, no attention. The inner width is the config's ``intermediate_size`` when it names one (the config
  class sets ``expand·hidden_size`` first, then the saved field overrides it: falcon-mamba-7b saves ``expand``
  16 with ``intermediate_size`` 8192), else ``expand·hidden_size``; ``time_step_rank`` "auto" is
  ⌈hidden/16⌉. falcon-mamba adds weightless RMS norms on dt, B and C (FalconMambaWeightlessRMSNorm).
- Mamba2 (``mamba2``, Mamba2ForCausalLM): RMSNorm → Mamba2 mixer per block, no MLP, no attention; the gated
  RMSNorm of the mixer (MambaRMSNormGated) is always there; ``use_bias`` on in_proj and out_proj.
- Bamba (``bamba``): every layer has a gated MLP; attention at ``attn_layer_indices`` (RoPE on half of each
  head: BambaConfig fixes ``partial_rotary_factor`` 0.5), a Mamba2 mixer elsewhere.

A model without attention layers has no KV cache: its per-sequence memory is the recurrent state alone (the
convolution inputs and the SSM state of every layer), which does not grow with the context.
"""

from __future__ import annotations

import math

from .families_hybrid import RecurrentSpec, state_dtype_bytes
from .family_traits import FamilyTraits

SSM_FAMILIES: dict[str, FamilyTraits] = {
    # no attention layer anywhere: no positions, no attention heads to read
    "mamba": FamilyTraits(norm="rms", mlp="gated", pos="none", tie=True, hybrid="mamba", attention_free=True),
    "falcon_mamba": FamilyTraits(
        norm="rms", mlp="gated", pos="none", tie=True, hybrid="falcon_mamba", attention_free=True
    ),
    "mamba2": FamilyTraits(norm="rms", mlp="gated", pos="none", tie=False, hybrid="mamba2", attention_free=True),
    "bamba": FamilyTraits(
        norm="rms",
        mlp="gated",
        pos="rope",
        tie=False,
        qkv_bias="attention_bias",
        o_bias="attention_bias",
        rotary_default=0.5,  # BambaConfig sets partial_rotary_factor = 0.5
        hybrid="bamba",
    ),
}

CONVENTIONS = ("mamba", "falcon_mamba", "mamba2", "bamba")


def layer_kinds(cfg: dict, conv: str, n: int) -> list[str]:
    """Every layer's kind: "linear_attention" (a Mamba / Mamba2 mixer) or "full_attention" (Bamba's attention)."""
    if conv != "bamba":
        return ["linear_attention"] * n  # MambaConfig / Mamba2Config.layer_types
    given = cfg.get("layers_block_type") or cfg.get("layer_types")
    if given is not None:
        legacy = {"mamba": "linear_attention", "attention": "full_attention"}
        if not isinstance(given, list) or len(given) != n:
            raise ValueError(f"config field 'layers_block_type' must list {n} entries (one per layer)")
        kinds = [legacy.get(k, k) if isinstance(k, str) else k for k in given]
        for k in kinds:
            if k not in ("linear_attention", "full_attention"):
                raise ValueError(
                    f"config field 'layers_block_type' has {k!r}; allowed for bamba: mamba, attention "
                    "(or linear_attention, full_attention)"
                )
        return kinds
    idx = cfg.get("attn_layer_indices") or []
    if not isinstance(idx, list) or any(isinstance(x, bool) or not isinstance(x, int) or not 0 <= x < n for x in idx):
        raise ValueError(f"config field 'attn_layer_indices' must list layer indices in [0, {n})")
    full = set(idx)
    return ["full_attention" if i in full else "linear_attention" for i in range(n)]  # BambaConfig.layers_block_type


def _act(cfg: dict) -> str:
    """The activation after the convolution: the config's ``hidden_act`` (silu by default), as the mixers apply it."""
    from .models import ACT_FLOPS

    act = cfg.get("hidden_act") or "silu"
    if act not in ACT_FLOPS:
        raise ValueError(f"config field 'hidden_act' = {act!r} is not supported; supported: {sorted(ACT_FLOPS)}")
    return act


def _mamba_spec(cfg: dict, conv: str, h: int) -> RecurrentSpec:
    """The Mamba (v1) mixer of MambaConfig / FalconMambaConfig."""
    from .models import _opt_int, _req_int

    given = _opt_int(cfg, "intermediate_size", None, minimum=1)
    d_inner = given or _opt_int(cfg, "expand", 2, minimum=1) * h  # the saved intermediate_size wins
    rank = cfg.get("time_step_rank", "auto")
    rank = math.ceil(h / 16) if rank == "auto" else _req_int(cfg, "time_step_rank")
    return RecurrentSpec(
        kind="mamba",
        d_inner=d_inner,
        num_heads=d_inner,
        head_dim=1,
        state_size=_opt_int(cfg, "state_size", 16, minimum=1),
        conv_dim=d_inner,
        conv_kernel=_opt_int(cfg, "conv_kernel", 4, minimum=1),
        conv_bias=bool(cfg.get("use_conv_bias", True)),
        proj_bias=bool(cfg.get("use_bias", False)),
        dt_rank=rank,
        state_bytes=state_dtype_bytes(cfg, "mamba_ssm_cache_dtype"),
        act=_act(cfg),
        # falcon-mamba: RMS norms of dt, B and C without weights; Mamba: none
        dt_bc_norm="plain" if conv == "falcon_mamba" else "",
    )


def _mamba2_spec(cfg: dict, h: int) -> RecurrentSpec:
    """The Mamba2 mixer of Mamba2Config."""
    from .models import _opt_int

    heads = _opt_int(cfg, "num_heads", 128, minimum=1)
    p = _opt_int(cfg, "head_dim", 64, minimum=1)
    d_inner = _opt_int(cfg, "expand", 2, minimum=1) * h
    if heads * p != d_inner:
        raise ValueError(
            f"config fields 'num_heads' = {heads} × 'head_dim' = {p} must equal expand × hidden_size = {d_inner}"
        )
    g = _opt_int(cfg, "n_groups", 8, minimum=1)
    ns = _opt_int(cfg, "state_size", 128, minimum=1)
    if heads % g:
        raise ValueError(f"config field 'n_groups' = {g} must divide 'num_heads' = {heads}")
    return RecurrentSpec(
        kind="mamba2",
        d_inner=d_inner,
        num_heads=heads,
        head_dim=p,
        state_size=ns,
        n_groups=g,
        conv_dim=d_inner + 2 * g * ns,  # x, B and C pass through the convolution
        conv_kernel=_opt_int(cfg, "conv_kernel", 4, minimum=1),
        conv_bias=bool(cfg.get("use_conv_bias", True)),
        proj_bias=bool(cfg.get("use_bias", False)),
        chunk_size=_opt_int(cfg, "chunk_size", 256, minimum=1),
        state_bytes=state_dtype_bytes(cfg, "mamba_ssm_cache_dtype"),
        act=_act(cfg),
    )


def bamba_mamba2_spec(cfg: dict, h: int) -> RecurrentSpec:
    """The Mamba2 mixer of BambaConfig and GraniteMoeHybridConfig (``mamba_*`` fields; ``mamba_d_head`` "auto" = expand·hidden / heads)."""
    from .models import _opt_int, _req_int

    heads = _opt_int(cfg, "mamba_n_heads", 128, minimum=1)
    d_inner = _opt_int(cfg, "mamba_expand", 2, minimum=1) * h
    p = cfg.get("mamba_d_head", "auto")
    p = d_inner // heads if p == "auto" else _req_int(cfg, "mamba_d_head")
    if p * heads != d_inner:
        raise ValueError(
            f"config fields 'mamba_n_heads' = {heads} × 'mamba_d_head' = {p} must equal mamba_expand × hidden_size = {d_inner}"
        )
    g = _opt_int(cfg, "mamba_n_groups", 1, minimum=1)
    ns = _opt_int(cfg, "mamba_d_state", 256, minimum=1)
    if heads % g:
        raise ValueError(f"config field 'mamba_n_groups' = {g} must divide 'mamba_n_heads' = {heads}")
    return RecurrentSpec(
        kind="mamba2",
        d_inner=d_inner,
        num_heads=heads,
        head_dim=p,
        state_size=ns,
        n_groups=g,
        conv_dim=d_inner + 2 * g * ns,
        conv_kernel=_opt_int(cfg, "mamba_d_conv", 4, minimum=1),
        conv_bias=bool(cfg.get("mamba_conv_bias", True)),
        proj_bias=bool(cfg.get("mamba_proj_bias", False)),
        chunk_size=_opt_int(cfg, "mamba_chunk_size", 256, minimum=1),
        state_bytes=state_dtype_bytes(cfg, "mamba_ssm_cache_dtype"),
        act=_act(cfg),
    )


def plan(cfg: dict, conv: str, n: int, h: int, dense_mlp) -> dict:
    """MLP of every layer and the mixer spec (the same keys as :func:`.families_hybrid.plan`)."""
    if conv in ("mamba", "falcon_mamba"):
        return {"dense": dense_mlp, "moe": None, "mlp": [None] * n, "mixer": _mamba_spec(cfg, conv, h)}
    if conv == "mamba2":
        return {"dense": dense_mlp, "moe": None, "mlp": [None] * n, "mixer": _mamba2_spec(cfg, h)}
    # bamba: a gated MLP of intermediate_size in every layer (BambaMLP)
    return {"dense": dense_mlp, "moe": None, "mlp": ["dense"] * n, "mixer": bamba_mamba2_spec(cfg, h)}


# the knobs that act only on attention layers (their KV cache, scores and softmax): (setting, its no-op value)
ATTENTION_KNOBS = (
    ("kv_bits", 16),
    ("kv_keep_ratio", 1.0),
    ("kv_budget", None),
    ("flash_attention", "off"),
    ("attention", "causal"),
    ("mla", "absorbed"),
)


def not_applicable(model, settings: dict) -> dict[str, str]:
    """For a model without any attention layer (Mamba, Mamba2): each attention-only knob that is set, and why
    it changes nothing; plus the KV cache itself. Empty for a model with attention layers (or a traced one)."""
    if model.traced is not None or any(lt.attention is not None for lt in model.layer_types):
        return {}
    why = "no attention layer in this model: "
    out = {"kv_cache": why + "no KV cache; each sequence keeps the fixed recurrent state instead"}
    for knob, default in ATTENTION_KNOBS:
        if knob in settings and settings[knob] != default:
            out[knob] = why + f"{knob} = {settings[knob]!r} has no effect (it acts on attention and its KV cache)"
    if (settings.get("offload") or {}).get("kv_cache"):
        out["offload.kv_cache"] = why + "there is no KV cache to offload"
    return out
