"""Memory footprint: weights, KV cache and activations against the device's capacity."""
from __future__ import annotations

import math

from .models import ModelConfig
from .ops import Row
from .precision import Precision


def weights_bytes(rows: list[Row]) -> float:
    """Bytes of every parameter resident in device memory (tied embeddings counted once)."""
    return float(sum(r.count * r.resident for r in rows))


def params_total(rows: list[Row]) -> int:
    return int(sum(r.count * r.params for r in rows))


def kv_bytes_per_token(model: ModelConfig, prec: Precision) -> float:
    """KV-cache bytes one token of one sequence adds across all layers (before any window cap)."""
    return sum(lt.count * lt.attention.kv_elements_per_token() for lt in model.layer_types) * prec.kv


def kv_cache_bytes(model: ModelConfig, prec: Precision, batch: int, context: int) -> float:
    """KV cache of ``batch`` sequences holding ``context`` tokens; sliding-window layers keep at most the window."""
    total = 0.0
    for lt in model.layer_types:
        a = lt.attention
        # a window layer keeps the last W − 1 tokens: with the next token's own key that is the W it attends
        kept = context if a.window is None else min(context, a.window - 1)
        total += lt.count * a.kv_elements_per_token() * kept * batch * prec.kv
    return total


def activations_bytes(rows: list[Row], model: ModelConfig, prec: Precision, tokens: int) -> float:
    """Peak activation memory of a pass (documented estimate).

    The residual stream (tokens × hidden) stays live through a layer; on top of it the largest
    single operator holds its inputs and outputs at once. Intermediate tensors are freed as soon
    as they are consumed (inference, no autograd). KV-cache reads are not activations.
    """
    largest = max(float(r.activation_bytes) for r in rows)
    return tokens * model.hidden_size * prec.a + largest


def footprint(model: ModelConfig, prec: Precision, hw_capacity: float, *, batch: int, prompt_len: int,
              gen_len: int, prefill_rows: list[Row], decode_rows: list[Row]) -> dict:
    w = weights_bytes(prefill_rows)
    final_ctx = prompt_len + gen_len - 1  # tokens cached after the last decode step writes its own
    kv_final = kv_cache_bytes(model, prec, batch, final_ctx)
    kv_prompt = kv_cache_bytes(model, prec, batch, prompt_len)
    act_prefill = activations_bytes(prefill_rows, model, prec, batch * prompt_len)
    act_decode = activations_bytes(decode_rows, model, prec, batch)
    act = max(act_prefill, act_decode)
    prefill_total = w + kv_prompt + act_prefill
    decode_total = w + kv_final + act_decode
    total = w + kv_final + act
    # largest batch that fits: weights are shared, KV and activations grow with the batch
    per_seq = (kv_final + act) / batch
    free = hw_capacity - w
    max_batch = int(max(0, math.floor(free / per_seq))) if per_seq > 0 else 0
    per_tok = kv_bytes_per_token(model, prec)
    kv_capacity = int(max(0, math.floor((hw_capacity - w - act) / per_tok))) if per_tok > 0 else 0
    return {
        "weights_bytes": w,
        "kv_cache_bytes": kv_final,
        "kv_cache_prompt_bytes": kv_prompt,
        "kv_bytes_per_token": per_tok,
        "kv_context_tokens": final_ctx,
        "activations_bytes": act,
        "activations_prefill_bytes": act_prefill,
        "activations_decode_bytes": act_decode,
        "prefill_total_bytes": prefill_total,
        "decode_total_bytes": decode_total,
        "total_bytes": total,
        "capacity_bytes": float(hw_capacity),
        "fits": bool(total <= hw_capacity),
        "max_batch_size": max_batch,
        "kv_token_capacity": kv_capacity,
    }
