"""A whole generation: prefill, then one decode step per new token as the KV cache grows.

The decode steps are evaluated at once: the operator builder takes the array of cached
lengths ``prompt_len + j`` (j = 0 … gen_len − 2) and every count broadcasts over it.
"""
from __future__ import annotations

import numpy as np

from .hardware import Hardware
from .models import ModelConfig
from .ops import PassBuilder
from .precision import Precision
from .roofline import pass_time


def decode_step_times(model: ModelConfig, prec: Precision, hw: Hardware, *, batch: int, prompt_len: int,
                      gen_len: int, mla: str) -> tuple[np.ndarray, np.ndarray]:
    """(cached tokens per step, roofline time per step) for the gen_len − 1 decode steps.

    The first token comes out of the prefill; each later one costs a decode step whose input is
    the previous token, attending to ``prompt_len + j`` cached tokens plus itself.
    """
    steps = gen_len - 1
    cached = prompt_len + np.arange(steps, dtype=np.float64)
    if steps == 0:
        return cached, np.zeros(0)
    rows = PassBuilder(model, prec, batch=batch, tokens=1, cached=cached, logits_tokens=1,
                       attention="causal", mla=mla).build()
    t = pass_time(rows, hw)
    return cached, np.broadcast_to(np.asarray(t, dtype=np.float64), cached.shape).copy()


def summarize(ttft: float, step_times: np.ndarray, *, batch: int, gen_len: int, first_step_time: float) -> dict:
    """Latency metrics of one generation.

    - TTFT: time to first token = the prefill (its last position's logits give token 1).
    - TPOT: mean time per output token after the first = (e2e − TTFT)/(gen_len − 1); with a
      single generated token there is no later token and TPOT is the first decode step's time.
    - tokens_per_s: generated tokens per second for one sequence (one user), end to end.
    - throughput_tokens_per_s: generated tokens per second for the whole batch (per device).
    """
    decode_total = float(step_times.sum())
    e2e = ttft + decode_total
    tpot = decode_total / (gen_len - 1) if gen_len > 1 else first_step_time
    return {
        "ttft_s": ttft,
        "tpot_s": tpot,
        "e2e_s": e2e,
        "decode_s": decode_total,
        "tokens_per_s": gen_len / e2e if e2e > 0 else 0.0,
        "decode_tokens_per_s": 1.0 / tpot if tpot > 0 else 0.0,
        "throughput_tokens_per_s": batch * gen_len / e2e if e2e > 0 else 0.0,
    }
