"""Gemma-4 text model (``gemma4_text``; the text tower of ``gemma4``) and per-layer attention geometry.

Per-layer attention geometry (generic): transformers' ``per_layer_config`` convention (configuration_utils,
``HeterogeneousConfigMixin``) — a sparse map from a layer index to the fields that differ on that layer.
This engine reads the attention fields of it (``head_dim``, ``num_key_value_heads``, ``num_attention_heads``):
each layer's q/k/v/o projections, score and value products and KV bytes use its own values.

Gemma-4, as transformers 5.x ``modeling_gemma4`` / ``configuration_gemma4`` build it (every matrix product counted):

- full-attention layers use ``global_head_dim`` (class default 512) and, when ``attention_k_eq_v`` is set,
  ``num_global_key_value_heads`` KV heads; ``Gemma4TextConfig.__post_init__`` writes both into ``per_layer_config``;
- ``attention_k_eq_v``: full-attention layers have no ``v_proj``, the values are the k projection's output
  (v_norm without weight, no rotary); the cache still holds K and V (two tensors after the norms);
- q_norm and k_norm (weights of head_dim), v_norm (no weight); partial rotary on full layers
  (``rope_parameters["full_attention"]["partial_rotary_factor"]``);
- KV sharing: the last ``num_kv_shared_layers`` layers have no k/v projections and no cache of their own and
  attend the K/V of the last earlier layer of their type (as Gemma-3n); with ``use_double_wide_mlp`` their MLP
  is twice ``intermediate_size`` wide;
- per-layer inputs (``hidden_size_per_layer_input`` > 0, the E-series): a ``vocab_size_per_layer_input`` × (L·P)
  embedding, ``per_layer_model_projection`` (h → L·P) with an RMSNorm over P, and in each layer a gate (h → P),
  GELU·input and a projection (P → h) with an RMSNorm (the same operators as Gemma-3n, families_gemma3n.py);
- MoE (``enable_moe_block``): every layer runs its dense MLP (counted as the MoE's shared expert of width
  intermediate_size) AND ``num_experts`` routed experts (top ``top_k_experts`` of ``moe_intermediate_size``);
  the router (a weightless RMSNorm, a scale of h, h → E, a per-expert scale of E) and three more RMSNorms;
- ``layer_scalar`` is a buffer (no parameter); the token embedding is scaled by √h; final logits soft-capped.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from . import families_gemma3n

# per_layer_config fields this engine applies per layer (attention geometry); others are refused by name
PER_LAYER_FIELDS = ("head_dim", "num_key_value_heads", "num_attention_heads")
# Gemma4TextConfig's rope_parameters when a config has none: partial (proportional) rotary on full layers
DEFAULT_ROPE = {
    "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
    "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1_000_000.0},
}


def attention_overrides(cfg: dict, n_layers: int, kinds: list[str], opt_int, gemma4: bool) -> list[dict[str, int]]:
    """Per layer: the attention fields that differ from the config's global ones ({} where none do).

    Read from ``per_layer_config`` when the config has it; a Gemma-4 config without it gets what
    ``Gemma4TextConfig.__post_init__`` writes there (full-attention layers: ``global_head_dim``, and
    ``num_global_key_value_heads`` when ``attention_k_eq_v`` is set).
    """
    out: list[dict[str, int]] = [{} for _ in range(n_layers)]
    given = cfg.get("per_layer_config")
    if given is not None:
        if not isinstance(given, dict):
            raise ValueError("config field 'per_layer_config' must map layer indices to field overrides")
        for key, fields in given.items():
            if not (isinstance(key, int) or (isinstance(key, str) and key.isdigit())) or isinstance(key, bool):
                raise ValueError(f"config field 'per_layer_config' has the key {key!r}; keys are layer indices")
            i = int(key)
            if i >= n_layers:
                raise ValueError(f"config field 'per_layer_config' names layer {i}; the model has {n_layers} layers")
            if not isinstance(fields, dict):
                raise ValueError(f"config field 'per_layer_config[{key}]' must be a dict of field overrides")
            for name, v in fields.items():
                if name not in PER_LAYER_FIELDS:
                    raise ValueError(
                        f"config field 'per_layer_config[{key}].{name}' is not supported per layer; "
                        f"supported: {', '.join(PER_LAYER_FIELDS)}"
                    )
                if v is not None:
                    out[i][name] = opt_int(
                        {f"per_layer_config[{key}].{name}": v},
                        f"per_layer_config[{key}].{name}",
                        None,
                        minimum=1,
                        maximum=10**5,
                    )
        return out
    if not gemma4:
        return out
    ghd = opt_int(cfg, "global_head_dim", 512, minimum=1, maximum=10**5)  # Gemma4TextConfig's default
    gkv = opt_int(cfg, "num_global_key_value_heads", None, minimum=1, maximum=10**5)
    k_eq_v = cfg.get("attention_k_eq_v", False)
    for i, kind in enumerate(kinds):
        if kind == "full_attention":
            out[i]["head_dim"] = ghd
            if k_eq_v and gkv is not None:  # the KV-head override is gated by attention_k_eq_v
                out[i]["num_key_value_heads"] = gkv
    return out


def parse(cfg: dict, n_layers: int, kinds: list[str], req_int, opt_int) -> dict[str, Any]:
    """The Gemma-4 extras of a config (defaults: transformers' Gemma4TextConfig)."""
    if cfg.get("use_bidirectional_attention") == "all":
        raise ValueError(
            "config field 'use_bidirectional_attention' = 'all' (non-causal text attention) is not supported; "
            "supported: null or 'vision'"
        )
    n_shared = opt_int(cfg, "num_kv_shared_layers", 0, minimum=0)
    if n_shared >= n_layers:
        raise ValueError(f"config field 'num_kv_shared_layers' = {n_shared} must be < num_hidden_layers = {n_layers}")
    first = n_layers - n_shared
    if n_shared:  # transformers' kv_sharing_modes: each shared kind needs an earlier layer of that kind
        orphan = sorted(set(kinds[first:]) - set(kinds[:first]))
        if orphan:
            raise ValueError(
                f"config field 'num_kv_shared_layers' leaves no earlier layer of kind {orphan[0]!r} to share K/V with"
            )
    # per-layer inputs: the class default is 256; an explicit null (some exporters write it for "off") means none
    P = 0 if "hidden_size_per_layer_input" in cfg and cfg["hidden_size_per_layer_input"] is None else None
    P = opt_int(cfg, "hidden_size_per_layer_input", 256, minimum=0) if P is None else P
    out: dict[str, Any] = {
        "first_shared": first,
        "k_eq_v": bool(cfg.get("attention_k_eq_v", False)),
        "double_wide": bool(cfg.get("use_double_wide_mlp", False)),
        "hidden_size_per_layer_input": P,
        "vocab_size_per_layer_input": opt_int(cfg, "vocab_size_per_layer_input", 262_144, minimum=1) if P else 0,
        "moe": None,
    }
    if cfg.get("enable_moe_block", False):
        E = req_int(cfg, "num_experts")
        k = req_int(cfg, "top_k_experts")
        if k > E:
            raise ValueError(f"config field 'top_k_experts' = {k} exceeds the number of experts {E}")
        out["moe"] = {"num_experts": E, "top_k": k, "intermediate_size": req_int(cfg, "moe_intermediate_size")}
    return out


def layer_mlp(g4: dict, i: int, dense, moe_spec_of):
    """Layer i's MLP: the dense MLP (twice as wide on KV-shared layers with use_double_wide_mlp), or with
    ``enable_moe_block`` the routed experts plus that dense MLP as their always-on shared expert."""
    width = dense.intermediate_size * (2 if g4["double_wide"] and i >= g4["first_shared"] else 1)
    moe = g4["moe"]
    if moe is None:
        return replace(dense, intermediate_size=width)
    return moe_spec_of(
        intermediate_size=moe["intermediate_size"],
        gated=True,
        act=dense.act,
        num_experts=moe["num_experts"],
        top_k=moe["top_k"],
        shared_intermediate_size=width,
    )


def model_ops(b) -> None:
    """Model-level operators: the per-layer inputs (E-series) before the layers."""
    g = b.m.gemma4
    if g["hidden_size_per_layer_input"]:
        families_gemma3n.per_layer_inputs(b, g["hidden_size_per_layer_input"], g["vocab_size_per_layer_input"])


def layer_post(b, lt) -> None:
    """After the MLP: the MoE block's router scales and extra norms, the per-layer input gate and projection."""
    m, N = b.m, b.N
    h = m.hidden_size
    mlp = lt.mlp
    if mlp is not None and mlp.kind == "moe":
        E = mlp.num_experts
        from .ops import RMS_FLOPS

        # router: RMSNorm without weight (RMS − 1 multiply), × scale (h weights) × 1/√h: 2 more multiplies;
        # (the top-k weights × per_expert_scale, E weights: k multiplies per token, h/k times fewer, not counted)
        b.elementwise("router_scale", N * h, RMS_FLOPS + 1, weight_elems=h + E, what="weightless RMSNorm, × scale·h^-½")
        # pre_feedforward_layernorm_2 (the experts' input), post_feedforward_layernorm_1 (MLP), _2 (experts)
        b.elementwise("moe_norms", 3 * N * h, RMS_FLOPS, weight_elems=3 * h, what="three RMSNorms of h")
        b.elementwise("moe_mlp_sum", N * h, 1, reads=2, writes=1, what="dense MLP + experts outputs")
    if m.gemma4["hidden_size_per_layer_input"]:
        families_gemma3n.per_layer_input_gate(b, m.gemma4["hidden_size_per_layer_input"])
