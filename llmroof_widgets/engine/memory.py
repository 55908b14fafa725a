"""Memory footprint per device: weights, KV cache and activations against the device's capacity."""

from __future__ import annotations

import functools
import math

import numpy as np

from .models import ModelConfig
from .num import Num
from .ops import Row
from .options import Options, kv_heads_per_device
from .precision import Precision
from .terms import Div, Terms


def weights_bytes(rows: list[Row], model: ModelConfig, opts: Options) -> float:
    """Bytes of the parameters resident on one device (tied embeddings counted once).

    Rows are already per device under TP/EP and offloading. With pipeline parallelism a device holds
    ⌈L/pp⌉ layers plus (conservatively) the embedding and the head.
    """
    layer_w = sum(r.count * r.resident for r in rows if r.layer_type != "model")
    model_w = sum(r.count * r.resident for r in rows if r.layer_type == "model")
    if opts.pp > 1:
        layer_w *= math.ceil(model.num_layers / opts.pp) / model.num_layers
    return float(layer_w + model_w)


def params_total(rows: list[Row]) -> int:
    return int(sum(r.count * r.params for r in rows))


def _kv_elem_factors(lt, opts: Options) -> tuple:
    """Cached elements per token of one layer on one device, as term factors."""
    a = lt.attention
    if a.kind == "mla":
        # the latent (+ the sparse indexer's key) is replicated on every TP rank
        sym = "(kv_lora + rope + index_dim)" if a.index_head_dim else "(kv_lora + rope)"
        return ((sym, a.kv_elements_per_token()),)
    return (("kv_heads", kv_heads_per_device(a.num_kv_heads, opts.tp)), ("(d_k + d_v)", a.head_dim + a.v_head_dim))


def _kv_device_factors(model: ModelConfig, opts: Options, on_device: bool) -> tuple:
    """The share of the layers (pipeline stage) and of the cache (offloading) one device holds."""
    f: tuple = ()
    if opts.pp > 1:
        f += (("⌈L/pp⌉/L", math.ceil(model.num_layers / opts.pp) / model.num_layers),)
    off = opts.offload.get("kv_cache", 0.0)
    if on_device and off:
        f += (("(1 − offloaded)", 1.0 - off),)
    return f


def kv_bytes_per_token_terms(model: ModelConfig, prec: Precision, opts: Options | None = None) -> Terms:
    """:func:`kv_bytes_per_token` as terms (category "kv"), one per layer type."""
    opts = opts or Options()
    t = Terms()
    dev = _kv_device_factors(model, opts, False)
    keep = (("keep ratio", opts.kv_keep_ratio),) if opts.kv_keep_ratio != 1.0 else ()
    for lt in model.layer_types:
        if lt.attention is None or lt.attention.kv_shared:  # no attention, or an earlier layer's KV: none
            continue
        t.add(
            "kv",
            f"{lt.name}:",
            ("layers", lt.count),
            *_kv_elem_factors(lt, opts),
            (f"{prec.kv:g} B", prec.kv),
            *dev,
            *keep,
        )
    return t


def kv_bytes_per_token(model: ModelConfig, prec: Precision, opts: Options | None = None) -> float:
    """KV-cache bytes one token of one sequence adds across all layers on one device (before window caps)."""
    return kv_bytes_per_token_terms(model, prec, opts).total("kv")


def kv_cache_terms(
    model: ModelConfig,
    prec: Precision,
    batch,
    context,
    opts: Options | None = None,
    *,
    on_device: bool = True,
) -> Terms:
    """:func:`kv_cache_bytes` as terms (category "kv"), one per layer type: the formula ``lr.check`` shows."""
    opts = opts or Options()
    t = Terms()
    dev = _kv_device_factors(model, opts, on_device)
    evicting = opts.kv_keep_ratio < 1.0 or opts.kv_budget is not None
    ep = (Div(("EP", opts.ep)),) if opts.ep > 1 else ()
    for lt in model.layer_types:
        a = lt.attention
        if a is None or a.kv_shared:  # no attention, or an earlier layer's KV: none
            continue
        kept = context if a.window is None else np.minimum(context, a.window - 1)
        if a.chunk is not None:
            # chunked attention: the cache keeps the last chunk − 1 tokens (transformers keeps a chunked
            # layer like a window of attention_chunk_size); the next token attends at most a whole chunk
            kept = np.minimum(context, a.chunk - 1)
        if evicting:
            evicted = kept * opts.kv_keep_ratio
            if opts.kv_budget is not None:
                evicted = np.minimum(evicted, opts.kv_budget)
            kept = np.minimum(kept, evicted)
        sym = "kept tokens" if evicting else "tokens"
        if not evicting and a.chunk is not None:
            sym = "min(tokens, chunk − 1)"
        elif not evicting and a.window is not None:
            sym = "min(tokens, window − 1)"
        t.add(
            "kv",
            f"{lt.name}:",
            ("layers", lt.count),
            *_kv_elem_factors(lt, opts),
            (sym, kept),
            ("batch", batch),
            *ep,
            (f"{prec.kv:g} B", prec.kv),
            *dev,
        )
    return t


def kv_cache_bytes(
    model: ModelConfig,
    prec: Precision,
    batch: Num,
    context: Num,
    opts: Options | None = None,
    *,
    on_device: bool = True,
) -> Num:
    """KV cache of ``batch`` sequences holding ``context`` tokens, on one device.

    A sliding-window (chunked-attention) layer keeps its last window − 1 (chunk − 1) tokens (with the next token's own key that is
    the W it attends, as transformers keeps it); eviction keeps ``kv_keep_ratio`` of the tokens (at
    most ``kv_budget``); EP ranks each hold batch/ep sequences; offloaded KV lives in host memory.
    """
    return kv_cache_terms(model, prec, batch, context, opts, on_device=on_device).total("kv")


def recurrent_state_bytes(model: ModelConfig, prec: Precision, batch: Num, opts: Options | None = None) -> Num:
    """Per-sequence state of the recurrent / convolution layers of ``batch`` sequences, on one device.

    It does not grow with the context: each recurrent layer keeps the last K inputs of its causal convolution
    (model dtype) and its recurrent state (the config's SSM cache dtype, float32 by default). Heads are sharded
    over TP; EP ranks each hold batch/ep sequences. It stays in device memory (KV offloading does not move it).
    """
    from .ops_recurrent import state_bytes_per_sequence

    opts = opts or Options()
    per_seq = sum(
        lt.count * state_bytes_per_sequence(lt.mixer, prec.a, opts.tp) for lt in model.layer_types if lt.mixer
    )
    if opts.pp > 1:
        per_seq *= math.ceil(model.num_layers / opts.pp) / model.num_layers
    return per_seq * batch / opts.ep


def activations_bytes(rows: list[Row], model: ModelConfig, prec: Precision, tokens: Num) -> Num:
    """Peak activation memory of a pass (documented estimate).

    The residual stream (tokens × hidden) stays live through a layer; on top of it the largest
    single operator holds its inputs and outputs at once. Intermediate tensors are freed as soon
    as they are consumed (inference, no autograd). KV-cache reads are not activations. With fused
    operators the unfused estimate is kept (a fused kernel still materializes its matmul's output).
    """
    largest = functools.reduce(np.maximum, (r.activation_bytes for r in rows))
    return tokens * model.hidden_size * prec.a + largest


def footprint(
    model: ModelConfig,
    prec: Precision,
    hw_capacity: float,
    opts: Options,
    *,
    batch: Num,
    prompt_len: Num,
    gen_len: Num,
    prefill_rows: list[Row],
    decode_rows: list[Row],
    extra_bytes: float = 0.0,
    extra_per_seq: float = 0.0,
    encoder_rows: list[Row] | None = None,
    encode_activation_bytes: float = 0.0,
) -> dict:
    """``extra_bytes`` / ``extra_per_seq``: a speculative draft's weights / KV cache per sequence.

    ``encoder_rows``: a vision-language model's encoder operators: their weights are resident (with or
    without images; on the first pipeline stage) and counted in ``weights_bytes``;
    ``encode_activation_bytes``: the encode pass's peak activations (0 without images).

    ``batch``, ``prompt_len`` and ``gen_len`` may be numpy arrays (sweeps): every figure broadcasts.
    """
    vision_w = float(sum(r.count * r.resident for r in encoder_rows)) if encoder_rows else 0.0
    w = weights_bytes(prefill_rows, model, opts) + vision_w
    final_ctx = prompt_len + gen_len - 1  # tokens cached after the last decode step writes its own
    kv_final = kv_cache_bytes(model, prec, batch, final_ctx, opts)
    kv_prompt = kv_cache_bytes(model, prec, batch, prompt_len, opts)
    local = batch / opts.ep
    act_prefill = activations_bytes(prefill_rows, model, prec, local * prompt_len)
    act_decode = activations_bytes(decode_rows, model, prec, local)
    act = np.maximum(np.maximum(act_prefill, act_decode), encode_activation_bytes)
    rec = recurrent_state_bytes(model, prec, batch, opts)  # recurrent layers' state: fixed per sequence
    draft = extra_bytes + extra_per_seq * local
    prefill_total = w + kv_prompt + rec + act_prefill + draft
    decode_total = w + kv_final + rec + act_decode + draft
    total = w + kv_final + rec + act + draft
    # largest batch that fits: weights are shared, KV, recurrent state and activations grow with the batch
    per_seq = (kv_final + rec + act + extra_per_seq * local) / batch
    free = hw_capacity - w - extra_bytes
    max_batch = np.maximum(0.0, np.floor(free / per_seq))
    per_tok = kv_bytes_per_token(model, prec, opts) * (1.0 - opts.offload.get("kv_cache", 0.0))
    kv_capacity = np.maximum(0.0, np.floor((hw_capacity - w - act - rec - draft) / per_tok)) if per_tok > 0 else 0.0
    offloaded = kv_cache_bytes(model, prec, batch, final_ctx, opts, on_device=False) - kv_final
    host_weights = float(sum(r.count * r.host_resident for r in prefill_rows))
    return {
        "weights_bytes": w,
        **(
            {"vision_weights_bytes": vision_w, "activations_encode_bytes": encode_activation_bytes}
            if encoder_rows
            else {}
        ),
        "kv_cache_bytes": kv_final,
        "kv_cache_prompt_bytes": kv_prompt,
        "kv_bytes_per_token": kv_bytes_per_token(model, prec, opts),
        "kv_context_tokens": final_ctx,
        "recurrent_state_bytes": rec,
        "recurrent_state_prompt_bytes": rec,  # after the prompt: the same size (it does not grow)
        "activations_bytes": act,
        "activations_prefill_bytes": act_prefill,
        "activations_decode_bytes": act_decode,
        "draft_bytes": draft,
        "prefill_total_bytes": prefill_total,
        "decode_total_bytes": decode_total,
        "total_bytes": total,
        "capacity_bytes": float(hw_capacity),
        "fits": total <= hw_capacity,
        "max_batch_size": max_batch,
        "kv_token_capacity": kv_capacity,
        "host_kv_cache_bytes": offloaded,
        "host_weights_bytes": host_weights,
        "devices": opts.devices,
    }
