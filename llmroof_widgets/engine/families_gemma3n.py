"""Gemma-3n text model (``gemma3n_text``): KV shared across layers, per-layer inputs, AltUp and LAuReL.

Operators as transformers 5.x ``modeling_gemma3n`` runs them (every matrix product counted):

- model: ``embed_tokens_per_layer`` (a lookup of V_pli × (L·p) rows, p = hidden_size_per_layer_input),
  ``per_layer_model_projection`` (h → L·p), its RMSNorm over p; AltUp's ``altup_projections`` (n − 1 of
  h × h, n = altup_num_inputs) before the layers and ``altup_unembed_projections`` (n − 1 of h × h) after them;
- per layer: AltUp predict (router RMSNorm, ``modality_router`` h → n, ``prediction_coefs`` n → n², and the
  mixing product of the n streams, 2·h·n² per token), LAuReL (h → rank → h and an RMSNorm), the attention
  (q, k, v RMSNorms, v without weight; a KV-shared layer has no k/v projections and no cache of its own and
  attends the K/V of the last earlier layer of its type), the MLP (a per-layer ``intermediate_size``; the
  first layers' gaussian top-k activation sparsity is element-wise), AltUp correct (``modality_router`` and
  ``correction_coefs`` n → n), and the per-layer input gate (h → p) and projection (p → h) with an RMSNorm.

The KV cache holds only the non-shared layers (``num_kv_shared_layers`` last layers reuse earlier K/V).
"""

from __future__ import annotations

G3N_FIELDS = ("altup_num_inputs", "laurel_rank", "hidden_size_per_layer_input", "vocab_size_per_layer_input")


def parse(cfg: dict, n_layers: int, req_int) -> dict:
    """The Gemma-3n extras of a config (defaults: transformers' Gemma3nTextConfig)."""
    out = {}
    for key, default in zip(G3N_FIELDS, (4, 64, 256, 262_144)):
        v = cfg.get(key, default)
        out[key] = req_int({key: v}, key)
    sizes = cfg.get("intermediate_size")
    if isinstance(sizes, list):
        if len(sizes) != n_layers:
            raise ValueError(f"config field 'intermediate_size' must be one number or {n_layers} (one per layer)")
        out["intermediate_sizes"] = [req_int({"intermediate_size": v}, "intermediate_size") for v in sizes]
    else:
        out["intermediate_sizes"] = [req_int(cfg, "intermediate_size")] * n_layers
    sparsity = cfg.get("activation_sparsity_pattern")
    if sparsity is None:
        n_sparse = 10 if n_layers > 10 else 0  # the config class's default
        sparsity = [0.95] * n_sparse + [0.0] * (n_layers - n_sparse)
    if not isinstance(sparsity, list) or len(sparsity) != n_layers:
        raise ValueError(f"config field 'activation_sparsity_pattern' must list {n_layers} values")
    out["sparse_act"] = [bool(v and v > 0) for v in sparsity]
    n_shared = cfg.get("num_kv_shared_layers", 15)
    n_shared = req_int({"num_kv_shared_layers": n_shared}, "num_kv_shared_layers", minimum=0)
    if n_shared >= n_layers:
        raise ValueError(f"config field 'num_kv_shared_layers' = {n_shared} must be < num_hidden_layers = {n_layers}")
    out["first_shared"] = n_layers - n_shared
    return out


def per_layer_inputs(b, P: int, V_pli: int) -> None:
    """Per-layer inputs (Gemma-3n, Gemma-4 E-series): each token's L·P row of the V_pli × (L·P) table and
    the projection of its embedding (h → L·P) with an RMSNorm over P, combined."""
    m, N, p = b.m, b.N, b.p
    h, L = m.hidden_size, m.num_layers
    # per-layer input embeddings: one row of L·P values per token from a V_pli × (L·P) table
    r = b.elementwise("embed_tokens_per_layer", N * L * P, 1, reads=1, writes=1, what="lookup and √p scale")
    r.params = V_pli * L * P
    r.add_term("weight", "rows read", ("N", N), ("L·P", L * P), b._fhp)  # one L·P row per token
    r.resident = r.params * p.hp
    r.wclass = "hp"
    b.linear("per_layer_model_projection", N, h, L * P)
    b.norm_rms("per_layer_projection_norm", N * L, P)
    b.elementwise("per_layer_inputs_combine", N * L * P, 2, reads=2, writes=1, what="(projection + embedding)/√2")


def per_layer_input_gate(b, P: int) -> None:
    """In each layer: gate (h → P), GELU(gate)·the layer's input, projection (P → h), RMSNorm."""
    N, h = b.N, b.m.hidden_size
    b.linear("per_layer_input_gate", N, h, P)
    b.elementwise("per_layer_input_act", N * P, 9, reads=2, writes=1, what="gelu(gate)·per-layer input")
    b.linear("per_layer_projection", N, P, h)
    b.norm_rms("post_per_layer_input_norm", N, h)


def model_ops(b) -> None:
    """Model-level operators: per-layer inputs and the AltUp stream projections (before the layers)."""
    m, N = b.m, b.N
    g = m.gemma3n
    h, n = m.hidden_size, g["altup_num_inputs"]
    per_layer_inputs(b, g["hidden_size_per_layer_input"], g["vocab_size_per_layer_input"])
    for i in range(1, n):
        b.linear(f"altup_projection_{i}", N, h, h)
    b.elementwise("altup_magnitude", N * h * (n - 1), 4, reads=1, writes=1, what="rescale streams to the input RMS")


def model_ops_after(b) -> None:
    """After the layers: unembed the n − 1 extra streams, rescale them and average the n streams."""
    m, N = b.m, b.N
    h, n = m.hidden_size, m.gemma3n["altup_num_inputs"]
    for i in range(1, n):
        b.linear(f"altup_unembed_projection_{i}", N, h, h)
    b.elementwise("altup_unembed_mean", N * h * n, 5, reads=1, writes=1, what="rescale, then mean of the streams")


def _altup_router(b, name: str, shared: bool = False) -> None:
    """The router's RMSNorm and ``modality_router`` (h → n); ``shared``: the second use of the same weights."""
    m, N = b.m, b.N
    h, n = m.hidden_size, m.gemma3n["altup_num_inputs"]
    b.norm_rms(f"{name}_router_norm", N, h)
    b.linear(f"{name}_modality_router", N, h, n)
    if shared:  # predict and correct run one router: its parameters are counted once, in predict
        for r in b.rows[-3:]:
            if r.name.startswith(name):
                r.params = 0
                r.resident = 0.0


def layer_pre(b, lt) -> None:
    """AltUp predict and LAuReL (before the attention)."""
    m, N = b.m, b.N
    h, n, rank = m.hidden_size, m.gemma3n["altup_num_inputs"], m.gemma3n["laurel_rank"]
    _altup_router(b, "altup_predict")
    b.linear("altup_prediction_coefs", N, n, n * n)
    # each token mixes its n streams with its own n × n coefficients: [h × n] @ [n × n]
    r = b.elementwise("altup_predict_mix", N * h * n, 1, reads=2, writes=1, what="+ the original streams")
    # a product with an inner dimension of n: run on the vector units
    r.add_term("matmul", "mix [h × n]·[n × n]", (None, 2.0), ("N", N), ("h", h), ("n", n), ("n", n))
    b.linear("laurel_left", N, h, rank)
    b.linear("laurel_right", N, rank, h)
    b.norm_rms("post_laurel_norm", N, h)


def layer_post(b, lt) -> None:
    """AltUp correct and the per-layer input gate and projection (after the MLP)."""
    m, N = b.m, b.N
    g = m.gemma3n
    h, n, P = m.hidden_size, g["altup_num_inputs"], g["hidden_size_per_layer_input"]
    _altup_router(b, "altup_correct", shared=True)
    b.linear("altup_correction_coefs", N, n, n)
    r = b.elementwise("altup_correct", N * h * n, 3, reads=2, writes=1, what="innovation × coefficient + prediction")
    r.params = h  # correct_output_scale
    r.add_term("weight", "correct_output_scale", ("h", h), b._fhp)
    r.resident = h * b.p.hp
    r.wclass = "hp"
    per_layer_input_gate(b, P)
    b.elementwise("altup_streams_add", N * h * (n - 1), 1, reads=2, writes=1, what="add to the n − 1 other streams")
