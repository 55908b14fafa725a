"""Serving: continuous batching, queueing, latency percentiles, energy and cost — analytic, in milliseconds.

A replica (one model instance on ``tp × pp × ep`` devices) runs *steps*. A step processes every running
decode (one token each) plus, with chunked prefill, one prefill chunk of at most ``chunk_size`` tokens;
its time is the engine's roofline time of that mixed pass: weights read once, each sequence's KV read,
the chunk's tokens through every layer (rows of the decode pass and of the chunk pass added operator by
operator, weight bytes counted once). Without ``chunk_size`` a prompt is prefilled in a step of its own
that pauses the decodes (prefill first, as vLLM without chunked prefill and TGI schedule).

The model is parametrised by ``B``, the mean number of running decodes (Little's law over the decode
phase: ``B = λ · E[g − 1] · TPOT``). For each B the step time follows, hence the request rate that
sustains it; inverting that curve gives B for a rate, and its maximum is the highest stable rate
(also capped by ``max_batch`` and by the KV capacity in paged blocks: the mean KV tokens held,
``B`` × the time-average context of a running decode rounded up to whole blocks, must fit).

- TTFT = queueing for the prefill (M/G/1, Pollaczek–Khinchine mean ``λE[S²]/(2(1 − ρ))`` — DistServe
  §3.1's M/D/1 formula is its deterministic case — plus the residual of a step in progress, plus an
  Erlang-C wait for a decode slot when ``max_batch`` binds) + the prefill's own time. The wait is 0 with
  probability 1 − P(busy) and exponential otherwise (the usual heavy-traffic shape of M/G/1 waits).
- TPOT of a request = the mean of its decode steps: the others it shares them with, at the time-average
  context, plus the work interleaved with its decodes (other prompts' prefills that stall them, or their
  chunks' extra step time) as a compound-Poisson share over its life. The running batch is not Poisson:
  the interleaved work comes in busy-period clusters (variance × 1/(1 − ρ_i)²) and steps slow down as the
  batch grows (a processor-sharing queue whose speed falls with its population: × 1/(1 − p)), so
  Var(b) = F·B and a request's steps see B + F − 1 others on average (size-biased).
- Chunked prefill: the prefill queue sees the load of the batch at hand (the batch wanders slowly
  next to a prompt's wait): a mixture of M/G/1 queues over the batch's spread.
- Percentiles come from 4,096 deterministic draws (fixed seed) over the length distributions, the
  waiting time and those shares — no per-token loop.
- Closed loop (``concurrency`` = N requests always in flight, as benchmark tools run): the rate is the
  one at which Little's law gives N requests in the system, λ · E[e2e] = N.

Energy: per device ``P = P_idle + (P_max − P_idle) · busy · (α·u_compute + (1 − α)·u_memory)``, with
``u`` the step's FLOPs and bytes over the device's peak × step time, ``busy`` the share of time the
replica has work, P_max the board power (TDP) from the hardware catalog. Times are roofline times (lower
bounds): throughput is an upper bound and energy per token a lower bound unless ``efficiency="calibrated"``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .analysis import analyze
from .hardware import load_hardware
from .models import load_model
from .ops import PassBuilder
from .options import make_options
from .precision import Precision
from .roofline import Roof

# -- power-model constants (assumptions, stated; never fitted to a record) ----------------------------
IDLE_POWER_SHARE = (
    0.15  # idle board power / TDP when the catalog gives no idle figure (secondary sources: ~15 % of TDP)
)
COMPUTE_POWER_SHARE = 0.5  # α: share of the dynamic power range drawn by the matrix units at full load (rest: memory)
DEFAULT_BLOCK = 16  # paged-KV block size in tokens (vLLM's default block_size)
N_DRAWS = 4096  # draws behind every percentile
_KNOB_KEYS = (
    "w_bits",
    "a_bits",
    "kv_bits",
    "group_size",
    "flash_attention",
    "fused",
    "kv_keep_ratio",
    "kv_budget",
    "early_exit_fraction",
    "sparsity",
    "offload",
    "tp",
    "pp",
    "ep",
    "efficiency",
    "mla",
    "framework",
)


def idle_power(hw) -> tuple[float | None, str]:
    """Idle board power per device (W) and where it comes from: the catalog's ``idle_watts`` (a published
    figure, its source in the catalog), else ``IDLE_POWER_SHARE`` × TDP (stated assumption), else None."""
    if getattr(hw, "idle_watts", None):
        return float(hw.idle_watts), "catalog (published figure)"
    if getattr(hw, "tdp_watts", None):
        return IDLE_POWER_SHARE * float(
            hw.tdp_watts
        ), f"assumed: {IDLE_POWER_SHARE:.0%} of TDP (no published idle figure)"
    return None, "unknown (no TDP in the catalog)"


# -- lengths -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lengths:
    """A length distribution: ``fixed`` n, ``uniform`` [a, b] (whole tokens), or ``empirical`` values."""

    kind: str
    values: tuple[int, ...]

    @staticmethod
    def of(field: str, x: Any) -> Lengths:
        if isinstance(x, Lengths):
            return x
        if isinstance(x, dict):
            kind = x.get("kind") or x.get("dist")
            if kind == "uniform":
                lo, hi = _whole(field, x.get("low", x.get("a"))), _whole(field, x.get("high", x.get("b")))
                if hi < lo:
                    raise ValueError(f"{field}: uniform needs low ≤ high, got [{lo}, {hi}]")
                return Lengths("uniform", (lo, hi))
            if kind == "fixed":
                return Lengths("fixed", (_whole(field, x.get("value")),))
            if kind == "empirical":
                return Lengths.of(field, list(x.get("values") or []))
            raise ValueError(f"{field}: a distribution is {{'kind': 'fixed'|'uniform'|'empirical', ...}}, got {x!r}")
        if isinstance(x, tuple) and len(x) == 2 and all(not isinstance(v, (list, tuple)) for v in x):
            lo, hi = _whole(field, x[0]), _whole(field, x[1])
            if hi < lo:
                raise ValueError(f"{field}: uniform (low, high) needs low ≤ high, got {x!r}")
            return Lengths("uniform", (lo, hi))
        if isinstance(x, (list, np.ndarray)):
            vals = tuple(_whole(field, v) for v in list(x))
            if not vals:
                raise ValueError(f"{field}: an empirical distribution needs at least one value")
            if len(vals) > 1_000_000:
                raise ValueError(f"{field}: at most 1,000,000 empirical values, got {len(vals)}")
            return Lengths("empirical", vals)
        return Lengths("fixed", (_whole(field, x),))

    def draw(self, u: np.ndarray) -> np.ndarray:
        """Inverse CDF at uniforms ``u`` ∈ [0, 1)."""
        if self.kind == "fixed":
            return np.full(u.shape, float(self.values[0]))
        if self.kind == "uniform":
            lo, hi = self.values
            return np.floor(lo + u * (hi - lo + 1)).clip(lo, hi)
        v = np.sort(np.asarray(self.values, dtype=np.float64))
        return v[np.minimum((u * len(v)).astype(np.int64), len(v) - 1)]

    @property
    def mean(self) -> float:
        if self.kind == "uniform":
            return (self.values[0] + self.values[1]) / 2.0
        return float(np.mean(self.values))

    @property
    def max(self) -> int:
        return int(max(self.values))

    def to_dict(self):
        if self.kind == "fixed":
            return self.values[0]
        if self.kind == "uniform":
            return {"kind": "uniform", "low": self.values[0], "high": self.values[1]}
        return {"kind": "empirical", "n": len(self.values), "mean": self.mean}


def _whole(field: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v):
        raise ValueError(f"{field} must be a whole number of tokens ≥ 1, got {v!r}")
    if int(v) != v or v < 1:
        raise ValueError(f"{field} must be a whole number of tokens ≥ 1, got {v!r}")
    if v > 10**7:
        raise ValueError(f"{field} must be ≤ 10,000,000 tokens, got {int(v)}")
    return int(v)


def _positive(field: str, v: Any, *, allow_none: bool = True, integer: bool = False):
    if v is None and allow_none:
        return None
    ok = not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v) and v > 0
    if not ok or (integer and int(v) != v):
        what = "a whole number ≥ 1" if integer else "a positive finite number"
        raise ValueError(f"{field} must be {what}{' or None' if allow_none else ''}, got {v!r}")
    return int(v) if integer else float(v)


# -- step times from the engine ---------------------------------------------------------------------------
class StepModel:
    """Roofline time (and FLOPs, bytes) of decode and mixed steps, vectorized over batch and context."""

    def __init__(self, model, hardware, prec: Precision, opts, mla: str, framework: str = "generic"):
        self.m, self.hw, self.p, self.o, self.mla = model, hardware, prec, opts, mla
        self.roof = Roof(hardware, opts.efficiency, quantized_weights=prec.w_bits < 16, framework=framework)

    def _rows(self, batch, tokens, cached, logits_tokens=1):
        return PassBuilder(
            self.m,
            self.p,
            batch=batch,
            tokens=tokens,
            cached=cached,
            logits_tokens=logits_tokens,
            attention="causal",
            mla=self.mla,
            options=self.o,
            hardware=self.hw,
        ).build(self.o.early_exit_fraction if tokens == 1 else 1.0)

    def _totals(self, rows):
        # calibrated mode: every forward pass pays the framework's host work per step
        t = self.roof.step_overhead
        fl = by = 0.0
        for r in rows:
            t = t + r.count * self.roof.row_time(r)
            fl = fl + r.count * r.flops
            by = by + r.count * r.bytes
        return t, fl, by

    def decode(self, b, ctx):
        """(time, FLOPs, bytes) of one decode step of ``b`` sequences attending ``ctx`` tokens each (arrays)."""
        b = np.maximum(np.asarray(b, dtype=np.float64), 1e-9)
        cached = np.maximum(np.asarray(ctx, dtype=np.float64) - 1.0, 0.0)
        b, cached = np.broadcast_arrays(b, cached)
        return self._totals(self._rows(b, 1, cached))

    def prefill(self, prompt: int):
        """(time, FLOPs, bytes) of a whole-prompt prefill of one sequence (logits at the last position),
        with the framework's per-request overhead in calibrated mode (as ``analyze``'s TTFT has it)."""
        t, fl, by = self._totals(self._rows(1, int(prompt), 0))
        return t + self.roof.request_overhead, fl, by

    def mixed(self, b, ctx, chunk: int, chunk_cached: float):
        """(time, FLOPs, bytes) of a step with ``b`` decodes at ``ctx`` and one prefill chunk.

        The two passes' operators are added one by one: FLOPs, activation and KV bytes add; weight bytes
        are read once (the larger of the two, e.g. the experts the chunk touches).
        """
        b = np.maximum(np.asarray(b, dtype=np.float64), 1e-9)
        cached = np.maximum(np.asarray(ctx, dtype=np.float64) - 1.0, 0.0)
        b, cached = np.broadcast_arrays(b, cached)
        dec = self._rows(b, 1, cached)
        pre = self._rows(1, int(chunk), float(chunk_cached))
        index: dict = {}
        for r in dec:
            index.setdefault((r.layer_type, r.name), []).append(r)
        out = []
        for r in pre:
            bucket = index.get((r.layer_type, r.name))
            if not bucket:
                out.append(r)
                continue
            d = bucket.pop(0)
            c = copy.copy(d)
            c.flops = d.flops + r.flops
            c.matmul_flops = d.matmul_flops + r.matmul_flops
            c.activation_bytes = d.activation_bytes + r.activation_bytes
            c.kv_bytes = d.kv_bytes + r.kv_bytes
            c.weight_bytes = np.maximum(d.weight_bytes, r.weight_bytes)  # weights read once per step
            c.host_bytes = np.maximum(d.host_bytes, r.host_bytes)
            c.comm_s = d.comm_s + r.comm_s
            if d.m_dim is not None and r.m_dim is not None:
                c.m_dim = d.m_dim + r.m_dim
            out.append(c)
        for bucket in index.values():
            out.extend(bucket)
        return self._totals(out)


# -- queueing helpers ------------------------------------------------------------------------------------------
def erlang_c(c: float, a: np.ndarray) -> np.ndarray:
    """Probability an arrival waits in M/M/c with offered load a = λ/μ (c servers), computed in log space."""
    a = np.asarray(a, dtype=np.float64)
    if not np.isfinite(c):
        return np.zeros_like(a)
    c = int(c)
    out = np.ones_like(a)
    ok = a < c
    k = np.arange(c)
    for i in np.flatnonzero(ok.ravel()):
        ai = a.ravel()[i]
        if ai <= 0:
            out.ravel()[i] = 0.0
            continue
        # log of Σ_{k<c} a^k/k! and of a^c/c! · c/(c − a)
        logs = k * math.log(ai) - np.array([math.lgamma(j + 1) for j in k])
        m = logs.max()
        s = m + math.log(np.exp(logs - m).sum())
        last = c * math.log(ai) - math.lgamma(c + 1) + math.log(c / (c - ai))
        gap = s - last  # a very light load: the waiting probability underflows to 0 (exp would overflow)
        out.ravel()[i] = 0.0 if gap > 700.0 else 1.0 / (1.0 + math.exp(gap))
    return out


def _quantiles(x: np.ndarray) -> dict:
    q50, q90, q99 = np.quantile(x, (0.50, 0.90, 0.99))
    return {"mean": float(np.mean(x)), "p50": float(q50), "p90": float(q90), "p99": float(q99)}


# -- the result ---------------------------------------------------------------------------------------------------
class ServingResult:
    """One deployment under one load. ``to_dict()`` gives plain data (the keys are the API's contract)."""

    def __init__(self, data: dict, settings: dict, curve: dict):
        self._d = data
        self.settings = settings
        self.curve = curve  # load curve: arrays over the running-batch grid (for plots)

    def __getitem__(self, k):
        return self._d[k]

    def __getattr__(self, k):
        try:
            return self._d[k]
        except KeyError:
            raise AttributeError(k) from None

    def to_dict(self) -> dict:
        return {**self._d, "settings": dict(self.settings)}

    def __repr__(self) -> str:
        d = self._d
        if not d["stable"]:
            return f"<ServingResult unstable: rate {d['rate']:.3g}/s > max_rate {d['max_rate']:.3g}/s>"
        return (
            f"<ServingResult {d['rate']:.3g} req/s (max {d['max_rate']:.3g}): TTFT p99 {d['ttft_s']['p99'] * 1e3:.3g} ms, "
            f"TPOT p99 {d['tpot_s']['p99'] * 1e3:.3g} ms, {d['throughput_tokens_per_s']:.4g} tok/s>"
        )


NOTES = {
    "rate": "requests per second offered to the whole deployment (all replicas); Poisson arrivals (open loop)",
    "max_rate": "highest request rate the deployment sustains: beyond it queues grow without bound (batch, KV or prefill limit)",
    "utilization": "rate / max_rate",
    "concurrency": "mean requests in the system per deployment (Little's law: rate × mean e2e)",
    "throughput_tokens_per_s": "generated tokens per second, all replicas",
    "ttft_s": "time to first token: queueing + prefill (the first token comes out of the prefill)",
    "tpot_s": "time per output token after the first, per request (mean of its decode steps)",
    "e2e_s": "request latency: TTFT + (generated − 1) × TPOT",
    "energy_j_per_token": "device energy per generated token (board power model × time / tokens)",
    "idle_power_source": "where the idle power comes from: the catalog's published figure, or an assumed share of TDP",
    "cost_per_million_tokens": "price per device-hour × devices / generated tokens per hour × 10⁶",
    "bound": "roofline times are lower bounds: latencies are optimistic, throughput an upper bound",
    "kv_limited_batch": "running requests the memory holds: KV capacity / mean KV tokens of a running request; "
    "a model without attention (Mamba, Mamba2): free memory / its recurrent state per request",
}


# -- the model ----------------------------------------------------------------------------------------------------
class _Server:
    """Everything that does not depend on the load: lengths, step model, capacity, the B grid."""

    def __init__(
        self, model, hardware, *, prompt_len, gen_len, max_batch, chunk_size, block_size, knobs, seed=0, draws=N_DRAWS
    ):
        self.m = load_model(model)
        self.hw = load_hardware(hardware)
        unknown = set(knobs) - set(_KNOB_KEYS)
        if unknown:
            raise ValueError(
                f"unknown serving knob(s) {', '.join(sorted(unknown))}; allowed: {', '.join(_KNOB_KEYS)} "
                "(batch_size is what the scheduler decides)"
            )
        self.P = Lengths.of("prompt_len", prompt_len)
        self.G = Lengths.of("gen_len", gen_len)
        self.max_batch = _positive("max_batch", max_batch, integer=True)
        self.chunk = _positive("chunk_size", chunk_size, integer=True)
        self.block = _positive("block_size", block_size, allow_none=False, integer=True)
        self.knobs = dict(knobs)
        # the plain analysis at batch 1 validates every knob and gives the memory figures
        self.base = analyze(self.m, self.hw, batch_size=1, prompt_len=round(self.P.mean), gen_len=2, **knobs)
        mem = self.base.memory
        one = mem["weights_bytes"] + mem["activations_bytes"] + mem["kv_bytes_per_token"] * (self.P.max + self.G.max)
        # an attention-free model (Mamba, Mamba2) keeps no KV cache: only the memory check applies
        no_kv = mem["kv_bytes_per_token"] == 0
        if one > mem["capacity_bytes"] or (mem["kv_token_capacity"] < 1 and not no_kv):
            raise ValueError(
                f"{self.m.name} does not fit on {self.hw.name} with these settings: one request of the longest lengths "
                f"needs {one / 1e9:.3g} GB > {mem['capacity_bytes'] / 1e9:.3g} GB per device; raise tp, quantize, or offload"
            )
        prec = Precision(
            knobs.get("w_bits", 16), knobs.get("a_bits", 16), knobs.get("kv_bits", 16), knobs.get("group_size")
        )
        opts = make_options(
            **{
                k: v
                for k, v in knobs.items()
                if k not in ("w_bits", "a_bits", "kv_bits", "group_size", "mla", "framework")
            }
        )
        self.opts = opts
        self.devices = int(self.base.memory.get("devices", 1))
        self.steps = StepModel(
            self.m, self.hw, prec, opts, knobs.get("mla", "absorbed"), self.base.settings.get("framework", "generic")
        )
        # draws: lengths, waiting-time and noise uniforms (fixed seed: the same percentiles every call)
        rng = np.random.default_rng(seed)
        u = rng.random((7, draws))
        self.p_draw = self.P.draw(u[0])
        self.g_draw = np.maximum(self.G.draw(u[1]), 1.0)
        self.u_state, self.u_resid, self.u_pick, self.u_queue, self.u_slot = u[2], u[3], u[4], u[5], u[6]
        z = rng.standard_normal((5, draws))
        # shares of interleaved work, queue sums, the batch already there, the batch that arrives later, the
        # others' mean context
        self.z, self.z_queue, self.z_batch, self.z_new, self.z_ctx = z[0], z[1], z[2], z[3], z[4]
        gd = self.g_draw - 1.0  # decode steps of each request
        self.e_gd = float(np.mean(gd))
        # time-average context of a running decode: requests weighted by the steps they run
        ctx_r = self.p_draw + gd / 2.0 + 0.5
        self.ctx_run = float(np.sum(gd * ctx_r) / np.sum(gd)) if np.sum(gd) > 0 else float(np.mean(self.p_draw))
        # its spread: a running decode is at P + U·(g − 1), U uniform, requests weighted by their steps
        c2 = self.p_draw**2 + self.p_draw * gd + gd**2 / 3.0
        m2 = float(np.sum(gd * c2) / np.sum(gd)) if np.sum(gd) > 0 else self.ctx_run**2
        self.ctx_run_sd = math.sqrt(max(m2 - self.ctx_run**2, 0.0))
        # KV tokens a running decode holds on average, rounded up to whole blocks (half a block wasted on average)
        self.kv_tokens_run = self.ctx_run + self.block / 2.0
        kv_cap = float(self.base.memory["kv_token_capacity"])
        # the KV cache's capacity in running decodes (mean demand must fit)
        self.b_kv = kv_cap / self.kv_tokens_run if self.kv_tokens_run > 0 else math.inf
        rec = float(mem["recurrent_state_bytes"])  # one sequence's recurrent state (Mamba, Gated DeltaNet), one device
        if rec > 0:
            # each running request holds its fixed state beside its KV tokens (none without attention): the memory
            # left by the weights and activations over both caps the batch
            free = mem["capacity_bytes"] - mem["weights_bytes"] - mem["activations_bytes"] - mem["draft_bytes"]
            kv_dev = mem["kv_bytes_per_token"] * (1.0 - float((knobs.get("offload") or {}).get("kv_cache", 0.0)))
            self.b_kv = max(free, 0.0) / (rec + kv_dev * self.kv_tokens_run)
        cap = self.b_kv if self.max_batch is None else min(self.b_kv, float(self.max_batch))
        self.b_cap = cap
        self._prefill_times()
        self._grid()
        self._own_table()

    # prefill time of every drawn prompt: exact at up to 5 distinct lengths (3 for the planner), linear between
    def _prefill_times(self):
        if self.chunk is None:
            uniq = np.unique(self.p_draw)
            k = 5 if len(self.p_draw) >= 2048 else 3  # fewer nodes for the planner's lighter draws
            nodes = uniq if len(uniq) <= k else np.unique(np.quantile(uniq, np.linspace(0, 1, k)).round())
            tn = np.array([float(self.steps.prefill(int(p))[0]) for p in nodes])
            self.d_draw = np.interp(self.p_draw, nodes, tn)
            self.n_chunks = np.zeros_like(self.p_draw)
        else:
            c = self.chunk
            self.n_chunks = np.ceil(self.p_draw / c)  # steps that carry this prompt's chunks
            self.d_draw = None
        self.e_chunks = float(np.mean(self.n_chunks))

    def _grid(self):
        """Everything on a grid of the mean running batch B (continuous), vectorized."""
        hi = self.b_cap if np.isfinite(self.b_cap) else 4096.0
        hi = max(min(hi, 1e6), 1e-3)
        B = np.unique(np.concatenate([[0.0], np.geomspace(1e-3, hi, 160), np.linspace(0, hi, 96)]))
        self.B = B
        if self.e_gd <= 0:  # gen_len = 1: no decode; only prefills
            self.T = np.zeros_like(B)
        td, fd, bd = self.steps.decode(B, self.ctx_run)
        self.t_dec, self.f_dec, self.by_dec = np.broadcast_to(td, B.shape), fd, bd
        self.dt_dec_dB = np.gradient(self.t_dec, B) if len(B) > 2 else np.zeros_like(B)
        if self.chunk is None:
            # λ(B) = B / (E[g−1]·T_d + B·E[D]): decodes progress only between prefills
            ed = float(np.mean(self.d_draw))
            self.e_d, self.e_d2 = ed, float(np.mean(self.d_draw**2))
            lam = B / (self.e_gd * self.t_dec + B * ed) if self.e_gd > 0 else np.full_like(B, np.inf)
            self.rho_p = lam * ed
            self.pi = np.zeros_like(B)
            self.t_mix = self.t_dec
            self.t_step = self.t_dec
            self.f_step, self.by_step = fd, bd
        else:
            c = self.chunk
            # a chunk step's prompt position: the mean over the prompt's chunks
            pos = float(np.mean(np.maximum(self.p_draw - np.minimum(self.p_draw, c), 0.0) / 2.0))
            chunk_tokens = int(round(float(np.mean(self.p_draw / np.maximum(self.n_chunks, 1.0)))))
            tm, fm, bm = self.steps.mixed(B, self.ctx_run, max(1, chunk_tokens), pos)
            self.t_mix = np.broadcast_to(tm, B.shape)
            # share of steps carrying a chunk: π = λ·E[chunks]·T with λ = B/(E[g−1]·T)
            self.pi = B * self.e_chunks / self.e_gd if self.e_gd > 0 else np.ones_like(B)
            pi = np.minimum(self.pi, 1.0)
            self.t_step = (1 - pi) * self.t_dec + pi * self.t_mix
            self.f_step = (1 - pi) * fd + pi * fm
            self.by_step = (1 - pi) * bd + pi * bm
            lam = B / (self.e_gd * self.t_step) if self.e_gd > 0 else 1.0 / (self.e_chunks * self.t_mix)
            self.rho_p = lam * self.e_chunks * self.t_mix
        self.lam = np.where(B > 0, lam, 0.0)
        # stable where the batch fits and the prefill server is not saturated
        ok = (B <= self.b_cap + 1e-9) & (self.rho_p < 1.0) & (self.pi <= 1.0)
        # and only on the rising part of λ(B): beyond the peak more batch brings less rate
        lam_ok = np.where(ok, self.lam, -1.0)
        self.i_max = int(np.argmax(lam_ok))
        self.max_rate = float(max(lam_ok[self.i_max], 0.0))

    def _own_table(self):
        """A request's own decode step time over (sequences in the step, their mean context): one engine pass.

        Exact at every node — the grid's batches + 1 and the requests' own mean contexts (quantiles)
        — and bilinear between (the step time is piecewise linear in both).
        """
        own = self.p_draw + (self.g_draw - 1.0) / 2.0 + 0.5
        nodes = np.unique(
            np.concatenate([np.quantile(own, np.linspace(0, 1, 9)), [self.ctx_run, own.min(), own.max()]])
        )
        self.tab_b = 1.0 + self.B
        self.tab_c = nodes
        bb, cc = np.meshgrid(self.tab_b, self.tab_c, indexing="ij")
        t = self.steps.decode(bb.ravel(), cc.ravel())[0]
        self.tab_t = np.broadcast_to(t, bb.size).reshape(bb.shape)

    def own_step(self, b, ctx):
        """Bilinear interpolation of :meth:`_own_table` (b clipped to the grid, exact at its nodes)."""
        b = np.clip(np.asarray(b, dtype=np.float64), self.tab_b[0], self.tab_b[-1])
        c = np.clip(np.asarray(ctx, dtype=np.float64), self.tab_c[0], self.tab_c[-1])
        i = np.clip(np.searchsorted(self.tab_b, b, side="right") - 1, 0, len(self.tab_b) - 2)
        j = np.clip(np.searchsorted(self.tab_c, c, side="right") - 1, 0, max(len(self.tab_c) - 2, 0))
        if len(self.tab_c) == 1:
            wb = (b - self.tab_b[i]) / (self.tab_b[i + 1] - self.tab_b[i])
            return self.tab_t[i, 0] * (1 - wb) + self.tab_t[i + 1, 0] * wb
        wb = (b - self.tab_b[i]) / (self.tab_b[i + 1] - self.tab_b[i])
        wc = (c - self.tab_c[j]) / (self.tab_c[j + 1] - self.tab_c[j])
        t = self.tab_t
        return (
            t[i, j] * (1 - wb) * (1 - wc)
            + t[i + 1, j] * wb * (1 - wc)
            + t[i, j + 1] * (1 - wb) * wc
            + t[i + 1, j + 1] * wb * wc
        )

    def grid_at(self, B: float):
        """``at(a)``: a quantity tabulated on the B grid (an array, or a scalar), linearly interpolated at B."""
        i = min(max(int(np.searchsorted(self.B, B)), 1), len(self.B) - 1)
        w = (B - self.B[i - 1]) / (self.B[i] - self.B[i - 1]) if self.B[i] > self.B[i - 1] else 0.0

        def at(a) -> float:
            a = np.broadcast_to(a, self.B.shape)
            return float(a[i - 1] * (1 - w) + a[i] * w)

        return at

    def batch_for(self, lam: float) -> float:
        """Mean running batch B sustaining rate λ (per replica), on the rising part of λ(B)."""
        L = np.maximum.accumulate(self.lam[: self.i_max + 1])
        Bs = self.B[: self.i_max + 1]
        return float(np.interp(lam, L, Bs))

    def metrics(self, lam: float, closed: dict | None = None) -> dict:
        """Latency distributions and utilization at rate λ per replica (λ < max_rate).

        ``closed``: the closed-loop view (see :func:`_closed_loop`): the others a request sees and its
        mean prefill wait, instead of the Poisson (PASTA) view of the open loop.
        """
        B = self.batch_for(lam)
        at = self.grid_at(B)
        t_step, t_dec, t_mix, rho_p, pi = at(self.t_step), at(self.t_dec), at(self.t_mix), at(self.rho_p), at(self.pi)
        # the others a request sees: B on average (PASTA, open loop) or the closed-loop arrival view
        others = B if closed is None else closed["others"]
        # the tagged request's own steps: the others + itself, the others at the time-average context
        own_ctx = self.p_draw + (self.g_draw - 1.0) / 2.0 + 0.5
        gd = np.maximum(self.g_draw - 1.0, 1.0)
        extra = np.maximum(t_mix - t_dec, 0.0)  # what a prefill chunk adds to a decode step
        # work that interleaves with the decodes, per other request: a whole prefill that stalls them
        # (unchunked) or its chunks' extra step time (chunked); rho_i = the share of time it takes
        if self.chunk is None:
            s_int, s_int2 = self.e_d, self.e_d2
        else:
            s_int, s_int2 = self.e_chunks * extra, float(np.mean(self.n_chunks**2)) * extra**2
        lam_o = lam if closed is None else lam * closed["share"]  # other requests' prompts per second
        rho_i = min(lam_o * s_int, 0.95)
        if closed is None:
            # The running batch is not Poisson(B) (an infinite-server view): (a) each arrival's interleaved
            # work holds the decodes while more requests arrive, so arrivals per decode step come in
            # busy-period clusters (variance × 1/(1 − ρ_i)²); (b) steps slow down as the batch grows, so
            # a larger batch draws more arrivals per step: a processor-sharing queue whose speed falls with
            # its population, stationary batch negative binomial with variance × 1/(1 − p),
            # p = λ·E[g − 1]·(∂T/∂b)/(1 − ρ_i). Var(b) = F·B with F the product (checked against the
            # simulation's batch at 30–90 % load).
            k_b = max(at(self.dt_dec_dB), 0.0)  # ∂T/∂b: what one more running decode adds to a step
            p_fb = min(lam * self.e_gd * k_b / max(1.0 - rho_i, 1e-9), 0.9)
            amp_s = 1.0 / (1.0 - rho_i) ** 2  # the interleaved work's clusters
            amp = amp_s / (1.0 - p_fb)  # the batch: clusters × step-time feedback
            # the others' count averaged over a request's life H (M/G/∞, B = λH): those already there
            # (each staying a uniform share of H: variance B/3) and those arriving during it (variance
            # B/3), both × F. The arrivals also bring the interleaved work (stalls or chunks) this request
            # waits for: their correlation is E[U]·Var(A)/(sd·sd) = √3/2. A request's steps weight the
            # batch by its size: the mean the others form over its steps is B + Var(b)/B − 1 = B + F − 1.
            z_new = 0.5 * math.sqrt(3.0) * self.z + 0.5 * self.z_new
            others_mean = others + (amp - 1.0) * min(others, 1.0)
            others_r = np.maximum(others_mean + np.sqrt(amp * others / 3.0) * (self.z_batch + z_new), 0.0)
        else:
            amp = amp_s = 1.0
            others_r = np.full(own_ctx.shape, others)
        # the others' mean context: the time average, spread by the sample of others a request lives with
        ctx_o = np.maximum(self.ctx_run + self.ctx_run_sd / np.sqrt(np.maximum(others_r, 1.0)) * self.z_ctx, 1.0)
        mix_ctx = (own_ctx + others_r * ctx_o) / (others_r + 1.0)
        t_own = np.broadcast_to(self.own_step(others_r + 1.0, mix_ctx), own_ctx.shape)
        p_decodes = 1.0 - math.exp(-others)  # P(some decode running) for a Poisson number of running decodes
        # the interleaved work during this request's decodes: compound Poisson over its life, spread × F
        life = gd * t_own / max(1e-12, 1.0 - rho_i)
        mean_int = lam_o * life * s_int
        sd_int = np.sqrt(amp_s * lam_o * life * s_int2)
        tpot = np.maximum(t_own + (mean_int + sd_int * self.z) / gd, t_own)
        if self.chunk is None:
            s = self.d_draw
            es, es2 = self.e_d, self.e_d2
        else:
            s = self.n_chunks * t_mix  # this prompt's chunk steps
            es, es2 = float(np.mean(s)), float(np.mean(s**2))
        # the wait for the prefill. Open loop: the prefill server is an M/G/1 queue (service S, a prompt's
        # prefill or its chunk steps) that takes decode steps as vacations when no prompt waits; by the
        # decomposition property (Fuhrmann–Cooper) the wait is the M/G/1 wait plus the residual of a
        # step in progress, and the M/G/1 wait is a geometric sum of residual services (Beneš:
        # P(N = n) = (1 − ρ)ρⁿ, each term from the length-biased S times a uniform fraction).
        # Closed loop: the same queue fed by the others' prompts (rate λ·(n − 1)/n), and no step residual.
        share = 1.0 if closed is None else closed["share"]
        rho_o = min(lam * share * es, 0.999999)  # P(another prompt is being prefilled)
        step_resid = t_dec if self.chunk is None else t_step
        order = np.argsort(s)
        s_sorted = s[order]
        cum = np.cumsum(s_sorted)
        rng = np.random.default_rng(7)  # fixed: the same percentiles every call

        cdf = cum / cum[-1] if cum[-1] > 0 else cum

        def residuals(n):  # n draws from the equilibrium residual of S: a length-biased S times a uniform share
            if cum[-1] <= 0:
                return np.zeros(n)
            if s_sorted[0] == s_sorted[-1]:
                return rng.random(n) * s_sorted[0]
            return rng.random(n) * np.interp(rng.random(n), cdf, s_sorted)

        # a step in progress (open loop); a closed-loop request is sent as its predecessor ends, at a step's end
        vac = np.where(self.u_state < p_decodes, self.u_resid * step_resid, 0.0) if closed is None else 0.0
        # Chunked: a chunk step's time follows the running batch, which wanders slowly (variance F·B, over
        # a request's life) next to a prompt's wait (a few chunk steps): the queue sees the load of the batch
        # at hand, ρ(b) = ρ·T_mix(b)/T_mix(B), service times scaled alike (quasi-static: a mixture of M/G/1).
        scale = np.ones_like(s)
        if self.chunk is not None and closed is None and B > 0:
            b_now = np.maximum(B + np.sqrt(amp * B) * self.z_batch, 0.0)
            scale = np.interp(b_now, self.B, np.broadcast_to(self.t_mix, self.B.shape)) / max(t_mix, 1e-300)
            vac = vac * scale
        if self.chunk is not None and closed is None and B > 0:
            n_res = rng.geometric(1.0 - np.minimum(rho_o * scale, 0.995)) - 1  # residual services ahead
        else:
            n_res = rng.geometric(1.0 - rho_o, size=s.shape) - 1
        k_exact = min(int(n_res.max(initial=0)), 6)
        wq = np.zeros_like(s)
        if k_exact:  # the first 6 terms drawn one by one (all at once), the rest by their mean and spread
            r = residuals(k_exact * len(s)).reshape(k_exact, len(s))
            wq = np.sum(np.where(np.arange(k_exact)[:, None] < n_res[None, :], r, 0.0), axis=0)
        extra = np.maximum(n_res - k_exact, 0)
        if extra.any():  # beyond 6 terms: the sum (central limit): its mean and spread
            e_r = es2 / (2.0 * es) if es > 0 else 0.0
            sd_r = math.sqrt(max(float(np.mean(s**3)) / (3.0 * es) - e_r**2, 0.0)) if es > 0 else 0.0
            wq += extra * e_r + np.sqrt(extra) * sd_r * self.z_queue
        wq = wq * scale
        wait = np.maximum(wq, 0.0) + vac
        # share of time the replica has work: always in a closed loop; in the open loop the probability that
        # a Poisson number of requests in the system (mean λ·E[e2e], Little) is not zero
        busy = None if closed is None else 1.0
        # a decode slot (max_batch): Erlang C with c = max_batch servers of mean holding time E[g−1]·TPOT
        if closed is not None:
            wait = wait + closed["slot_wait"]
        elif self.max_batch is not None and self.e_gd > 0:
            hold = self.e_gd * float(np.mean(tpot))
            pw = float(erlang_c(self.max_batch, np.array([lam * hold]))[0])
            slot_mean = hold / max(self.max_batch - lam * hold, 1e-9)  # mean wait of those who wait
            if pw > 0:  # the drawn requests that wait for a slot (none when the waiting probability is 0)
                wait = wait + np.where(
                    self.u_slot < pw, -slot_mean * np.log(np.maximum(1.0 - self.u_slot / pw, 1e-300)), 0.0
                )
        ttft = wait + s * scale  # chunked: its own chunk steps also run at the batch at hand
        e2e = ttft + (self.g_draw - 1.0) * tpot
        if busy is None:
            busy = 1.0 - math.exp(-lam * float(np.mean(e2e)))
        tokens_per_req = float(np.mean(self.g_draw))
        thr = lam * tokens_per_req  # generated tokens/s of this replica
        # power per device: idle + dynamic by the step's compute and memory utilisation while busy
        peak = self.hw.matrix_peak("bf16" if "bf16" in self.hw.peak_flops else "fp16")[1]
        bw = self.hw.memory_bandwidth
        f_step, by_step = at(self.f_step), at(self.by_step)
        dev = self.devices
        u_c = min(1.0, f_step / dev / (peak * max(t_step, 1e-12))) if t_step > 0 else 0.0
        u_m = min(1.0, by_step / dev / (bw * max(t_step, 1e-12))) if t_step > 0 else 0.0
        p_max = float(self.hw.tdp_watts) if getattr(self.hw, "tdp_watts", None) else None
        p_idle, idle_src = idle_power(self.hw)
        if p_max and p_idle is not None:
            power = p_idle + (p_max - p_idle) * busy * (COMPUTE_POWER_SHARE * u_c + (1 - COMPUTE_POWER_SHARE) * u_m)
            energy = power * dev / thr if thr > 0 else None
        else:
            power, energy = None, None
        return {
            "batch": B,
            "step_time_s": t_step,
            "ttft": ttft,
            "tpot": tpot,
            "e2e": e2e,
            "busy": busy,
            "throughput": thr,
            "power_w_per_device": power,
            "idle_w_per_device": p_idle,
            "idle_power_source": idle_src,
            "energy_j_per_token": energy,
            "u_compute": u_c,
            "u_memory": u_m,
            "prefill_utilization": rho_p,
            "chunk_step_share": pi,
        }


def serve(
    model: Any,
    hardware: Any,
    *,
    rate: float | None = None,
    concurrency: int | None = None,
    prompt_len: Any,
    gen_len: Any,
    max_batch: int | None = None,
    chunk_size: int | None = None,
    price_per_hour: float | None = None,
    replicas: int = 1,
    block_size: int = DEFAULT_BLOCK,
    disaggregated: tuple[int, int] | None = None,
    **analyze_knobs,
) -> ServingResult:
    """A deployment under load: continuous batching, queueing, latency percentiles, energy and cost.

    Exactly one of ``rate`` (open loop: Poisson arrivals, requests/s to the whole deployment) or
    ``concurrency`` (closed loop: N requests always in flight) is given. ``prompt_len`` and ``gen_len``
    are numbers or distributions: ``(a, b)`` or ``{"kind": "uniform", "low": a, "high": b}`` (uniform),
    a list of values (empirical) or ``{"kind": "fixed", "value": n}``. ``max_batch`` caps running
    sequences (vLLM's ``max_num_seqs``; None: only the KV cache limits it); ``chunk_size`` enables
    chunked prefill with that token budget per step (None: each prompt is prefilled in a step of its
    own); ``price_per_hour`` is per device-hour; ``replicas`` share the rate evenly; ``block_size``
    is the paged-KV block in tokens. ``disaggregated=(n_prefill, n_decode)`` serves prefills and
    decodes on separate replicas of this configuration, the prompt's KV sent over the interconnect.
    Other keywords are :func:`analyze` knobs (bits, tp, flash_attention, efficiency, ...).
    """
    if (rate is None) == (concurrency is None):
        raise ValueError(
            "serve: give exactly one of rate= (requests/s, open loop) or concurrency= (requests in flight)"
        )
    if rate is not None:
        rate = float(rate) if rate == 0 else _positive("rate", rate, allow_none=False)
    if concurrency is not None:
        concurrency = _positive("concurrency", concurrency, allow_none=False, integer=True)
    replicas = _positive("replicas", replicas, allow_none=False, integer=True)
    price = _positive("price_per_hour", price_per_hour)
    if disaggregated is not None:
        if (
            not isinstance(disaggregated, (tuple, list))
            or len(disaggregated) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in disaggregated)
        ):
            raise ValueError(
                f"disaggregated must be (n_prefill_replicas, n_decode_replicas) ≥ 1, got {disaggregated!r}"
            )
        return _serve_disaggregated(
            model,
            hardware,
            rate=rate,
            concurrency=concurrency,
            prompt_len=prompt_len,
            gen_len=gen_len,
            max_batch=max_batch,
            price=price,
            block_size=block_size,
            pools=tuple(int(v) for v in disaggregated),
            knobs=analyze_knobs,
        )
    srv = _Server(
        model,
        hardware,
        prompt_len=prompt_len,
        gen_len=gen_len,
        max_batch=max_batch,
        chunk_size=chunk_size,
        block_size=block_size,
        knobs=analyze_knobs,
    )
    closed = None
    if concurrency is not None:
        lam, closed = _closed_loop(srv, concurrency / replicas)
        rate = lam * replicas
    assert rate is not None
    lam = rate / replicas
    settings = {
        "model": srv.m.name,
        "hardware": srv.hw.name,
        "prompt_len": srv.P.to_dict(),
        "gen_len": srv.G.to_dict(),
        "max_batch": srv.max_batch,
        "chunk_size": srv.chunk,
        "block_size": srv.block,
        "replicas": replicas,
        "devices_per_replica": srv.devices,
        "devices": srv.devices * replicas,
        "price_per_hour": price,
        "mode": "closed loop" if concurrency is not None else "open loop",
        "concurrency_target": concurrency,
        "efficiency": analyze_knobs.get("efficiency", "roofline"),
        **{k: v for k, v in analyze_knobs.items() if k != "efficiency"},
    }
    return _result(srv, lam, replicas, price, settings, rate, closed)


def _closed_loop(srv: _Server, n: float) -> tuple[float, dict]:
    """Closed loop with n requests always in flight (each replaced as it ends), by mean-value analysis.

    A request arriving sees the system with n − 1 others (the arrival theorem), spread over the prefill
    queue and the running decodes in proportion to the time a request spends in each (Schweitzer's
    approximation); beyond ``max_batch`` the rest wait for a slot (Little's law on the waiting room).
    The rate λ solves λ · E[e2e] = n.
    """
    k = srv.i_max + 1
    if k < 2 or srv.max_rate <= 0:
        return 0.0, {"others": 0.0, "queued": 0.0, "slot_wait": 0.0, "share": 0.0}
    own = srv.P.mean + (float(np.mean(srv.g_draw)) - 1.0) / 2.0 + 0.5
    Bg = srv.B[:k]
    t_own_g = np.broadcast_to(srv.own_step(Bg + 1.0, (own + Bg * srv.ctx_run) / (Bg + 1.0)), Bg.shape)
    cap = srv.b_cap  # running requests the replica holds (max_batch or the KV cache)
    if srv.chunk is None:
        es = srv.e_d
    else:
        es = None

    def state(lam):
        B = srv.batch_for(lam)
        at = srv.grid_at(B)
        rho = min(at(srv.rho_p), 0.999999)
        share = (n - 1) / max(n, 1)  # of the requests in flight, the others
        if srv.chunk is None:
            s_mean = es
            tpot = float(np.interp(B * share, Bg, t_own_g)) / (1 - rho * share)
        else:
            s_mean = float(np.mean(srv.n_chunks)) * at(srv.t_mix)
            tpot = float(np.interp(B * (n - 1) / max(n, 1), Bg, t_own_g)) + max(
                at(srv.t_mix) - at(srv.t_dec), 0.0
            ) * min(at(srv.pi), 1.0)
        others_dec = B * (n - 1) / max(n, 1)
        if srv.chunk is None:
            s2 = srv.e_d2
        else:
            s2 = float(np.mean(srv.n_chunks**2)) * at(srv.t_mix) ** 2
        rho_o = min(lam * share * s_mean, 0.999999)
        queued = lam * share * (lam * share * s2 / (2.0 * (1.0 - rho_o)))  # prompts waiting (Little on the queue)
        ttft = s_mean + lam * share * s2 / (2.0 * (1.0 - rho_o))  # Pollaczek–Khinchine, the others' prompts only
        slot_wait = max(n - cap, 0.0) / lam if lam > 0 else 0.0
        e2e = ttft + slot_wait + srv.e_gd * tpot
        return lam * e2e, {"others": others_dec, "queued": queued, "slot_wait": slot_wait, "share": share}

    lo, hi = 0.0, srv.max_rate * (1 - 1e-9)
    if state(hi)[0] < n:  # even at the highest stable rate fewer are in flight: the rest wait for slots
        return hi, state(hi)[1]
    for _ in range(60):
        mid = (lo + hi) / 2
        if state(mid)[0] < n:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-9 * hi:
            break
    lam = (lo + hi) / 2
    return lam, state(lam)[1]


def _result(srv: _Server, lam: float, replicas: int, price, settings: dict, rate: float, closed=None) -> ServingResult:
    max_rate = srv.max_rate * replicas
    stable = lam < srv.max_rate or (closed is not None and lam > 0)
    curve = {"rate": (srv.lam * replicas).tolist(), "batch": srv.B.tolist(), "step_time_s": srv.t_step.tolist()}
    nan_q = {"mean": None, "p50": None, "p90": None, "p99": None}
    if not stable:
        data = {
            "rate": rate,
            "max_rate": max_rate,
            "stable": False,
            "utilization": rate / max_rate if max_rate else math.inf,
            "concurrency": None,
            "throughput_tokens_per_s": max_rate * float(np.mean(srv.g_draw)),
            "ttft_s": nan_q,
            "tpot_s": nan_q,
            "e2e_s": nan_q,
            "energy_j_per_token": None,
            "cost_per_million_tokens": None,
            "batch": None,
            "why_unstable": _why(srv),
            "notes": NOTES,
        }
        return ServingResult(data, settings, curve)
    mt = srv.metrics(lam, closed) if lam > 0 else srv.metrics(1e-12)
    thr = mt["throughput"] * replicas if lam > 0 else 0.0
    e2e = _quantiles(mt["e2e"])
    devices = srv.devices * replicas
    cost = price * devices / 3600.0 / thr * 1e6 if (price and thr > 0) else None
    data = {
        "rate": rate,
        "max_rate": max_rate,
        "stable": True,
        "utilization": lam / srv.max_rate if srv.max_rate > 0 else 0.0,
        "concurrency": rate * e2e["mean"],  # Little's law
        "throughput_tokens_per_s": thr,
        "throughput_per_device_tokens_per_s": thr / devices if devices else 0.0,
        "ttft_s": _quantiles(mt["ttft"]),
        "tpot_s": _quantiles(mt["tpot"]),
        "e2e_s": e2e,
        "energy_j_per_token": mt["energy_j_per_token"] if lam > 0 else None,
        "power_w_per_device": mt["power_w_per_device"],
        "idle_w_per_device": mt["idle_w_per_device"],
        "idle_power_source": mt["idle_power_source"],
        "cost_per_million_tokens": cost,
        "batch": mt["batch"],
        "step_time_s": mt["step_time_s"],
        "prefill_utilization": mt["prefill_utilization"],
        "kv_limited_batch": srv.b_kv,
        "notes": NOTES,
    }
    return ServingResult(data, settings, curve)


def _why(srv: _Server) -> str:
    i = srv.i_max
    if srv.B[i] >= srv.b_cap - 1e-9:
        if srv.max_batch is not None and srv.max_batch <= srv.b_kv:
            return f"the running batch reaches max_batch = {srv.max_batch}"
        m = srv.base.memory
        if m["recurrent_state_bytes"] > 0:  # Mamba / hybrid: every running request also holds its fixed state
            what = (
                "the KV cache and recurrent state hold" if m["kv_bytes_per_token"] > 0 else "the recurrent state holds"
            )
            return f"{what} at most {srv.b_kv:.4g} running requests in memory"
        return f"the KV cache holds at most {srv.b_kv:.4g} running requests (paged blocks of {srv.block} tokens)"
    if srv.rho_p[i] >= 0.999:
        return "the prefill work alone saturates the replica"
    return "step time grows faster than the batch: more running requests bring no more throughput"


def _serve_disaggregated(
    model, hardware, *, rate, concurrency, prompt_len, gen_len, max_batch, price, block_size, pools, knobs
) -> ServingResult:
    """Prefill and decode on separate replicas (DistServe / Splitwise); the prompt's KV crosses the interconnect."""
    n_p, n_d = pools
    dec = _Server(
        model,
        hardware,
        prompt_len=prompt_len,
        gen_len=gen_len,
        max_batch=max_batch,
        chunk_size=None,
        block_size=block_size,
        knobs=knobs,
    )
    if concurrency is not None:
        raise ValueError("serve: disaggregated pools take rate= (open loop)")
    lam = rate
    d = dec.d_draw
    ed, ed2 = float(np.mean(d)), float(np.mean(d**2))
    lam_p = lam / n_p
    rho_p = lam_p * ed
    # decode pool: decode-only steps: λ(B) = B / (E[g−1]·T_d)
    t_dec = dec.t_dec
    lam_curve = np.where(dec.B > 0, dec.B / np.maximum(dec.e_gd * t_dec, 1e-300), 0.0)
    ok = dec.B <= dec.b_cap + 1e-9
    max_dec = float(np.max(np.where(ok, lam_curve, 0.0))) * n_d
    max_pre = n_p / ed if ed > 0 else math.inf
    max_rate = min(max_dec, max_pre)
    # the prompt's KV cache, and a recurrent model's fixed state (one sequence's), move to the decode replica
    kv_bytes = (
        dec.p_draw * dec.base.memory["kv_bytes_per_token"] + dec.base.memory["recurrent_state_bytes"]
    ) * dec.devices
    link = dec.hw.interconnect_bandwidth or dec.hw.host_link_bandwidth
    t_kv = kv_bytes / link if link else np.zeros_like(kv_bytes)  # KV of the prompt to the decode replica
    settings = {
        "model": dec.m.name,
        "hardware": dec.hw.name,
        "disaggregated": {"prefill": n_p, "decode": n_d},
        "prompt_len": dec.P.to_dict(),
        "gen_len": dec.G.to_dict(),
        "max_batch": max_batch,
        "devices": dec.devices * (n_p + n_d),
        "price_per_hour": price,
        "mode": "open loop",
        **knobs,
    }
    curve = {"rate": (lam_curve * n_d).tolist(), "batch": dec.B.tolist(), "step_time_s": t_dec.tolist()}
    nan_q = {"mean": None, "p50": None, "p90": None, "p99": None}
    if lam >= max_rate:
        return ServingResult(
            {
                "rate": rate,
                "max_rate": max_rate,
                "stable": False,
                "utilization": rate / max_rate,
                "concurrency": None,
                "throughput_tokens_per_s": max_rate * float(np.mean(dec.g_draw)),
                "ttft_s": nan_q,
                "tpot_s": nan_q,
                "e2e_s": nan_q,
                "energy_j_per_token": None,
                "cost_per_million_tokens": None,
                "notes": NOTES,
                "why_unstable": "prefill pool" if max_pre < max_dec else "decode pool",
            },
            settings,
            curve,
        )
    w_mean = lam_p * ed2 / (2 * (1 - rho_p))
    p_wait = rho_p
    u = dec.u_state
    wait = np.where(
        u < 1 - p_wait, 0.0, -(w_mean / max(p_wait, 1e-12)) * np.log(np.maximum(1 - u, 1e-300) / max(p_wait, 1e-12))
    )
    ttft = wait + d + t_kv
    B = float(np.interp(lam / n_d, np.maximum.accumulate(lam_curve[: dec.i_max + 1]), dec.B[: dec.i_max + 1]))
    own_ctx = dec.p_draw + (dec.g_draw - 1.0) / 2.0 + 0.5
    tpot = np.broadcast_to(dec.steps.decode(B + 1.0, (own_ctx + B * dec.ctx_run) / (B + 1.0))[0], own_ctx.shape)
    e2e = ttft + (dec.g_draw - 1.0) * tpot
    thr = lam * float(np.mean(dec.g_draw))
    devices = dec.devices * (n_p + n_d)
    cost = price * devices / 3600.0 / thr * 1e6 if (price and thr > 0) else None
    e2e_q = _quantiles(e2e)
    return ServingResult(
        {
            "rate": rate,
            "max_rate": max_rate,
            "stable": True,
            "utilization": rate / max_rate,
            "concurrency": rate * e2e_q["mean"],
            "throughput_tokens_per_s": thr,
            "throughput_per_device_tokens_per_s": thr / devices,
            "ttft_s": _quantiles(ttft),
            "tpot_s": _quantiles(tpot),
            "e2e_s": e2e_q,
            "energy_j_per_token": None,
            "cost_per_million_tokens": cost,
            "kv_transfer_s": _quantiles(t_kv),
            "notes": NOTES,
        },
        settings,
        curve,
    )


def plan(
    model: Any,
    devices: Any = None,
    *,
    rate: float,
    slo: dict,
    prompt_len: Any,
    gen_len: Any,
    tps: Any = (1, 2, 4, 8),
    prices: Any = None,
    max_batch: int | None = None,
    chunk_size: int | None = None,
    **knobs,
):
    """Deployments that serve ``rate`` requests/s under an SLO, best first (a pandas DataFrame).

    For every device (the catalog when ``devices`` is None) and tensor-parallel degree in ``tps`` that
    holds the model: the highest rate one replica sustains within the SLO (``{"ttft_p99_s": ..,
    "tpot_p99_s": ..}``, either may be omitted), the replicas that ``rate`` then needs, and the
    percentiles, energy and cost at that load. ``prices``: $ per device-hour, one number for every
    device or a dict by device id. Rows that meet the SLO come first, then by cost per hour (or device
    count), then by cost per million tokens.
    """
    import pandas as pd

    from .hardware import list_hardware

    rate = _positive("rate", rate, allow_none=False)
    if not isinstance(slo, dict) or not slo or set(slo) - {"ttft_p99_s", "tpot_p99_s"}:
        raise ValueError("slo must be a dict with 'ttft_p99_s' and/or 'tpot_p99_s' (seconds)")
    limits = {k: _positive(f"slo[{k!r}]", v, allow_none=False) for k, v in slo.items()}
    devs = list_hardware() if devices is None else ([devices] if isinstance(devices, str) else list(devices))
    if not devs:
        raise ValueError("plan: devices is empty")
    tps = [_positive("tps", t, allow_none=False, integer=True) for t in tps]
    m = load_model(model)
    rows = []
    for d in devs:
        hw = load_hardware(d)
        did = hw.id or hw.name
        price = prices.get(did, prices.get(hw.name)) if isinstance(prices, dict) else prices
        price = _positive(f"prices[{did!r}]", price)
        for tp in tps:
            if tp > 1 and not hw.interconnect_bandwidth:
                continue
            try:
                srv = _Server(
                    m,
                    hw,
                    prompt_len=prompt_len,
                    gen_len=gen_len,
                    max_batch=max_batch,
                    chunk_size=chunk_size,
                    block_size=DEFAULT_BLOCK,
                    knobs={**knobs, "tp": tp},
                )
            except ValueError:
                continue  # does not fit, or tp does not divide the heads
            if srv.max_rate <= 0:
                continue

            def p99s(lam, srv=srv):
                mt = srv.metrics(lam)
                return float(np.quantile(mt["ttft"], 0.99)), float(np.quantile(mt["tpot"], 0.99))

            def ok(lam, srv=srv):
                t, p = p99s(lam)
                return t <= limits.get("ttft_p99_s", math.inf) and p <= limits.get("tpot_p99_s", math.inf)

            # the highest per-replica rate within the SLO: bisection on the fraction of max_rate
            lo, hi = 0.0, 0.98
            if not ok(srv.max_rate * 1e-3):
                lam_slo = 0.0
            else:
                lo = 1e-3
                if ok(srv.max_rate * hi):
                    lo = hi
                else:
                    for _ in range(5):
                        mid = (lo + hi) / 2
                        lo, hi = (mid, hi) if ok(srv.max_rate * mid) else (lo, mid)
                lam_slo = srv.max_rate * lo
            if lam_slo > 0:
                replicas = math.ceil(rate / lam_slo)
                meets = True
            else:  # no load meets the SLO: size for throughput alone and say so
                replicas = math.ceil(rate / (0.98 * srv.max_rate))
                meets = False
            lam = rate / replicas
            mt = srv.metrics(lam)
            t99, p99 = float(np.quantile(mt["ttft"], 0.99)), float(np.quantile(mt["tpot"], 0.99))
            meets = (
                meets
                and t99 <= limits.get("ttft_p99_s", math.inf) * (1 + 1e-9)
                and p99 <= limits.get("tpot_p99_s", math.inf) * (1 + 1e-9)
            )
            n_dev = replicas * srv.devices
            thr = mt["throughput"] * replicas
            rows.append(
                {
                    "device": did,
                    "tp": tp,
                    "replicas": replicas,
                    "devices": n_dev,
                    "max_rate_per_replica": lam_slo if meets else float(srv.max_rate),
                    "ttft_p99_s": t99,
                    "tpot_p99_s": p99,
                    "meets_slo": bool(meets),
                    "cost_per_hour": price * n_dev if price else None,
                    "cost_per_million_tokens": price * n_dev / 3600.0 / thr * 1e6 if (price and thr > 0) else None,
                    "energy_j_per_token": mt["energy_j_per_token"],
                    "throughput_tokens_per_s": thr,
                }
            )
    cols = [
        "device",
        "tp",
        "replicas",
        "devices",
        "max_rate_per_replica",
        "ttft_p99_s",
        "tpot_p99_s",
        "meets_slo",
        "cost_per_hour",
        "cost_per_million_tokens",
        "energy_j_per_token",
        "throughput_tokens_per_s",
    ]
    df = pd.DataFrame(rows, columns=cols)
    if df.empty:
        return df
    key_cost = df["cost_per_hour"].fillna(np.inf) if df["cost_per_hour"].notna().any() else df["devices"].astype(float)
    df = df.assign(
        _k0=~df["meets_slo"], _k1=key_cost, _k2=df["cost_per_million_tokens"].fillna(np.inf), _k3=df["devices"]
    )
    df = df.sort_values(["_k0", "_k1", "_k2", "_k3"], kind="stable").drop(columns=["_k0", "_k1", "_k2", "_k3"])
    return df.reset_index(drop=True)


def latency_curve(
    model: Any,
    hardware: Any,
    *,
    prompt_len: Any,
    gen_len: Any,
    points: int = 16,
    closed: bool = False,
    max_batch: int | None = None,
    chunk_size: int | None = None,
    **knobs,
):
    """TTFT and TPOT percentiles, throughput and energy against load, up to the highest stable rate.

    One row per load: open loop at ``points`` rates from 2 % to 97 % of ``max_rate`` (log-spaced),
    or closed loop (``closed=True``) at 1, 2, 4, … users up to where the rate saturates. Columns:
    rate, users (mean requests in flight), ttft/tpot/e2e p50 and p99, throughput_tokens_per_s,
    tokens_per_s_per_user (1/mean TPOT), energy_j_per_token.
    """
    import pandas as pd

    srv = _Server(
        model,
        hardware,
        prompt_len=prompt_len,
        gen_len=gen_len,
        max_batch=max_batch,
        chunk_size=chunk_size,
        block_size=DEFAULT_BLOCK,
        knobs=knobs,
        draws=1024,
    )
    rows: list[dict] = []
    if srv.max_rate <= 0:
        return pd.DataFrame(rows)
    evals: list[tuple[int | None, float, dict | None]]
    if closed:
        loads: list[int] = []
        n = 1
        while n <= 4096 and len(loads) < points:
            loads.append(n)
            n *= 2
        evals = [(n, *_closed_loop(srv, float(n))) for n in loads]
    else:
        evals = [(None, f * srv.max_rate, None) for f in np.geomspace(0.02, 0.97, points)]
    for users, lam, cl in evals:
        mt = srv.metrics(lam, cl)
        e2e = float(np.mean(mt["e2e"]))
        q = {k: np.quantile(mt[k], (0.5, 0.99)) for k in ("ttft", "tpot", "e2e")}
        rows.append(
            {
                "rate": lam,
                "users": float(users) if users is not None else lam * e2e,
                "ttft_p50_s": q["ttft"][0],
                "ttft_p99_s": q["ttft"][1],
                "tpot_p50_s": q["tpot"][0],
                "tpot_p99_s": q["tpot"][1],
                "e2e_p50_s": q["e2e"][0],
                "e2e_p99_s": q["e2e"][1],
                "throughput_tokens_per_s": mt["throughput"],
                "tokens_per_s_per_user": 1.0 / float(np.mean(mt["tpot"])),
                "energy_j_per_token": mt["energy_j_per_token"],
            }
        )
    return pd.DataFrame(rows)


def interactivity_curve(
    model: Any, hardware: Any, *, prompt_len: int, gen_len: int, batch_sizes=None, tps=(1, 2, 4, 8), **knobs
):
    """Throughput per device against tokens/s per user across batch sizes and TP degrees (InferenceMAX's picture).

    Evaluated with the vectorized :func:`sweep` (static batches of ``batch_size`` sequences): per user
    ``decode_tokens_per_s`` (1/TPOT), per device ``throughput_per_device_tokens_per_s``. TP degrees the
    device cannot run (no interconnect, heads not divisible, does not fit) are left out.
    """
    import pandas as pd

    from .explore import sweep

    hw = load_hardware(hardware)
    m = load_model(model)
    knobs = {k: v for k, v in knobs.items() if k != "tp"}  # the curve runs over the TP degrees
    batch_sizes = list(batch_sizes or [2**k for k in range(0, 10)])
    out = []
    for tp in tps:
        if tp > 1 and not hw.interconnect_bandwidth:
            continue
        try:
            df = sweep(m, hw, batch_size=batch_sizes, prompt_len=prompt_len, gen_len=gen_len, tp=tp, **knobs)
        except ValueError:
            continue
        df = df[df["fits"]] if "fits" in df else df
        out.append(
            pd.DataFrame(
                {
                    "tp": tp,
                    "batch_size": df["batch_size"].to_numpy(),
                    "tokens_per_s_per_user": df["decode_tokens_per_s"].to_numpy(),
                    "throughput_per_device_tokens_per_s": df["throughput_per_device_tokens_per_s"].to_numpy(),
                }
            )
        )
    return (
        pd.concat(out, ignore_index=True)
        if out
        else pd.DataFrame(columns=["tp", "batch_size", "tokens_per_s_per_user", "throughput_per_device_tokens_per_s"])
    )
