"""A whole generation: prefill, then one decode step per new token as the KV cache grows.

Each operator's time per decode step is a maximum of functions linear in the cached length between
break points (sliding windows, KV budgets, attention chunks). :class:`StepSeries` cuts the steps at
those points, checks each piece is linear, and sums every piece in closed form: a whole generation
costs O(pieces × operators) whatever ``gen_len``, and equals the sum of every step evaluated one by
one. The timeline keeps a bounded sample of the steps (exact at the ends and the break points).
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
        """This speculation with numpy scalars as Python numbers; ``ValueError`` naming a bad field."""
        g, a = self.gamma, self.acceptance
        if not isinstance(g, (int, np.integer)) or isinstance(g, (bool, np.bool_)) or not 0 <= g <= 64:
            raise ValueError(f"speculative.gamma must be a whole number in [0, 64], got {g!r}")
        real = isinstance(a, (int, float, np.integer, np.floating)) and not isinstance(a, (bool, np.bool_))
        if not real or not 0.0 <= a <= 1.0:  # NaN fails the comparison
            raise ValueError(f"speculative.acceptance must be in [0, 1], got {a!r}")
        return Speculative(draft=self.draft, gamma=int(g), acceptance=float(a))

    @property
    def tokens_per_round(self) -> float:
        g, a = self.gamma, float(self.acceptance)
        if a >= 1.0:
            return g + 1.0
        return (1.0 - a ** (g + 1)) / (1.0 - a)  # expected accepted tokens + the target's own token


# generations of at most this many decode steps are evaluated step by step in one vectorized pass (faster than
# the closed form's pieces below it; the work stays bounded above it)
DIRECT_STEPS = 2048
MAX_TIMELINE_POINTS = 2000  # steps the timeline keeps (exact at its ends and break points); the sums use every step
_BATCH_SEGMENTS = 2048  # segments evaluated per vectorized builder call: bounds the working set
_LINEAR_RTOL = 1e-11  # a piece is linear when its interior samples sit on its chords to this share of the step time


def _components(rows, roof: Roof, n: int) -> np.ndarray:
    """(K, rows, n) times whose maximum per row is that row's time, ``count`` and launch overhead included.

    Row time = count · (max(compute, device memory, host link, communication) + overhead): compute and
    communication share a line (a row has one or the other); the host-link line is kept only when a row
    streams bytes over the host link.
    """
    c0, c1, c2 = [], [], []
    host = False
    for r in rows:
        tc, tm, th, tk = roof.times(r)
        ovh = roof.overhead(r) if roof.calibrated and r.kind != "communication" else 0.0
        k = r.count
        c0.append(np.broadcast_to(k * (tc + tk + ovh), (n,)))  # compute (or collective) time of the row
        c1.append(np.broadcast_to(k * (tm + ovh), (n,)))  # device-memory time of the row
        c2.append(np.broadcast_to(k * (th + ovh), (n,)))  # host-link time of the row
        host = host or bool(np.any(th))
    if roof.step_overhead:  # calibrated mode: the host's work per forward pass, one constant "row"
        for c in (c0, c1, c2):
            c.append(np.full((n,), roof.step_overhead))
    comps = [np.stack(c0), np.stack(c1)] + ([np.stack(c2)] if host else [])
    return np.stack(comps).astype(np.float64, copy=False)


def _collapse(alpha: np.ndarray, beta: np.ndarray, m: np.ndarray):
    """Cut pieces where some row changes its maximum line; each part's Σ_rows max is one line.

    ``alpha``, ``beta``: (K, R, S) lines of each row's components on S pieces of ``m`` steps (x = 0 …
    m − 1). Returns (piece, first x, steps, value at the first x, slope) of every part.
    """
    K, R, S = alpha.shape
    pids, cuts = [np.arange(S)], [np.zeros(S)]
    with np.errstate(divide="ignore", invalid="ignore"):
        for a in range(K):
            for b in range(a + 1, K):
                x = np.ceil((alpha[b] - alpha[a]) / (beta[a] - beta[b]))  # first step past where lines a and b meet
                inside = np.isfinite(x) & (x > 0) & (x < m[None, :])
                r_idx, s_idx = np.nonzero(inside)
                pids.append(s_idx)
                cuts.append(x[r_idx, s_idx])
    pid, cut = np.concatenate(pids), np.concatenate(cuts)
    order = np.lexsort((cut, pid))
    pid, cut = pid[order], cut[order]
    keep = np.ones(pid.size, dtype=bool)
    keep[1:] = (pid[1:] != pid[:-1]) | (cut[1:] != cut[:-1])
    pid, cut = pid[keep], cut[keep]
    nxt = np.append(cut[1:], 0.0)
    last = np.append(pid[1:] != pid[:-1], True)
    end = np.where(last, m[pid], nxt)
    n = end - cut
    mid = (cut + end - 1.0) / 2.0
    a_p, b_p = alpha[:, :, pid], beta[:, :, pid]  # (K, R, parts)
    k = np.argmax(a_p + b_p * mid, axis=0)[None]  # the maximum line of each row on each part
    a = np.take_along_axis(a_p, k, axis=0)[0].sum(axis=0)
    b = np.take_along_axis(b_p, k, axis=0)[0].sum(axis=0)
    return pid, cut, n, a + b * cut, b


class StepSeries:
    """The per-step times T(j), j = 0 … n − 1, of a generation, summed exactly in closed form.

    ``evaluate(j)`` gives :func:`_components` at the float array ``j``. Each operator's time is a maximum
    of functions linear in the cached length between break points (sliding windows, KV budgets, chunk
    edges): the steps are cut at the known ``breaks`` (in units of j), every piece is checked to be linear
    at interior samples (and halved until it is, down to two steps, which always are), then cut again
    where an operator changes bound (compute ↔ memory), so that on each part T is one line and sums in
    closed form. The cost is O(parts × operators), independent of n; so is any partial sum.
    """

    def __init__(self, evaluate, n: int, breaks=()):
        self.evaluate = evaluate
        self.n = int(n)
        starts = [np.zeros(1)]
        b = np.asarray(breaks, dtype=np.float64).ravel()
        b = b[np.isfinite(b) & (b > -1) & (b < self.n)]
        if b.size:
            f = np.floor(b)
            starts += [f, f + 1.0]
        s = np.unique(np.clip(np.concatenate(starts), 0, max(self.n - 1, 0)).astype(np.int64))
        pending = [(s, np.append(s[1:] - 1, self.n - 1))] if self.n > 0 else []
        parts: list = []
        while pending:
            s, e = pending.pop()
            if s.size > _BATCH_SEGMENTS:
                pending.append((s[_BATCH_SEGMENTS:], e[_BATCH_SEGMENTS:]))
                s, e = s[:_BATCH_SEGMENTS], e[:_BATCH_SEGMENTS]
            ok, alpha, beta = self._pieces(s, e)
            if ok.any():
                pid, x0, cnt, a, slope = _collapse(alpha[:, :, ok], beta[:, :, ok], (e - s + 1)[ok].astype(np.float64))
                parts.append((s[ok][pid] + x0.astype(np.int64), cnt, a, slope))
            bad = ~ok
            if bad.any():
                bs, be = s[bad], e[bad]
                half = bs + (be - bs + 1) // 2
                pending.append((np.concatenate([bs, half]), np.concatenate([half - 1, be])))
        if parts:
            st = np.concatenate([p[0] for p in parts])
            order = np.argsort(st, kind="stable")
            self.starts = st[order]  # first step of each part
            self.lengths, self.a, self.b = (np.concatenate([p[i] for p in parts])[order] for i in (1, 2, 3))
        else:
            self.starts = np.zeros(0, dtype=np.int64)
            self.lengths = self.a = self.b = np.zeros(0)
        totals = self._part_sums(np.arange(self.starts.size), np.zeros(self.starts.size), self.lengths)
        self.prefix = np.concatenate([[0.0], np.cumsum(totals)])  # Σ T over the parts before each one
        self.total = float(self.prefix[-1])

    def evaluate_split(self, j, k, S):
        """Components at ``j`` (k blocks of S steps) as (K, R, k, S)."""
        c = self.evaluate(j)  # (K, R, k·S)
        return c.reshape(c.shape[0], c.shape[1], k, S)

    def _pieces(self, s, e):
        """(linear?, lines through the first and last step) of each piece [s, e] (lines: (K, R, S))."""
        m = (e - s + 1).astype(np.float64)
        fr = (0.5, 0.2763932022500210, 0.7236067977499790)  # interior samples (golden-ratio cuts)
        inner = [np.floor(f * (m - 1.0)) for f in fr]
        offs = [np.zeros_like(m), m - 1.0] + inner
        j = np.concatenate([s + o for o in offs]).astype(np.float64)
        c = self.evaluate_split(j, len(offs), s.size)
        alpha = c[:, :, 0]
        beta = np.where(m > 1, (c[:, :, 1] - alpha) / np.maximum(m - 1.0, 1.0), 0.0)
        # linear enough: at each interior sample, the chords' summed deviation over every operator's
        # components is within _LINEAR_RTOL of the step's time (so is the error of the piece's sum)
        fine = np.ones(s.size, dtype=bool)
        for i, o in enumerate(inner):
            v = c[:, :, 2 + i]
            dev = np.sum(np.max(np.abs(v - (alpha + beta * o)), axis=0), axis=0)
            fine &= dev <= _LINEAR_RTOL * np.sum(np.max(v, axis=0), axis=0) + 1e-300
        ok = (m <= 2) | fine  # two steps always lie on a line
        return ok, alpha, beta

    def _part_sums(self, p, y0, y1) -> np.ndarray:
        """Σ T over the steps y0 … y1 − 1 (counted from its first step) of parts ``p``: n × the midpoint value."""
        n = np.maximum(y1 - y0, 0.0)
        return np.where(n > 0, n * (self.a[p] + self.b[p] * (y0 + y1 - 1.0) / 2.0), 0.0) if p.size else np.zeros(0)

    def range_sum(self, a, b) -> np.ndarray:
        """Σ_{a ≤ j < b} T(j) for integer arrays 0 ≤ a ≤ b ≤ n, exactly (no difference of large sums)."""
        a, b = np.broadcast_arrays(np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64))
        shape = a.shape
        a, b = a.ravel(), b.ravel()
        if self.starts.size == 0:
            return np.zeros(shape)
        last = self.starts.size - 1
        pa = np.clip(np.searchsorted(self.starts, a, side="right") - 1, 0, last)
        pb = np.clip(np.searchsorted(self.starts, np.maximum(b - 1, a), side="right") - 1, 0, last)
        same = pa == pb
        ya = (a - self.starts[pa]).astype(np.float64)
        # one part: its steps a … b − 1; else the tail of a's part, the whole parts between, the head of b's
        out = self._part_sums(pa, ya, np.where(same, b - self.starts[pa], self.lengths[pa]).astype(np.float64))
        diff = ~same & (b > a)
        between = self.prefix[pb] - self.prefix[np.minimum(pa + 1, pb)]
        head = self._part_sums(pb, np.zeros(pb.size), (b - self.starts[pb]).astype(np.float64))
        out = np.where(b > a, out, 0.0) + np.where(diff, between + head, 0.0)
        return out.reshape(shape)

    def cumulative(self, q) -> np.ndarray:
        """Σ_{j < q} T(j) for integer ``q`` in [0, n] (array), exactly."""
        q = np.asarray(q, dtype=np.int64)
        return self.range_sum(np.zeros_like(q), q)

    def values(self, j) -> np.ndarray:
        """T(j) at the integer steps ``j``, evaluated directly."""
        j = np.asarray(j, dtype=np.float64)
        if j.size == 0:
            return np.zeros(0)
        return np.sum(np.max(self.evaluate(j), axis=0), axis=0)


def timeline_indices(n: int, breaks=(), limit: int = MAX_TIMELINE_POINTS) -> np.ndarray:
    """Steps the timeline shows: every step up to ``limit``, else both ends, the break points and an even grid."""
    if n <= limit:
        return np.arange(n, dtype=np.int64)
    b = np.asarray(breaks, dtype=np.float64).ravel()
    b = b[np.isfinite(b) & (b > -1) & (b < n)]
    keep = np.unique(np.concatenate([np.floor(b), np.floor(b) + 1.0])) if b.size else np.zeros(0)
    keep = keep[(keep >= 0) & (keep < n)]
    room = limit // 4
    if keep.size > room:  # too many break points to show them all: an even subset
        keep = keep[np.linspace(0, keep.size - 1, room).round().astype(np.int64)]
    grid = np.linspace(0, n - 1, limit - keep.size).round()
    return np.unique(np.concatenate([grid, keep, [0.0, n - 1.0]])).astype(np.int64)


def decode_breakpoints(model: ModelConfig, opts: Options, tokens: int, lo: float, hi: float) -> np.ndarray:
    """Cached lengths in [lo, hi] where a decode pass of ``tokens`` new tokens changes its linear piece.

    Sliding windows (the last queries leave the window one by one), attention chunks (keys follow a
    sawtooth of the chunk's period), sparse attention (the attended keys reach the indexer's top-k), KV
    eviction (the kept share meets the budget or the new tokens).
    An attention spec or layer type may add its own with a ``decode_breakpoints(lo, hi, tokens)`` method.
    """
    T = float(tokens)
    out: list = []
    for lt in model.layer_types:
        a = lt.attention
        for obj in (a, lt):
            hook = getattr(obj, "decode_breakpoints", None)
            if callable(hook):
                out.append(np.asarray(list(hook(lo, hi, tokens)), dtype=np.float64))
        if a is None:  # a recurrent / MLP-only layer: its decode cost does not follow the cache
            continue
        w = a.window
        if w:
            out.append(np.arange(w - T - 1.0, w + 2.0))
        topk = getattr(a, "index_topk", 0)
        if topk:  # sparse attention: a query attends min(cached + 1, top-k) keys
            out.append(np.arange(topk - T - 1.0, topk + 2.0))
        for name in ("attention_chunk_size", "chunk_size", "chunk"):
            size = getattr(a, name, None)
            if isinstance(size, (int, np.integer)) and not isinstance(size, bool) and size > 0:
                k = np.arange(max(math.floor(lo / size), 0), math.ceil(hi / size) + 2, dtype=np.float64) * size
                out.append((k[:, None] + np.arange(-T - 1.0, 2.0)[None, :]).ravel())
    r, budget = opts.kv_keep_ratio, opts.kv_budget
    if r < 1.0 or budget is not None:
        pts = [T / r - T, T / r]
        if budget is not None:
            pts += [budget / r - T, budget / r, budget - T, float(budget)]
        out.append(np.asarray(pts, dtype=np.float64))
    if not out:
        return np.zeros(0)
    b = np.concatenate(out)
    return b[(b >= lo - 1.0) & (b <= hi + 1.0)]


@dataclass
class DecodeSteps:
    """The decode phase of a generation: exact totals and a bounded sample of its steps.

    ``steps`` entries (decode steps, or speculative rounds), summed exactly into ``total_s``;
    ``indices`` / ``contexts`` / ``times_s`` sample at most :data:`MAX_TIMELINE_POINTS` of them (every
    one when there are fewer), exact at both ends and at the break points.
    """

    steps: int
    total_s: float
    indices: np.ndarray
    contexts: np.ndarray
    times_s: np.ndarray


def _pass_evaluator(model, prec, roof, opts, *, batch, tokens, mla, logits_tokens, cached_of, reuse=None):
    """evaluate(j) → components of one pass of ``tokens`` tokens at cached lengths ``cached_of(j)``
    (``reuse``: see :class:`~.ops.PassBuilder`; the passes of one evaluator differ only in their cached lengths)."""
    reuse = {} if reuse is None else reuse

    def evaluate(j):
        cached = cached_of(j)
        rows = PassBuilder(
            model,
            prec,
            batch=batch,
            tokens=tokens,
            cached=cached.ravel(),
            logits_tokens=logits_tokens,
            attention="causal",
            mla=mla,
            options=opts,
            hardware=roof.hw,
            reuse=reuse,
        ).build(opts.early_exit_fraction)
        c = _components(rows, roof, cached.size)
        return c.reshape(c.shape[:2] + cached.shape)

    return evaluate


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
    reuse: dict | None = None,
):
    """Roofline time of decode passes of ``tokens`` new tokens at each cached length (array); ``reuse``: see
    :class:`~.ops.PassBuilder`."""
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
        reuse=reuse,
    ).build(opts.early_exit_fraction)
    return np.broadcast_to(np.asarray(pass_time(rows, roof), dtype=np.float64), np.shape(cached)).copy()


def plain_series(
    model, prec, roof, opts, *, batch, first_cached: int, n: int, mla: str, reuse: dict | None = None
) -> tuple[StepSeries, np.ndarray]:
    """Plain decoding: step j attends ``first_cached + j`` cached tokens; (series, break points in j)."""
    ev = _pass_evaluator(
        model,
        prec,
        roof,
        opts,
        batch=batch,
        tokens=1,
        mla=mla,
        logits_tokens=1,
        cached_of=lambda j: first_cached + j,
        reuse=reuse,
    )
    br = decode_breakpoints(model, opts, 1, first_cached, first_cached + max(n - 1, 0)) - first_cached
    return StepSeries(ev, n, br), br


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
    reuse: dict | None = None,
) -> DecodeSteps:
    """The decode steps after the prefill, summed exactly, with a bounded sample for the timeline.

    Plain decoding: gen_len − 1 steps; the first token comes out of the prefill, each later one
    costs a step whose input is the previous token, attending to ``prompt_len + j`` cached tokens
    plus itself. Speculative decoding: one entry per round (γ draft steps + one verify pass), the
    context advancing by the expected tokens per round; the last round counts for the share of
    its tokens still needed. ``reuse``: the dict given to the single decode step's PassBuilder (same settings,
    another cached length), so that plain decoding copies its length-independent rows (see PassBuilder).
    """
    steps = gen_len - 1
    empty = np.zeros(0)
    if steps == 0:
        return DecodeSteps(0, 0.0, np.zeros(0, dtype=np.int64), empty, empty)
    if (spec is None or spec.gamma == 0) and steps <= DIRECT_STEPS:
        # a short generation: every step in one vectorized pass (exact by definition; bounded work)
        cached = prompt_len + np.arange(steps, dtype=np.float64)
        times = decode_times(model, prec, roof, opts, batch=batch, tokens=1, cached=cached, mla=mla, reuse=reuse)
        br = decode_breakpoints(model, opts, 1, prompt_len, prompt_len + steps - 1) - prompt_len
        idx = timeline_indices(steps, br)
        return DecodeSteps(steps, float(np.sum(times)), idx, prompt_len + idx + 1.0, times[idx])
    if spec is None or spec.gamma == 0:
        series, br = plain_series(
            model, prec, roof, opts, batch=batch, first_cached=prompt_len, n=steps, mla=mla, reuse=reuse
        )
        idx = timeline_indices(steps, br)
        return DecodeSteps(steps, series.total, idx, prompt_len + idx + 1.0, series.values(idx))
    tau = spec.tokens_per_round
    g = spec.gamma
    n_rounds = math.ceil(steps / tau)
    d_opts = Options(flash_attention=opts.flash_attention, fused=opts.fused, efficiency=opts.efficiency)
    offs = np.arange(g, dtype=np.float64)
    verify = _pass_evaluator(
        model,
        prec,
        roof,
        opts,
        batch=batch,
        tokens=g + 1,
        mla=mla,
        logits_tokens=g + 1,
        cached_of=lambda j: prompt_len + tau * j,
    )
    drafts = _pass_evaluator(
        draft,
        draft_prec,
        roof,
        d_opts,
        batch=batch,
        tokens=1,
        mla=mla,
        logits_tokens=1,
        cached_of=lambda j: prompt_len + offs[:, None] + tau * j[None, :],
    )

    def evaluate(j):
        v = verify(j)
        d = drafts(j)  # (K, R, g, len(j)): the γ draft steps of each round are rows of their own
        d = d.reshape(d.shape[0], -1, j.size)
        K = max(v.shape[0], d.shape[0])

        def pad(c):  # repeat the last line: the maximum is unchanged
            return np.concatenate([c, np.repeat(c[-1:], K - c.shape[0], axis=0)]) if c.shape[0] < K else c

        return np.concatenate([pad(v), pad(d)], axis=1)

    hi = prompt_len + tau * (n_rounds - 1)
    assert draft is not None  # analyze gives a draft whenever gamma > 0
    parts = [(decode_breakpoints(model, opts, g + 1, prompt_len, hi) - prompt_len) / tau]
    for i in range(g):
        parts.append((decode_breakpoints(draft, d_opts, 1, prompt_len + i, hi + i) - prompt_len - i) / tau)
    br = np.concatenate(parts)
    series = StepSeries(evaluate, n_rounds, br)
    # the last round is only needed for the share of its expected tokens still missing
    w_last = (steps - tau * (n_rounds - 1)) / tau
    last = float(series.values([n_rounds - 1])[0])
    total = series.total - (1.0 - w_last) * last
    idx = timeline_indices(n_rounds, br)
    t = series.values(idx)
    t = np.where(idx == n_rounds - 1, t * w_last, t)
    return DecodeSteps(n_rounds, total, idx, prompt_len + tau * idx + 1.0, t)


def summarize(
    ttft: float, decode_total: float, *, batch: int, gen_len: int, first_step_time: float, devices: int = 1
) -> dict:
    """Latency metrics of one generation.

    - TTFT: time to first token = the prefill (its last position's logits give token 1).
    - TPOT: mean time per output token after the first = (e2e − TTFT)/(gen_len − 1); with a
      single generated token there is no later token and TPOT is the first decode step's time.
    - tokens_per_s: generated tokens per second for one sequence (one user), end to end.
    - throughput_tokens_per_s: generated tokens per second for the whole batch;
      throughput_per_device_tokens_per_s divides it by the devices used (tp × pp × ep).
    """
    decode_total = float(decode_total)
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
