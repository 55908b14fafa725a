"""Config fields of the attention, MoE and multi-token-prediction variants (issue 12, items 3 and 4).

Each helper reads one family convention exactly as the transformers 5.x configuration class of that
family derives it (the config class's ``__post_init__`` defaults), so a config that omits a field gets
the value transformers would build:

- partial rotary: ``partial_rotary_factor`` (top level, or inside ``rope_parameters`` / ``rope_scaling``),
  ``rotary_pct`` (GPT-NeoX), ``rotary_dim`` (MiniMax-M2, GPT-J); a family default (GLM-4.5: 0.5);
- NoPE layers: ``no_rope_layers[i]`` = 1 when layer i applies RoPE, 0 for a NoPE layer (Llama-4,
  SmolLM3), else every ``no_rope_layer_interval``-th layer (default 4) is NoPE;
- Llama-4 chunked attention: RoPE layers are ``chunked_attention`` with ``attention_chunk_size`` keys per chunk;
- Llama-4 MoE layers: ``moe_layers``, else every ``interleave_moe_layer_step``-th layer (from step − 1);
- multi-token prediction: ``num_nextn_predict_layers`` (DeepSeek-V3, GLM-4.5), ``num_mtp_layers``
  (upstream), ``mtp_num_hidden_layers`` (Qwen3-Next / Qwen3.5).
"""

from __future__ import annotations

from typing import Any


def _int_field(cfg: dict, key: str, default: int, minimum: int = 0) -> int:
    from .models import _opt_int  # the shared strict helper (imported late: models imports this module)

    return _opt_int(cfg, key, default, minimum)


def _frac_field(key: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < float(v) <= 1.0:
        raise ValueError(f"config field {key!r} must be a number in (0, 1], got {v!r}")
    return float(v)


def rotary_dim(cfg: dict, head_dim: int, default_factor: float = 1.0, kind: str | None = None) -> int:
    """Dimensions of each head that RoPE rotates (the rest pass through unrotated).

    ``kind``: the layer's type; ``rope_parameters`` keyed by layer type (transformers 5, Gemma-3/4) may give
    that type its own ``partial_rotary_factor`` (Gemma-4 full-attention layers: 0.25)."""
    per_kind = cfg.get("rope_parameters", {}).get(kind) if isinstance(cfg.get("rope_parameters"), dict) else None
    if isinstance(per_kind, dict) and per_kind.get("partial_rotary_factor") is not None:
        return int(head_dim * _frac_field("partial_rotary_factor", per_kind["partial_rotary_factor"]))
    if cfg.get("rotary_dim") is not None:
        d = _int_field(cfg, "rotary_dim", 0, minimum=0)  # present (checked above): the default is never used
        if d > head_dim:
            raise ValueError(f"config field 'rotary_dim' = {d} exceeds the head dimension {head_dim}")
        return d
    for where in (cfg, cfg.get("rope_parameters"), cfg.get("rope_scaling")):
        if isinstance(where, dict) and where.get("partial_rotary_factor") is not None:
            return int(head_dim * _frac_field("partial_rotary_factor", where["partial_rotary_factor"]))
    if cfg.get("rotary_pct") is not None:
        return int(head_dim * _frac_field("rotary_pct", cfg["rotary_pct"]))
    return int(head_dim * default_factor)


def rope_layers(cfg: dict, n_layers: int) -> list[bool]:
    """Whether each layer applies RoPE (False: a NoPE layer)."""
    given = cfg.get("no_rope_layers")
    if given:  # transformers treats an empty list like a missing one
        if not isinstance(given, list) or len(given) != n_layers or any(v not in (0, 1) for v in given):
            raise ValueError(f"config field 'no_rope_layers' must list {n_layers} entries of 0 or 1 (1 = RoPE)")
        return [bool(v) for v in given]
    interval = _int_field(cfg, "no_rope_layer_interval", 4, minimum=1)
    return [(i + 1) % interval != 0 for i in range(n_layers)]  # every interval-th layer is NoPE


def nope_layer_kinds(cfg: dict, model_type: str, n_layers: int) -> list[str]:
    """``layer_types`` as the Llama-4 / SmolLM3 config classes derive them when a config omits the field."""
    rope = rope_layers(cfg, n_layers)
    if model_type == "llama4_text":
        chunk = cfg.get("attention_chunk_size", 8192)  # the config class's default
        return ["chunked_attention" if r and chunk is not None else "full_attention" for r in rope]
    sliding = bool(cfg.get("use_sliding_window")) and cfg.get("sliding_window") is not None
    return ["sliding_attention" if sliding and not r else "full_attention" for r in rope]  # SmolLM3's rule


def attention_chunk(cfg: dict, default: int | None = None) -> int:
    """Keys per chunk of a ``chunked_attention`` layer (Llama4TextConfig's default: 8192)."""
    v = cfg.get("attention_chunk_size", default)
    if v is None:
        raise ValueError("config field 'layer_types' has 'chunked_attention' but 'attention_chunk_size' is not set")
    return _int_field({"attention_chunk_size": v}, "attention_chunk_size", 1, minimum=1)  # v is not None here


def llama4_moe_layers(cfg: dict, n_layers: int) -> set[int]:
    """Indices of Llama-4's MoE layers."""
    given = cfg.get("moe_layers")
    if given is not None:
        if not isinstance(given, list) or any(
            isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n_layers for i in given
        ):
            raise ValueError(f"config field 'moe_layers' must list layer indices in [0, {n_layers})")
        return set(given)
    step = _int_field(cfg, "interleave_moe_layer_step", 1, minimum=1)
    return set(range(step - 1, n_layers, step))


def indexer_kind(cfg: dict, n_layers: int, i: int) -> str:
    """GLM-5's ``indexer_types[i]``: "full" (the layer runs its indexer) or "shared" (reuses the previous
    full layer's top-k), from the list, ``index_topk_pattern``, or ``index_topk_freq`` /
    ``index_skip_topk_offset`` as GlmMoeDsaConfig derives it (DeepSeek-V3.2: every layer full)."""
    given = cfg.get("indexer_types")
    if given is None and cfg.get("index_topk_pattern") is not None:
        pat = cfg["index_topk_pattern"]
        given = [{"F": "full", "S": "shared"}.get(c, c) for c in pat] if isinstance(pat, str) else list(pat)
    if given is not None:
        if not isinstance(given, list) or len(given) != n_layers or any(t not in ("full", "shared") for t in given):
            raise ValueError(f"config field 'indexer_types' must list {n_layers} entries of 'full' or 'shared'")
        return given[i]
    freq = max(_int_field(cfg, "index_topk_freq", 1, minimum=1), 1)
    offset = _int_field(cfg, "index_skip_topk_offset", 2, minimum=0)
    return "full" if max(i - offset + 1, 0) % freq == 0 else "shared"


def mlp_layer_types(cfg: dict, n_layers: int) -> list[bool]:
    """Whether each layer's MLP is MoE, from ``mlp_layer_types`` ("dense" / "sparse")."""
    given = cfg.get("mlp_layer_types")
    if not isinstance(given, list) or len(given) != n_layers or any(t not in ("dense", "sparse") for t in given):
        raise ValueError(f"config field 'mlp_layer_types' must list {n_layers} entries of 'dense' or 'sparse'")
    return [t == "sparse" for t in given]


MTP_FIELDS = ("num_nextn_predict_layers", "num_mtp_layers", "mtp_num_hidden_layers")


def mtp_count(cfg: dict) -> int:
    """Multi-token-prediction modules the config declares (0 when none)."""
    for key in MTP_FIELDS:
        if cfg.get(key) is not None:
            return _int_field(cfg, key, 0, minimum=0)
    return 0


def mtp_kind(cfg: dict) -> str:
    """The attention kind of the MTP block: ``mtp_layer_types[0]`` when listed, else full attention."""
    given = cfg.get("mtp_layer_types")
    if isinstance(given, list) and given:
        return str(given[0])
    return "full_attention"
