"""Operators of one forward pass: FLOPs and bytes moved, per layer type, on one device.

Conventions (see README "What the numbers mean"):
- A FLOP is one multiply or one add; a multiply-accumulate is 2 FLOPs. A linear layer with
  ``in`` inputs and ``out`` outputs over N tokens costs 2·N·in·out (+ N·out for its bias).
- Unless ``fused``/``flash_attention`` say otherwise, every operator reads its inputs from device
  memory and writes its outputs back: bytes = weights read + activations read and written +
  KV-cache elements read and written.
- Element-wise costs per element: RMSNorm 4 (square, sum, scale, weight), LayerNorm 7 (mean,
  subtract, square, sum, scale, weight, bias), softmax 5 (max, subtract, exp, sum, divide; the
  1/√d scale is folded into Q), soft-capping 3 (divide, tanh, multiply), rotary 3 (two
  multiplies and an add), residual add 1, gated activation act+1 (the gate multiply); the
  activation costs are in :data:`models.ACT_FLOPS`.

The builder works on numpy arrays: ``cached`` (tokens already in the KV cache) may be an array
over decode steps, and every count broadcasts over it — a whole generation is evaluated without a
Python loop per token.

Parallelism (``Options.tp``, ``Options.ep``) makes the rows *per device*: tensor parallelism
shards heads, MLP width and vocabulary (Megatron layout); expert parallelism spreads experts over
``ep`` devices with data-parallel attention (each device runs ``batch/ep`` sequences) and an
all-to-all dispatch and combine. ``params`` of a row are always the model's (global) parameters.
"""

from __future__ import annotations

import math

import numpy as np

from . import families_gemma3n
from .models import ACT_FLOPS, AttentionSpec, LayerType, MLPSpec, ModelConfig
from .options import Options, kv_heads_per_device
from .precision import Precision, compute_dtype

RMS_FLOPS = 4  # per element: square, sum, multiply by 1/rms, multiply by weight
LN_FLOPS = 7  # per element: mean, subtract, square, sum, multiply by 1/std, weight, bias
SOFTMAX_FLOPS = 5  # per score: max, subtract, exp, sum, divide
SOFTCAP_FLOPS = 3  # per element: divide by cap, tanh, multiply by cap
ROPE_FLOPS = 3  # per rotated element: x·cos + rotate(x)·sin
ALIBI_FLOPS = 1  # per score: add the head's slope × key distance (a precomputed bias)
L2_FLOPS = 3  # per element of a weightless L2 norm (Llama-4 qk norm): square, sum, multiply by 1/norm
DEFAULT_ONCHIP_BYTES = 64 * 1024  # FlashAttention tile SRAM when a device does not state its per-SM memory


def _n(x) -> str:
    """Compact number for formulas."""
    if isinstance(x, np.ndarray):
        return "…"
    x = float(x)
    if x == int(x) and abs(x) < 1e15:
        return f"{int(x):,}".replace(",", " ")
    return f"{x:.4g}"


class Row:
    """One operator of one pass on one device. Figures are for a single execution; the pass runs it ``count`` times."""

    __slots__ = (
        "name",
        "layer_type",
        "count",
        "kind",
        "flops",
        "matmul_flops",
        "weight_bytes",
        "activation_bytes",
        "kv_bytes",
        "dtype",
        "formula",
        "params",
        "resident",
        "wclass",
        "host_bytes",
        "host_resident",
        "comm_s",
        "comm_bytes",
        "comm_hops",
        "comm_direct_hops",
        "speedup",
        "m_dim",
        "n_dim",
    )

    def __init__(
        self,
        name,
        layer_type,
        count,
        kind,
        flops,
        matmul_flops,
        weight_bytes,
        activation_bytes,
        kv_bytes,
        dtype,
        formula=None,
        params=0,
        resident=None,
        wclass=None,
    ):
        self.name = name
        self.layer_type = layer_type
        self.count = count
        self.kind = kind  # "matmul", "attention", "elementwise", "lookup", "communication"
        self.flops = flops
        self.matmul_flops = matmul_flops
        self.weight_bytes = weight_bytes
        self.activation_bytes = activation_bytes
        self.kv_bytes = kv_bytes
        self.dtype = dtype  # compute dtype (key of Hardware.peak_flops), "vector", or "link"
        self.formula = formula  # () → (FLOPs formula, bytes formula), built only when displayed
        self.params = params  # the model's parameters this operator owns (counted once per layer)
        # bytes those parameters occupy in this device's memory (≠ weight_bytes read when a lookup
        # reads a few rows, or a MoE pass streams only the experts it touches)
        self.resident = weight_bytes if resident is None else resident
        self.wclass = wclass  # "linear" / "expert" (quantizable weights), "hp" (16-bit), None
        self.host_bytes = 0.0  # of ``bytes``, those streamed over the host link (offloading)
        self.host_resident = 0.0  # parameter bytes held in host memory instead (offloading)
        self.comm_s = 0.0  # communication time of a collective (kind "communication")
        self.comm_bytes = 0.0  # bytes a collective moves over the interconnect per device
        self.comm_hops = 0.0  # sequential link steps of a collective (each costs the latency α)
        # the same on a fully connected topology (NVSwitch, xGMI mesh) with the one-/two-shot kernels serving
        # frameworks use for small messages: all-reduce 2 (reduce-scatter + all-gather), others 1
        self.comm_direct_hops = 0.0
        self.speedup = 1.0  # compute-peak multiplier (2:4 sparse tensor cores)
        self.m_dim = None  # rows of the matrix product (tokens), for the calibrated GEMM efficiency
        self.n_dim = None  # output columns of a linear layer on this device (wave quantization)

    @property
    def flops_formula(self) -> str:
        return self.formula()[0] if self.formula else ""

    @property
    def bytes_formula(self) -> str:
        return self.formula()[1] if self.formula else ""

    @property
    def bytes(self):
        return self.weight_bytes + self.activation_bytes + self.kv_bytes


def _chunk_span(n, chunk):
    """Σ over positions p < n of (p mod C + 1): keys seen by n queries under chunked attention."""
    n = np.asarray(n, dtype=np.float64)
    q, r = np.floor_divide(n, chunk), np.mod(n, chunk)
    out = q * chunk * (chunk + 1) / 2 + r * (r + 1) / 2  # q full sawtooth periods + a partial one
    return float(out) if out.ndim == 0 else out


def _topk_span(n, k):
    """Σ over positions p < n of min(p + 1, k): keys attended by n queries under top-k sparse attention."""
    n = np.asarray(n, dtype=np.float64)
    m = np.minimum(n, k)
    out = m * (m + 1) / 2 + (n - m) * k  # a growing triangle, then k keys per query
    return float(out) if out.ndim == 0 else out


def ring_allreduce_s(msg_bytes, n, bw, alpha):
    """Ring all-reduce of ``msg_bytes`` over n devices: 2(n−1)/n·M/β + 2(n−1)·α."""
    return 2.0 * (n - 1) / n * msg_bytes / bw + 2.0 * (n - 1) * alpha


def all_gather_s(total_bytes, n, bw, alpha):
    """Ring all-gather of a ``total_bytes`` result: (n−1)/n·M/β + (n−1)·α."""
    return (n - 1) / n * total_bytes / bw + (n - 1) * alpha


def all_to_all_s(send_bytes, n, bw, alpha):
    """All-to-all where each device sends ``send_bytes``, (n−1)/n of it to peers: (n−1)/n·M/β + (n−1)·α."""
    return (n - 1) / n * send_bytes / bw + (n - 1) * alpha


class PassBuilder:
    """Collects the operator rows of one forward pass of ``tokens`` new tokens per sequence."""

    def __init__(
        self,
        model: ModelConfig,
        prec: Precision,
        *,
        batch,
        tokens: int,
        cached,
        logits_tokens: int,
        attention: str,
        mla: str,
        options: Options | None = None,
        hardware=None,
    ):
        o = options or Options()
        self.m = model
        self.p = prec
        self.o = o
        self.hw = hardware
        self.tp = o.tp
        self.ep = o.ep
        self.B = batch / o.ep  # sequences on this device (attention is data-parallel over EP ranks)
        self.T = tokens
        self.c0 = cached  # tokens already cached per sequence (scalar or array)
        self.N = self.B * tokens  # new tokens in the pass on this device
        self.logits_tokens = logits_tokens  # positions that get logits (per sequence)
        self.attention = attention
        self.mla = mla
        self.prefill = isinstance(cached, (int, float)) and cached == 0
        self.rows: list[Row] = []
        self._lt = "model"
        self._count = 1

    # -- generic operators -----------------------------------------------------------------
    def linear(
        self,
        name,
        n_tok,
        fin,
        fout,
        *,
        bias=False,
        hp=False,
        in_bytes=None,
        out_kv=False,
        split=None,
        fout_local=None,
        n_label="N",
        weight_label=None,
        wclass=None,
    ):
        """A product of ``n_tok`` token vectors with a ``fin × fout`` weight (global shape).

        ``split``: "col" shards the output features over the TP group, "row" the input features
        (its bias is added once, replicated); ``fout_local`` overrides the local width (KV heads
        replicated when TP exceeds them).
        """
        p, tp = self.p, self.tp
        fin_l = fin / tp if split == "row" else fin
        fout_l = fout_local if fout_local is not None else (fout / tp if split == "col" else fout)
        wb = p.hp if hp else p.w
        ib = p.a if in_bytes is None else in_bytes
        ob = p.kv if out_kv else p.a
        welems = fin_l * fout_l
        bias_l = fout_l if bias else 0.0
        mm = 2.0 * n_tok * fin_l * fout_l  # one multiply and one add per weight per token
        fl = mm + n_tok * bias_l  # bias add per output
        wbytes = welems * wb + bias_l * p.hp
        act = n_tok * fin_l * ib + (0.0 if out_kv else n_tok * fout_l * ob)
        kv = n_tok * fout_l * ob if out_kv else 0.0

        def fmt():
            ff = (
                f"2·{n_label}·in·out{' + ' + n_label + '·out (bias)' if bias else ''} = "
                f"2·{_n(n_tok)}·{_n(fin_l)}·{_n(fout_l)}" + (f" + {_n(n_tok)}·{_n(fout_l)}" if bias else "")
            )
            wl = weight_label or "in·out"
            bf = (
                f"weights {wl}·{wb:g} B{' + bias out·' + format(p.hp, 'g') + ' B' if bias else ''} + input {n_label}·in·{ib:g} B + "
                f"output {n_label}·out·{ob:g} B{' (to KV cache)' if out_kv else ''} = "
                f"{_n(welems)}·{wb:g} + {_n(n_tok)}·{_n(fin_l)}·{ib:g} + {_n(n_tok)}·{_n(fout_l)}·{ob:g}"
            )
            if tp > 1 and split:
                ff += f"   (per device: {'out' if split == 'col' else 'in'} / TP {tp})"
            return ff, bf

        dt = compute_dtype(p.hp_fmt if hp else p.w_fmt, p.a_fmt)
        params = fin * fout + (fout if bias else 0)
        self.rows.append(
            Row(
                name,
                self._lt,
                self._count,
                "matmul",
                fl,
                mm,
                wbytes,
                act,
                kv,
                dt,
                fmt,
                params=params,
                wclass=wclass or ("hp" if hp else "linear"),
            )
        )
        self.rows[-1].m_dim = n_tok
        self.rows[-1].n_dim = fout_l
        return self.rows[-1]

    def elementwise(self, name, n_elems, flops_per, *, reads=1, writes=1, weight_elems=0, what=""):
        """An element-wise operator over ``n_elems`` elements (norms, activations, adds, softmax)."""
        p = self.p
        fl = n_elems * flops_per
        fused = self.o.fused
        act = 0.0 if fused else n_elems * (reads + writes) * p.a  # fused into a neighbour: no traffic of its own
        wbytes = weight_elems * p.hp

        def fmt():
            ff = f"{flops_per}·elements = {flops_per}·{_n(n_elems)}" + (f"  ({what})" if what else "")
            if fused:
                bf = "fused into the neighbouring operator: its tensors stay on chip" + (
                    f"; weights {_n(weight_elems)}·{p.hp:g} B" if weight_elems else ""
                )
            else:
                bf = (
                    f"read {reads}× + write {writes}× elements·{p.a:g} B"
                    + (f" + weights {_n(weight_elems)}·{p.hp:g} B" if weight_elems else "")
                    + f" = ({reads}+{writes})·{_n(n_elems)}·{p.a:g}"
                    + (f" + {_n(weight_elems)}·{p.hp:g}" if weight_elems else "")
                )
            return ff, bf

        self.rows.append(
            Row(
                name,
                self._lt,
                self._count,
                "elementwise",
                fl,
                0.0,
                wbytes,
                act,
                0.0,
                "vector",
                fmt,
                params=weight_elems,
                wclass="hp" if weight_elems else None,
            )
        )
        return self.rows[-1]

    def norm(self, name, rows, width):
        ln = self.m.norm in ("ln", "ln_nobias")
        bias = self.m.norm == "ln"  # "ln_nobias": Cohere / MPT LayerNorm with a weight only
        self.elementwise(
            name,
            rows * width,
            (LN_FLOPS if bias else LN_FLOPS - 1) if ln else RMS_FLOPS,  # no bias: one add fewer per element
            weight_elems=(2 if bias else 1) * width,
            what=("LayerNorm" if bias else "LayerNorm without bias") if ln else "RMSNorm",
        )

    def norm_rms(self, name, rows, width):
        self.elementwise(name, rows * width, RMS_FLOPS, weight_elems=width, what="RMSNorm")

    def collective(self, name, seconds, msg_bytes, what, hops=0, direct_hops=1):
        """A communication operator: no FLOPs; ``msg_bytes`` cross the interconnect in ``seconds``."""
        r = Row(
            name,
            self._lt,
            self._count,
            "communication",
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            "link",
            lambda: ("0 (data movement only)", f"{what}: message {_n(msg_bytes)} B"),
        )
        r.comm_s = seconds
        r.comm_bytes = msg_bytes
        r.comm_hops = hops  # of ``seconds``, hops · α is latency, the rest bytes over the bus bandwidth
        r.comm_direct_hops = direct_hops
        self.rows.append(r)
        return r

    def _link(self):
        hw = self.hw
        return hw.interconnect_bandwidth, (hw.interconnect_latency_s or 0.0)

    def tp_allreduce(self, name, n_tok):
        if self.tp > 1:
            bw, alpha = self._link()
            msg = n_tok * self.m.hidden_size * self.p.a  # the layer output, every device holds a partial sum
            self.collective(
                name,
                ring_allreduce_s(msg, self.tp, bw, alpha),
                msg,
                f"ring all-reduce over TP {self.tp}: 2(n−1)/n·M/β + 2(n−1)·α",
                hops=2 * (self.tp - 1),
                direct_hops=2,
            )

    # -- attention -------------------------------------------------------------------------
    def _pairs(self, window, chunk=None, topk=None):
        """Query–key pairs per sequence per head, and keys read from the cache per sequence.

        ``chunk``: chunked local attention, the query at position p sees the p mod C + 1 keys of its own
        chunk (a sawtooth of period C). ``topk``: sparse attention, a query attends min(p + 1, k) keys.
        """
        T, c0 = self.T, self.c0
        total = c0 + T
        if self.attention == "full" and self.prefill:
            pairs = T * T  # whole score matrix, as eager attention computes it before masking
        elif chunk is not None:
            pairs = _chunk_span(total, chunk) - _chunk_span(c0, chunk)
        elif topk is not None:
            pairs = _topk_span(total, topk) - _topk_span(c0, topk)
        elif window is None:
            pairs = T * c0 + T * (T + 1) / 2  # query i attends c0 + i keys (causal)
        else:
            m = np.clip(window - c0, 0, T)  # queries whose span still fits in the window
            pairs = m * c0 + m * (m + 1) / 2 + (T - m) * window
        keys = total if window is None else np.minimum(total, window + T - 1)
        if chunk is not None:
            keys = total - np.floor_divide(c0, chunk) * chunk  # from the start of the first query's chunk
        if topk is not None:
            keys = np.minimum(total, topk * T)  # distinct keys the queries select, at most
        o = self.o
        if not self.prefill and (o.kv_keep_ratio < 1.0 or o.kv_budget is not None):
            # KV eviction (H2O / SnapKV): decode attends only the kept tokens
            kept = keys * o.kv_keep_ratio
            if o.kv_budget is not None:
                kept = np.minimum(kept, o.kv_budget)
            kept = np.minimum(keys, np.maximum(kept, T))
            pairs = pairs * kept / keys
            keys = kept
        return pairs, keys

    def attention_core(
        self, a: AttentionSpec, *, H, Hkv, dqk, dv, q_bytes, k_bytes, v_bytes, label="", kv_in_cache=True, topk=None
    ):
        """Scores Q·Kᵀ, softmax, and scores·V for one layer (H, Hkv local to this device)."""
        B, T = self.B, self.T
        pairs, keys = self._pairs(a.window, a.chunk, topk)
        p = self.p
        dt = compute_dtype(p.kv_fmt if kv_in_cache else p.a_fmt, p.a_fmt)
        # + soft-capping; + 1 add per score for the ALiBi bias
        sm_per = SOFTMAX_FLOPS + (SOFTCAP_FLOPS if a.softcap else 0) + (ALIBI_FLOPS if a.alibi else 0)
        q_read = B * T * H * dqk * q_bytes
        k_read = B * Hkv * keys * dqk * k_bytes
        v_read = B * Hkv * keys * dv * v_bytes
        o_write = B * T * H * dv * p.a
        mm_s = 2.0 * B * H * dqk * pairs  # score matrix: 2·d FLOPs per (query, key) pair per head
        mm_v = 2.0 * B * H * dv * pairs  # weighted sum of values: 2·d_v per pair per head
        if self.o.flash_attention != "off":
            self._flash(
                a,
                H=H,
                Hkv=Hkv,
                dqk=dqk,
                dv=dv,
                pairs=pairs,
                keys=keys,
                q_read=q_read,
                k_read=k_read,
                v_read=v_read,
                o_write=o_write,
                mm=mm_s + mm_v,
                sm=B * H * pairs * sm_per,
                dt=dt,
                kv_in_cache=kv_in_cache,
                label=label,
            )
            return
        s_write = B * H * pairs * p.a

        def fmt_score():
            ff = f"2·B·H·d·pairs = 2·{_n(B)}·{_n(H)}·{_n(dqk)}·{_n(pairs)}  (pairs = query–key pairs per head{label})"
            bf = (
                f"Q B·T·H·d·{q_bytes:g} + K B·Hkv·keys·d·{k_bytes:g} + scores B·H·pairs·{p.a:g} = "
                f"{_n(B * T * H * dqk)}·{q_bytes:g} + {_n(B * Hkv * keys * dqk)}·{k_bytes:g} + {_n(B * H * pairs)}·{p.a:g}"
            )
            return ff, bf

        self.rows.append(
            Row(
                "attn_score",
                self._lt,
                self._count,
                "attention",
                mm_s,
                mm_s,
                0.0,
                q_read + s_write + (0.0 if kv_in_cache else k_read),
                k_read if kv_in_cache else 0.0,
                dt,
                fmt_score,
            )
        )
        self.rows[-1].m_dim = T * H / Hkv  # queries sharing a KV head form the rows of the product
        self.elementwise(
            "attn_softmax",
            B * H * pairs,
            sm_per,
            what="softmax" + (" + tanh soft-cap" if a.softcap else "") + (" + ALiBi bias add" if a.alibi else ""),
        )
        p_read = B * H * pairs * p.a

        def fmt_value():
            ff = f"2·B·H·d_v·pairs = 2·{_n(B)}·{_n(H)}·{_n(dv)}·{_n(pairs)}"
            bf = (
                f"P B·H·pairs·{p.a:g} + V B·Hkv·keys·d_v·{v_bytes:g} + O B·T·H·d_v·{p.a:g} = "
                f"{_n(B * H * pairs)}·{p.a:g} + {_n(B * Hkv * keys * dv)}·{v_bytes:g} + {_n(B * T * H * dv)}·{p.a:g}"
            )
            return ff, bf

        self.rows.append(
            Row(
                "attn_value",
                self._lt,
                self._count,
                "attention",
                mm_v,
                mm_v,
                0.0,
                p_read + o_write + (0.0 if kv_in_cache else v_read),
                v_read if kv_in_cache else 0.0,
                dt,
                fmt_value,
            )
        )
        self.rows[-1].m_dim = T * H / Hkv

    def _flash(
        self, a, *, H, Hkv, dqk, dv, pairs, keys, q_read, k_read, v_read, o_write, mm, sm, dt, kv_in_cache, label
    ):
        """FlashAttention: scores, softmax and values in one kernel; no S² score traffic.

        ideal: Q, K, V read once and O written once. tiled (FlashAttention-2): the queries are cut
        into tiles of Br rows that fit the per-SM on-chip memory M (Bc = ⌈M/4d⌉, Br = min(Bc, d),
        in elements); query heads sharing a KV head are packed into the same tiles (GQA-aware);
        every query tile re-reads the K/V it can see (on average pairs/T keys per query under a causal mask).
        """
        T, p = self.T, self.p
        factor = 1.0
        tiles = 1
        if self.o.flash_attention == "tiled":
            sram = (
                self.hw.onchip_bytes_per_sm
                if self.hw is not None and self.hw.onchip_bytes_per_sm
                else DEFAULT_ONCHIP_BYTES
            )
            m_elems = sram / p.a
            bc = math.ceil(m_elems / (4 * dqk))
            br = max(1, min(bc, dqk))
            g = H / Hkv  # query heads per KV head, packed together
            tiles = np.ceil(T * g / br)
            # K/V traffic: each tile reads the keys its queries see; never less than one full read
            factor = np.maximum(1.0, tiles * (pairs / T) / keys)
        kv_traffic = (k_read + v_read) * factor
        by_act = q_read + o_write + (0.0 if kv_in_cache else kv_traffic)
        by_kv = kv_traffic if kv_in_cache else 0.0

        def fmt():
            ff = (
                f"scores 2·B·H·d·pairs + softmax {SOFTMAX_FLOPS}·B·H·pairs + values 2·B·H·d_v·pairs = "
                f"{_n(mm + sm)}  (pairs per head = {_n(pairs)}{label})"
            )
            how = (
                "K, V read once"
                if self.o.flash_attention == "ideal"
                else f"K, V re-read by {tiles} query tile(s) (×{_n(factor)})"
            )
            bf = f"Q + O + K + V, no score matrix ({how}) = {_n(q_read)} + {_n(o_write)} + {_n(kv_traffic)}"
            return ff, bf

        self.rows.append(
            Row("flash_attention", self._lt, self._count, "attention", mm + sm, mm, 0.0, by_act, by_kv, dt, fmt)
        )
        self.rows[-1].m_dim = T * H / Hkv

    def mha(self, a: AttentionSpec):
        h, N, p, tp = self.m.hidden_size, self.N, self.p, self.tp
        H, Hkv, d, dv = a.num_heads, a.num_kv_heads, a.head_dim, a.v_head_dim
        Hl, Hkvl = H // tp, kv_heads_per_device(Hkv, tp)
        if a.fused_qkv:
            # one projection to [q | k | v]; its k and v parts go to the KV cache
            r = self.linear(
                "qkv_proj",
                N,
                h,
                H * d + Hkv * (d + dv),
                bias=a.qkv_bias,
                split="col",
                fout_local=Hl * d + Hkvl * (d + dv),
            )
            kv_out = N * Hkvl * (d + dv)
            r.activation_bytes -= kv_out * p.a
            r.kv_bytes += kv_out * p.kv
        else:
            # gated attention (Qwen3-Next): q_proj also yields one gate per output element
            self.linear("q_proj", N, h, H * d * (2 if a.out_gate else 1), bias=a.qkv_bias, split="col")
            if not a.kv_shared:  # a KV-shared layer (Gemma-3n) attends an earlier layer's K and V
                self.linear("k_proj", N, h, Hkv * d, bias=a.qkv_bias, out_kv=True, split="col", fout_local=Hkvl * d)
                self.linear("v_proj", N, h, Hkv * dv, bias=a.qkv_bias, out_kv=True, split="col", fout_local=Hkvl * dv)
        Hkv_new = 0 if a.kv_shared else Hkvl  # KV heads this layer computes (rotary, norms)
        if a.qk_norm == "l2":
            self.elementwise("qk_norm", N * (Hl + Hkvl) * d, L2_FLOPS, what="L2 norm of q and k (no weights)")
        elif a.qk_norm:
            w = (1 if a.kv_shared else 2) * d if a.qk_norm == "head" else (H + Hkv) * d
            r = self.elementwise(
                "qk_norm", N * (Hl + Hkv_new) * d, RMS_FLOPS, weight_elems=w, what="RMSNorm of q and k"
            )
            if a.qk_norm == "full" and tp > 1:
                r.weight_bytes = r.resident = (Hl + Hkvl) * d * p.hp
        if a.v_norm and Hkv_new:
            self.elementwise("v_norm", N * Hkv_new * dv, RMS_FLOPS - 1, what="RMSNorm of v (no weight)")
        if a.rotary_dim:
            self.elementwise(
                "rotary", N * (Hl + Hkv_new) * a.rotary_dim, ROPE_FLOPS, what="rotary embedding of q and k"
            )
        if a.temperature:
            # Llama-4 NoPE layers: q scaled by 1 + attn_scale·log(1 + ⌊(pos + 1)/floor_scale⌋), one multiply
            self.elementwise("attn_temperature", N * Hl * d, 1, what="per-position temperature of q")
        n_before = len(self.rows)
        self.attention_core(a, H=Hl, Hkv=Hkvl, dqk=d, dv=dv, q_bytes=p.a, k_bytes=p.kv, v_bytes=p.kv)
        if a.sinks:
            sm = self.rows[n_before] if self.o.flash_attention != "off" else self.rows[-2]
            sm.params += H  # per-head sink logits join the softmax
            sm.weight_bytes += Hl * p.hp
            sm.resident += Hl * p.hp
            sm.wclass = sm.wclass or "hp"
        if a.out_gate:
            self.elementwise("attn_out_gate", N * Hl * dv, 5, reads=2, what="output·sigmoid(gate)")
        self.linear("o_proj", N, H * dv, h, bias=a.o_bias, split="row")
        self.tp_allreduce("attn_allreduce", N)

    def mla_attention(self, a: AttentionSpec):
        """Multi-head latent attention (DeepSeek-V2/V3)."""
        h, N, B, p, tp = self.m.hidden_size, self.N, self.B, self.p, self.tp
        H, nope, rope, dv, kvl = a.num_heads, a.qk_nope_head_dim, a.qk_rope_head_dim, a.v_head_dim, a.kv_lora_rank
        Hl = H // tp
        dqk = nope + rope
        if a.q_lora_rank:
            self.linear("q_a_proj", N, h, a.q_lora_rank, bias=a.qkv_bias)
            self.norm_rms("q_a_norm", N, a.q_lora_rank)
            self.linear("q_b_proj", N, a.q_lora_rank, H * dqk, split="col")
        else:
            self.linear("q_proj", N, h, H * dqk, split="col")
        # compressed latent c_KV and the shared RoPE key: what the cache holds (replicated under TP)
        self.linear("kv_a_proj", N, h, kvl + rope, bias=a.qkv_bias, out_kv=True)
        self.norm_rms("kv_a_norm", N, kvl)
        self.elementwise(
            "rotary", N * (Hl + 1) * rope, ROPE_FLOPS, what="rotary embedding of q_rope and the shared k_rope"
        )
        _, keys = self._pairs(None)
        absorbed = self.mla == "absorbed" and not self.prefill and self.T == 1
        topk = None
        if a.index_topk:
            if a.index_heads:  # a GLM-5 "shared" layer reuses the previous layer's selection
                self.sparse_indexer(a)
            # serving kernels (FlashMLA sparse) attend the k selected keys; transformers' eager code
            # (mla="naive") masks the others out of a dense score matrix
            topk = a.index_topk if self.mla == "absorbed" else None
        if not absorbed:
            # naive: re-expand every attended latent to per-head K_nope and V through kv_b_proj
            n_lat = B * keys
            r = self.linear("kv_b_proj", n_lat, kvl, H * (nope + dv), in_bytes=p.kv, n_label="B·keys", split="col")
            r.activation_bytes -= n_lat * kvl * p.kv  # its input is the cached latent: a KV-cache read
            r.kv_bytes += n_lat * kvl * p.kv
            self.attention_core(
                a, H=Hl, Hkv=Hl, dqk=dqk, dv=dv, q_bytes=p.a, k_bytes=p.a, v_bytes=p.a, kv_in_cache=False, topk=topk
            )
        else:
            # absorbed: W_UK folded into q, attention runs over the shared latent (MQA-like), W_UV after
            r = self.linear("q_absorb", N, H * nope, kvl, split="col", weight_label="H·nope·kv_lora")
            r.params = H * nope * kvl
            r.weight_bytes = r.resident = Hl * nope * kvl * p.w
            r.matmul_flops = r.flops = 2.0 * N * Hl * nope * kvl  # per-head q_nope·W_UK
            r.activation_bytes = N * Hl * nope * p.a + N * Hl * kvl * p.a
            self.attention_core(
                a,
                H=Hl,
                Hkv=1,
                dqk=kvl + rope,
                dv=kvl,
                q_bytes=p.a,
                k_bytes=p.kv,
                v_bytes=p.kv,
                label=", latent space",
                topk=topk,
            )
            r = self.linear("v_absorb", N, H * kvl, dv, split="col", weight_label="H·kv_lora·d_v")
            r.params = H * kvl * dv
            r.weight_bytes = r.resident = Hl * kvl * dv * p.w
            r.matmul_flops = r.flops = 2.0 * N * Hl * kvl * dv  # per-head latent output·W_UV
            r.activation_bytes = N * Hl * kvl * p.a + N * Hl * dv * p.a
        self.linear("o_proj", N, H * dv, h, bias=a.o_bias, split="row")
        self.tp_allreduce("attn_allreduce", N)

    def sparse_indexer(self, a: AttentionSpec):
        """DeepSeek-V3.2's lightning indexer: scores every cached key, keeps the top-k per query.

        Its projections (wq_b from the q latent, wk, weights_proj), a LayerNorm of its key, rotary on the
        first qk_rope_head_dim dims, ReLU(q·k) over all keys per indexer head, weighted by weights_proj and
        summed over heads (a second product), then a top-k selection. Its key (index_head_dim) is cached.
        Replicated on every TP rank (it is small).
        """
        h, N, B, p = self.m.hidden_size, self.N, self.B, self.p
        Hi, Di, rope = a.index_heads, a.index_head_dim, a.qk_rope_head_dim
        self.linear("indexer_wq_b", N, a.q_lora_rank, Hi * Di)
        self.linear("indexer_wk", N, h, Di, out_kv=True)
        self.elementwise("indexer_k_norm", N * Di, LN_FLOPS, weight_elems=2 * Di, what="LayerNorm of the indexer key")
        self.linear("indexer_weights_proj", N, h, Hi)
        self.elementwise("indexer_rotary", N * (Hi + 1) * rope, ROPE_FLOPS, what="rotary embedding of indexer q and k")
        pairs, keys = self._pairs(None)  # the indexer scores every causal (query, key) pair
        mm = 2.0 * B * Hi * Di * pairs + 2.0 * B * Hi * pairs  # q·k per head, then the weighted sum over heads
        k_read = B * keys * Di * p.kv
        act = B * self.T * Hi * Di * p.a + B * pairs * p.a  # indexer q in, index scores out

        def fmt():
            ff = (
                f"2·B·Hi·Di·pairs + 2·B·Hi·pairs = 2·{_n(B)}·{Hi}·{Di}·{_n(pairs)} + 2·{_n(B)}·{Hi}·{_n(pairs)}"
                "  (ReLU(q·k) per indexer head, weighted sum over heads)"
            )
            bf = f"q B·T·Hi·Di + scores B·pairs + cached keys B·keys·Di·{p.kv:g} B = {_n(act)} + {_n(k_read)}"
            return ff, bf

        self.rows.append(
            Row(
                "indexer_scores",
                self._lt,
                self._count,
                "attention",
                mm + B * Hi * pairs,  # + the ReLU per score
                mm,
                0.0,
                act,
                k_read,
                compute_dtype(p.kv_fmt, p.a_fmt),
                fmt,
            )
        )
        self.rows[-1].m_dim = self.T * Hi
        self.elementwise("indexer_topk", B * pairs, 1, reads=1, writes=0, what="top-k selection over index scores")

    # -- MLP -------------------------------------------------------------------------------
    def dense_mlp(self, mlp: MLPSpec, prefix=""):
        h, N, I, tp = self.m.hidden_size, self.N, mlp.intermediate_size, self.tp
        act = ACT_FLOPS[mlp.act]
        Il = I / tp
        if mlp.gated:
            if mlp.fused_gate_up:
                self.linear(prefix + "gate_up_proj", N, h, 2 * I, bias=mlp.bias, split="col")
            else:
                self.linear(prefix + "gate_proj", N, h, I, bias=mlp.bias, split="col")
                self.linear(prefix + "up_proj", N, h, I, bias=mlp.bias, split="col")
            if mlp.act_sparsity:
                # Gemma-3n: keep gate values above mean + z·std (mean, std, subtract, ReLU per element)
                self.elementwise(prefix + "act_sparsity", N * Il, 5, what="gaussian top-k of the gate")
            self.elementwise(prefix + "act_mul", N * Il, act + 1, reads=2, writes=1, what=f"{mlp.act}(gate)·up")
            self.linear(prefix + "down_proj", N, I, h, bias=mlp.bias, split="row")
        else:
            self.linear(prefix + "fc1", N, h, I, bias=mlp.bias, split="col")
            self.elementwise(prefix + "act", N * Il, act, what=mlp.act)
            self.linear(prefix + "fc2", N, I, h, bias=mlp.bias, split="row")

    def moe_mlp(self, mlp: MLPSpec):
        h, N, I, E, k, p = self.m.hidden_size, self.N, mlp.intermediate_size, mlp.num_experts, mlp.top_k, self.p
        tp, ep = self.tp, self.ep
        Il = I / tp
        # router logits (kept in 16-bit) + softmax/top-k selection, replicated on every device
        r = self.linear("router", N, h, E, bias=mlp.router_bias, hp=True)
        r.flops += SOFTMAX_FLOPS * N * E  # scoring and top-k selection over E logits
        if mlp.router_score_bias:
            # DeepSeek-V3's e_score_correction_bias: read with the router; a buffer, not a
            # parameter, in transformers, so it is left out of the parameter count
            r.weight_bytes += E * p.hp
            r.resident += E * p.hp
        if ep > 1:
            bw, alpha = self._link()
            msg = N * k * h * p.a  # each local token goes to k experts
            self.collective(
                "ep_dispatch",
                all_to_all_s(msg, ep, bw, alpha),
                msg,
                f"all-to-all over EP {ep}: (n−1)/n·M/β + (n−1)·α",
                hops=ep - 1,
            )
        # expected distinct experts the whole batch touches under uniform routing; this device holds E/ep
        n_total = N * ep
        e_eff = E * (1.0 - (1.0 - k / E) ** n_total) / ep
        pairs = N * k  # token–expert assignments served by this device (balanced routing)
        first = "experts_gate_up" if mlp.gated else "experts_up"  # Nemotron-H experts are not gated
        for name, fin, fout, split in ((first, h, (2 if mlp.gated else 1) * I, "col"), ("experts_down", I, h, "row")):
            fin_l = fin / tp if split == "row" else fin
            fout_l = fout / tp if split == "col" else fout
            bias_l = fout_l if mlp.expert_bias else 0.0
            mm = 2.0 * pairs * fin_l * fout_l  # each token runs through k experts
            fl = mm + pairs * bias_l
            per_expert = fin_l * fout_l * p.w + bias_l * p.hp
            wbytes = e_eff * per_expert
            act = pairs * (fin_l + fout_l) * p.a

            def fmt(fin_l=fin_l, fout_l=fout_l, per_expert=per_expert):
                ff = f"2·N·k·in·out = 2·{_n(N)}·{k}·{_n(fin_l)}·{_n(fout_l)}" + (" + bias" if mlp.expert_bias else "")
                bf = (
                    f"streamed experts E·(1−(1−k/E)^N){'/EP' if ep > 1 else ''} = {e_eff:.2f} of {E // ep} resident × "
                    f"{_n(per_expert)} B + tokens N·k·(in+out)·{p.a:g} B = "
                    f"{e_eff:.2f}·{_n(per_expert)} + {_n(pairs * (fin_l + fout_l))}·{p.a:g}"
                )
                return ff, bf

            self.rows.append(
                Row(
                    name,
                    self._lt,
                    self._count,
                    "matmul",
                    fl,
                    mm,
                    wbytes,
                    act,
                    0.0,
                    compute_dtype(p.w_fmt, p.a_fmt),
                    fmt,
                    params=E * (fin * fout + (fout if mlp.expert_bias else 0)),
                    resident=E / ep * per_expert,
                    wclass="expert",
                )
            )
            self.rows[-1].m_dim = pairs / np.maximum(e_eff, 1.0)  # tokens per touched expert
            if name == first:
                g = 1 if mlp.gated else 0  # the gate multiply of a gated expert
                self.elementwise(
                    "experts_act_mul" if g else "experts_act",
                    pairs * Il,
                    ACT_FLOPS[mlp.act] + g,
                    reads=1 + g,
                    writes=1,
                    what=f"{mlp.act}(gate)·up of N·k token–expert pairs"
                    if g
                    else f"{mlp.act} of N·k token–expert pairs",
                )
        if ep > 1:
            bw, alpha = self._link()
            msg = N * k * h * p.a
            self.collective(
                "ep_combine",
                all_to_all_s(msg, ep, bw, alpha),
                msg,
                f"all-to-all over EP {ep}: (n−1)/n·M/β + (n−1)·α",
                hops=ep - 1,
            )
        r = self.elementwise(
            "experts_combine", N * k * h, 2, reads=1, writes=0, what="weighted sum of k expert outputs"
        )
        if not self.o.fused:
            r.activation_bytes += N * h * p.a  # combined output
        if mlp.shared_intermediate_size:
            Is = mlp.shared_intermediate_size
            g = 1 if mlp.gated else 0
            self.linear("shared_gate_up" if g else "shared_up", N, h, (1 + g) * Is, split="col")
            self.elementwise(
                "shared_act_mul" if g else "shared_act",
                N * Is / tp,
                ACT_FLOPS[mlp.act] + g,
                reads=1 + g,
                writes=1,
                what=f"{mlp.act}(gate)·up of the shared expert" if g else f"{mlp.act} of the shared expert",
            )
            self.linear("shared_down", N, Is, h, split="row")
            if mlp.shared_gate:
                self.linear("shared_expert_gate", N, h, 1, hp=True)

    # -- whole model -----------------------------------------------------------------------
    def layer(self, lt: LayerType, count):
        self._lt, self._count = lt.name, count
        h, N = self.m.hidden_size, self.N
        if lt.attention is None and lt.mixer is None:  # an MLP-only block (Nemotron-H "-" / "E")
            self._mlp_block(lt)
            return
        if lt.mixer is not None and lt.attention is None:
            from .ops_recurrent import recurrent_mixer  # recurrent / convolution mixer in place of attention

            self.norm("mixer_norm", N, h)
            recurrent_mixer(self, lt.mixer)
            self.elementwise("mixer_residual", N * h, 1, reads=2, writes=1, what="residual add")
            if lt.mlp is not None:
                self._mlp_block(lt)
            return
        if self.m.gemma3n:
            families_gemma3n.layer_pre(self, lt)
        if lt.pre_norms:
            self.norm("attn_norm", N, h)
        if lt.attention.kind == "mla":
            self.mla_attention(lt.attention)
        else:
            self.mha(lt.attention)
        if lt.mixer is not None:  # Falcon-H1: a recurrent mixer beside attention on the same input; outputs summed
            from .ops_recurrent import recurrent_mixer

            recurrent_mixer(self, lt.mixer)
            self.elementwise("mixer_attn_sum", N * h, 1, reads=2, writes=1, what="attention + mixer outputs")
        if lt.mlp is None:  # an attention-only block (Nemotron-H "*")
            self.elementwise("attn_residual", N * h, 1, reads=2, writes=1, what="residual add")
            return
        if lt.parallel:
            # x + attn(ln(x)) + mlp(ln(x)): the MLP reads the same normed input, or its own norm of x
            # (GPT-NeoX, falcon-40b: x + attn(ln1(x)) + mlp(ln2(x)))
            if lt.norms == 2:
                self.norm("mlp_norm", N, h)
            self.moe_mlp(lt.mlp) if lt.mlp.kind == "moe" else self.dense_mlp(lt.mlp)
            self.tp_allreduce("mlp_allreduce", N)
            self.elementwise("residual", N * h, 2, reads=3, writes=1, what="x + attention + MLP")
            return
        if lt.post_norms:
            self.norm("post_attn_norm", N, h)
        self.elementwise("attn_residual", N * h, 1, reads=2, writes=1, what="residual add")
        if lt.pre_norms:
            self.norm("mlp_norm", N, h)
        if lt.mlp.kind == "moe":
            self.moe_mlp(lt.mlp)
        else:
            self.dense_mlp(lt.mlp)
        self.tp_allreduce("mlp_allreduce", N)
        if lt.post_norms:
            self.norm("post_mlp_norm", N, h)
        self.elementwise("mlp_residual", N * h, 1, reads=2, writes=1, what="residual add")
        if self.m.gemma3n:
            families_gemma3n.layer_post(self, lt)

    def _mlp_block(self, lt: LayerType):
        """Norm, MLP or MoE, residual: the second half of a layer, or a whole MLP-only block."""
        h, N = self.m.hidden_size, self.N
        self.norm("mlp_norm", N, h)
        self.moe_mlp(lt.mlp) if lt.mlp.kind == "moe" else self.dense_mlp(lt.mlp)
        self.tp_allreduce("mlp_allreduce", N)
        self.elementwise("mlp_residual", N * h, 1, reads=2, writes=1, what="residual add")

    def build(self, layer_fraction: float = 1.0) -> list[Row]:
        """All rows of the pass; ``layer_fraction`` < 1 runs that mean share of the layers (early exit)."""
        if getattr(self.m, "traced", None) is not None:  # the traced path: rows from the model's trace
            return self.m.traced.build_rows(self, layer_fraction)
        m, p, N, h, tp = self.m, self.p, self.N, self.m.hidden_size, self.tp
        self._lt, self._count = "model", 1
        # token embedding: a lookup reads N rows of the V × h table (vocab-parallel under TP)
        self.rows.append(
            Row(
                "embed_tokens",
                "model",
                1,
                "lookup",
                0.0,
                0.0,
                N * h * p.hp / tp,
                N * h * p.a,
                0.0,
                "vector",
                lambda: (
                    "0 (table lookup)",
                    f"rows N·h·{p.hp:g} B + output N·h·{p.a:g} B = {_n(N * h)}·{p.hp:g} + {_n(N * h)}·{p.a:g}",
                ),
                params=m.vocab_size * h,
                resident=m.vocab_size * h * p.hp / tp,
                wclass="hp",
            )
        )
        if m.mtp_head:
            # an MTP module shares the target's embedding and head: none of their parameters are its own
            self.rows[-1].params = 0
            self.rows[-1].resident = 0.0
        if tp > 1:
            self.tp_allreduce("embed_allreduce", N)
        if m.mtp_head:
            # DeepSeek-V3 MTP: RMSNorm of the token embedding and of the previous hidden state, then
            # eh_proj maps their concatenation (2h) back to h before the module's decoder block
            self.norm_rms("mtp_enorm", N, h)
            self.norm_rms("mtp_hnorm", N, h)
            self.linear("mtp_eh_proj", N, 2 * h, h)
        if m.embed_scale:
            self.elementwise("embed_scale", N * h, 1, what="multiply by √h")
        if m.embed_norm:
            self.norm("embed_norm", N, h)  # Bloom: word_embeddings_layernorm
        if m.position == "learned":
            r = self.elementwise("embed_positions", N * h, 1, reads=2, writes=1, what="add learned position rows")
            r.params = m.position_rows * h  # the rows read are counted as one of its two inputs
            r.resident = m.position_rows * h * p.hp
            r.wclass = "hp"
        if m.gemma3n:
            families_gemma3n.model_ops(self)
        for lt in m.layer_types:
            self.layer(lt, lt.count * layer_fraction)
        self._lt, self._count = "model", 1
        if m.gemma3n:
            families_gemma3n.model_ops_after(self)
        self.norm("final_norm", N, h)
        nl = self.B * self.logits_tokens
        r = self.linear(
            "lm_head",
            nl,
            h,
            m.vocab_size,
            bias=m.lm_head_bias,
            hp=True,
            n_label="B·positions",
            split="col",
            fout_local=math.ceil(m.vocab_size / tp),
        )
        if m.mtp_head:  # an MTP module runs the target's head: its parameters are the target's
            r.params = 0
            r.resident = 0.0
        elif m.tie_embeddings:
            r.params -= m.vocab_size * h  # tied: the table is counted once, in embed_tokens
            r.resident -= m.vocab_size * h * p.hp / tp
        if tp > 1:
            bw, alpha = self._link()
            msg = nl * m.vocab_size * p.a
            self.collective(
                "logits_allgather",
                all_gather_s(msg, tp, bw, alpha),
                msg,
                f"all-gather of the vocabulary shards over TP {tp}",
                hops=tp - 1,
            )
        if m.final_softcap:
            self.elementwise("logit_softcap", nl * m.vocab_size / tp, SOFTCAP_FLOPS, what="tanh soft-cap of logits")
        if self.o.pp > 1:
            bw, alpha = self._link()
            msg = N * h * p.a  # activations handed to the next stage
            self.collective(
                "pp_send", msg / bw + alpha, msg, f"point-to-point between {self.o.pp} pipeline stages", hops=1
            )
            self.rows[-1].count = self.o.pp - 1
        self._apply_storage()
        return self.rows

    # -- weight storage: sparsity and offloading -------------------------------------------
    def _apply_storage(self):
        o, p = self.o, self.p
        sp = o.sparsity
        if sp is not None:
            for r in self.rows:
                if r.wclass not in ("linear", "expert"):
                    continue
                wb = p.w
                if sp == "2:4":
                    # half the weights kept + a 2-bit index per kept weight (1 bit per original weight)
                    factor = (0.5 * wb + 1 / 8) / wb
                    if self.hw is not None and self.hw.structured_sparsity:
                        r.speedup = 2.0  # sparse tensor cores skip the zeros
                else:
                    # unstructured: the non-zeros + a 1-bit-per-weight bitmask; no compute speed-up
                    factor = ((1.0 - sp) * wb + 1 / 8) / wb
                r.weight_bytes *= factor
                r.resident *= factor
        off = o.offload
        if off:
            fw, fkv, fexp = (
                off.get("weights", 0.0),
                off.get("kv_cache", 0.0),
                off.get("experts", off.get("weights", 0.0)),
            )
            for r in self.rows:
                f = fexp if r.wclass == "expert" else (fw if r.wclass else 0.0)
                if f:
                    r.host_bytes = r.host_bytes + f * r.weight_bytes
                    r.host_resident = f * r.resident
                    r.resident *= 1.0 - f
                if fkv and r.kv_bytes is not None:
                    r.host_bytes = r.host_bytes + fkv * r.kv_bytes
