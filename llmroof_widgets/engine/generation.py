"""A whole generation: prefill, then one decode step per new token as the KV cache grows.

The decode steps are evaluated at once: the operator builder takes the array of cached
lengths ``prompt_len + j`` (j = 0 … gen_len − 2) and every count broadcasts over it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .models import ModelConfig
from .ops import PassBuilder
from .options import Options
from .precision import Precision
from .roofline import Roof, pass_time


@dataclass(frozen=True)
class Speculative:
    """Speculative decoding: a draft proposes ``gamma`` tokens, the target verifies them in one pass.

    - ``draft``: a catalog model / config for the draft, or ``"mtp"`` for the target's multi-token-prediction
      module (enorm, hnorm, eh_proj and one decoder block with the shapes the config declares, sharing the
      target's embedding and lm_head, as DeepSeek-V3's MTP module; shaped like the last layer when the
      config declares none).
    - ``gamma``: draft length γ (tokens proposed per round); γ = 0 is plain decoding.
    - ``acceptance``: α, the probability each drafted token is accepted (i.i.d., Leviathan et al.).

    Expected tokens per round: (1 − α^(γ+1)) / (1 − α) (γ + 1 when α = 1). One round costs γ draft
    decode steps plus one target pass over γ + 1 tokens (the verify step).
    """

    draft: Any = "mtp"
    gamma: int = 4
    acceptance: float = 0.7

    def validated(self) -> Speculative:
        if isinstance(self.gamma, bool) or not isinstance(self.gamma, int) or not 0 <= self.gamma <= 64:
            raise ValueError(f"speculative.gamma must be a whole number in [0, 64], got {self.gamma!r}")
        a = self.acceptance
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0.0 <= a <= 1.0:
            raise ValueError(f"speculative.acceptance must be in [0, 1], got {a!r}")
        return self

    @property
    def tokens_per_round(self) -> float:
        g, a = self.gamma, float(self.acceptance)
        if a >= 1.0:
            return g + 1.0
        return (1.0 - a ** (g + 1)) / (1.0 - a)  # expected accepted tokens + the target's own token


def decode_times(
    model: ModelConfig,
    prec: Precision,
    roof: Roof,
    opts: Options,
    *,
    batch: int,
    tokens: int,
    cached,
    mla: str,
    logits_tokens: int = 1,
):
    """Roofline time of decode passes of ``tokens`` new tokens at each cached length (array)."""
    rows = PassBuilder(
        model,
        prec,
        batch=batch,
        tokens=tokens,
        cached=cached,
        logits_tokens=logits_tokens,
        attention="causal",
        mla=mla,
        options=opts,
        hardware=roof.hw,
    ).build(opts.early_exit_fraction)
    return np.broadcast_to(np.asarray(pass_time(rows, roof), dtype=np.float64), np.shape(cached)).copy()


def decode_step_times(
    model: ModelConfig,
    prec: Precision,
    roof: Roof,
    opts: Options,
    *,
    batch: int,
    prompt_len: int,
    gen_len: int,
    mla: str,
    spec: Speculative | None = None,
    draft: ModelConfig | None = None,
    draft_prec: Precision | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(context per step, time per generated token at that step) after the prefill.

    Plain decoding: gen_len − 1 steps; the first token comes out of the prefill, each later one
    costs a step whose input is the previous token, attending to ``prompt_len + j`` cached tokens
    plus itself. Speculative decoding: one entry per round (γ draft steps + one verify pass), the
    context advancing by the expected tokens per round; the last round counts for the share of
    its tokens still needed.
    """
    steps = gen_len - 1
    if steps == 0:
        return np.zeros(0), np.zeros(0)
    if spec is None or spec.gamma == 0:
        cached = prompt_len + np.arange(steps, dtype=np.float64)
        return cached + 1, decode_times(model, prec, roof, opts, batch=batch, tokens=1, cached=cached, mla=mla)
    tau = spec.tokens_per_round
    g = spec.gamma
    n_rounds = math.ceil(steps / tau)
    cached = prompt_len + tau * np.arange(n_rounds, dtype=np.float64)
    verify = decode_times(
        model, prec, roof, opts, batch=batch, tokens=g + 1, cached=cached, mla=mla, logits_tokens=g + 1
    )
    d_cached = (cached[:, None] + np.arange(g)[None, :]).ravel()
    d_opts = Options(flash_attention=opts.flash_attention, fused=opts.fused, efficiency=opts.efficiency)
    drafts = decode_times(draft, draft_prec, roof, d_opts, batch=batch, tokens=1, cached=d_cached, mla=mla)
    round_t = verify + drafts.reshape(n_rounds, g).sum(axis=1)
    # the last round is only needed for the share of its expected tokens still missing
    weights = np.ones(n_rounds)
    weights[-1] = (steps - tau * (n_rounds - 1)) / tau
    return cached + 1, round_t * weights


def summarize(
    ttft: float, step_times: np.ndarray, *, batch: int, gen_len: int, first_step_time: float, devices: int = 1
) -> dict:
    """Latency metrics of one generation.

    - TTFT: time to first token = the prefill (its last position's logits give token 1).
    - TPOT: mean time per output token after the first = (e2e − TTFT)/(gen_len − 1); with a
      single generated token there is no later token and TPOT is the first decode step's time.
    - tokens_per_s: generated tokens per second for one sequence (one user), end to end.
    - throughput_tokens_per_s: generated tokens per second for the whole batch;
      throughput_per_device_tokens_per_s divides it by the devices used (tp × pp × ep).
    """
    decode_total = float(np.sum(step_times))
    e2e = ttft + decode_total
    tpot = decode_total / (gen_len - 1) if gen_len > 1 else first_step_time
    thr = batch * gen_len / e2e if e2e > 0 else 0.0
    return {
        "ttft_s": ttft,
        "tpot_s": tpot,
        "e2e_s": e2e,
        "decode_s": decode_total,
        "tokens_per_s": gen_len / e2e if e2e > 0 else 0.0,
        "decode_tokens_per_s": 1.0 / tpot if tpot > 0 else 0.0,
        "throughput_tokens_per_s": thr,
        "throughput_per_device_tokens_per_s": thr / devices,
        "devices": devices,
    }
