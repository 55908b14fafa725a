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

Figures and formulas come from one source: each operator collects :class:`~.terms.Terms` (symbol, value
factors per term) and its row's FLOPs and bytes are their sums, so the numbers substituted in the formula
shown always multiply and add to the figure (``engine/terms.py`` documents the API; ``tests/test_formulas.py``
checks every operator). New operators: build a ``Terms`` and append it with ``self._push(...)``, or extend
an existing row with ``row.add_term(...)``; a ``Row(..., formula=closure)`` still works, unchecked.

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

from . import families_gemma3n, families_gemma4
from .models import ACT_FLOPS, AttentionSpec, LayerType, MLPSpec, ModelConfig
from .num import Num
from .options import Options, kv_heads_per_device
from .precision import Precision, compute_dtype
from .terms import FIELDS, Div, Terms, num, product

RMS_FLOPS = 4  # per element: square, sum, multiply by 1/rms, multiply by weight
LN_FLOPS = 7  # per element: mean, subtract, square, sum, multiply by 1/std, weight, bias
SOFTMAX_FLOPS = 5  # per score: max, subtract, exp, sum, divide
SOFTCAP_FLOPS = 3  # per element: divide by cap, tanh, multiply by cap
ROPE_FLOPS = 3  # per rotated element: x·cos + rotate(x)·sin
ALIBI_FLOPS = 1  # per score: add the head's slope × key distance (a precomputed bias)
L2_FLOPS = 3  # per element of a weightless L2 norm (Llama-4 qk norm): square, sum, multiply by 1/norm
TWO = (None, 2.0)  # the 2 of a multiply-accumulate (2 FLOPs), as a term factor
DEFAULT_ONCHIP_BYTES = 64 * 1024  # FlashAttention tile SRAM when a device does not state its per-SM memory


_n = num  # compact number for formulas (kept for operators written with a ``formula=`` closure)


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
        "kv_state",
        "comm_s",
        "comm_bytes",
        "comm_hops",
        "comm_direct_hops",
        "speedup",
        "m_dim",
        "n_dim",
        "terms",
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
        terms=None,
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
        self.kv_state = False  # kv_bytes of a recurrent state (stays in device memory: KV offloading skips it)
        self.comm_s = 0.0  # communication time of a collective (kind "communication")
        self.comm_bytes = 0.0  # bytes a collective moves over the interconnect per device
        self.comm_hops = 0.0  # sequential link steps of a collective (each costs the latency α)
        # the same on a fully connected topology (NVSwitch, xGMI mesh) with the one-/two-shot kernels serving
        # frameworks use for small messages: all-reduce 2 (reduce-scatter + all-gather), others 1
        self.comm_direct_hops = 0.0
        self.speedup = 1.0  # compute-peak multiplier (2:4 sparse tensor cores)
        self.m_dim = None  # rows of the matrix product (tokens), for the calibrated GEMM efficiency
        self.n_dim = None  # output columns of a linear layer on this device (wave quantization)
        self.terms = terms  # engine.terms.Terms the figures were summed from (None: a ``formula`` closure)

    @property
    def flops_formula(self) -> str:
        if self.terms is not None:
            return self.terms.render("flops")
        return self.formula()[0] if self.formula else ""

    @property
    def bytes_formula(self) -> str:
        """Bytes moved (a collective: its message), numbers substituted."""
        if self.terms is not None:
            return self.terms.render("message" if self.kind == "communication" else "bytes")
        return self.formula()[1] if self.formula else ""

    @property
    def time_formula(self) -> str:
        """A collective's α–β time, numbers substituted ("" for other operators)."""
        if self.terms is not None and self.kind == "communication":
            return self.terms.render("time")
        return ""

    def add_term(self, cat: str, label: str, *factors):
        """Add one term (see :mod:`.terms`) to this row's figures and to its formula; returns its value."""
        v = self.terms.add(cat, label, *factors) if self.terms is not None else product(factors)
        for f in FIELDS[cat]:
            setattr(self, f, getattr(self, f) + v)
        return v

    @property
    def bytes(self):
        return self.weight_bytes + self.activation_bytes + self.kv_bytes

    def clone(self, layer_type, count) -> Row:
        """The same operator under another layer type and count (its own copy of the terms)."""
        r = Row.__new__(Row)
        r.name, r.layer_type, r.count, r.kind, r.dtype = self.name, layer_type, count, self.kind, self.dtype
        r.flops, r.matmul_flops, r.weight_bytes = self.flops, self.matmul_flops, self.weight_bytes
        r.activation_bytes, r.kv_bytes, r.formula, r.params = (
            self.activation_bytes,
            self.kv_bytes,
            self.formula,
            self.params,
        )
        r.resident, r.wclass, r.host_bytes, r.host_resident = (
            self.resident,
            self.wclass,
            self.host_bytes,
            self.host_resident,
        )
        r.comm_s, r.comm_bytes, r.comm_hops, r.comm_direct_hops = (
            self.comm_s,
            self.comm_bytes,
            self.comm_hops,
            self.comm_direct_hops,
        )
        r.speedup, r.m_dim, r.n_dim = self.speedup, self.m_dim, self.n_dim
        r.kv_state = self.kv_state
        r.terms = None if self.terms is None else self.terms.copy()
        return r


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


def ring_allreduce_terms(t: Terms, msg_bytes, n, bw, alpha) -> None:
    """Ring all-reduce of ``msg_bytes`` over n devices: 2(n−1)/n·M/β + 2(n−1)·α (time terms)."""
    t.add("time", "bandwidth", TWO, ("(n−1)", n - 1), Div(("n", n)), ("M", msg_bytes), Div(("β", bw)))
    t.add("time", "latency", TWO, ("(n−1)", n - 1), ("α", alpha))


def ring_gather_terms(t: Terms, msg_bytes, n, bw, alpha) -> None:
    """Ring all-gather of an M-byte result, or an all-to-all sending M: (n−1)/n·M/β + (n−1)·α (time terms)."""
    t.add("time", "bandwidth", ("(n−1)", n - 1), Div(("n", n)), ("M", msg_bytes), Div(("β", bw)))
    t.add("time", "latency", ("(n−1)", n - 1), ("α", alpha))


def _seconds(fill, *args):
    t = Terms()
    fill(t, *args)
    return t.total("time")


def ring_allreduce_s(msg_bytes, n, bw, alpha):
    """Ring all-reduce of ``msg_bytes`` over n devices: 2(n−1)/n·M/β + 2(n−1)·α."""
    return _seconds(ring_allreduce_terms, msg_bytes, n, bw, alpha)


def all_gather_s(total_bytes, n, bw, alpha):
    """Ring all-gather of a ``total_bytes`` result: (n−1)/n·M/β + (n−1)·α."""
    return _seconds(ring_gather_terms, total_bytes, n, bw, alpha)


def all_to_all_s(send_bytes, n, bw, alpha):
    """All-to-all where each device sends ``send_bytes``, (n−1)/n of it to peers: (n−1)/n·M/β + (n−1)·α."""
    return _seconds(ring_gather_terms, send_bytes, n, bw, alpha)


class PassBuilder:
    """Collects the operator rows of one forward pass of ``tokens`` new tokens per sequence."""

    def __init__(
        self,
        model: ModelConfig,
        prec: Precision,
        *,
        batch: Num,
        tokens: Num,
        cached: Num,
        logits_tokens: Num,
        attention: str,
        mla: str,
        options: Options | None = None,
        hardware=None,
        reuse: dict | None = None,
    ):
        """``reuse``: a dict shared by passes that differ only in ``cached`` (a decode step and the decode steps of a
        generation): the rows that do not depend on the cached length — MLP / MoE blocks and whole attention-free
        layers (recurrent mixers, MLP-only blocks) — are built by the first pass and copied by the others."""
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
        self._reuse = reuse
        # MLPSpec → the rows built for it in this pass (see _mlp); shared with the passes of ``reuse``
        self._mlp_memo: dict = {} if reuse is None else reuse.setdefault("mlp", {})
        self._bfactors: dict = {}
        # bytes-per-element factors of terms: ("2 B", 2.0)
        self._fa, self._fw, self._fhp, self._fkv = (self._b(x) for x in (prec.a, prec.w, prec.hp, prec.kv))

    def _b(self, x):
        """A bytes-per-element factor of a term: ("2 B", 2.0)."""
        f = self._bfactors.get(x)
        if f is None:
            f = self._bfactors[x] = (f"{x:g} B", x)
        return f

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
        in_kv=False,
        kv_features=None,
    ):
        """A product of ``n_tok`` token vectors with a ``fin × fout`` weight (global shape).

        ``split``: "col" shards the output features over the TP group, "row" the input features
        (its bias is added once, replicated); ``fout_local`` overrides the local width (KV heads
        replicated when TP exceeds them). ``out_kv``: the whole output goes to the KV cache;
        ``kv_features``: that many of the local output features do (a fused q|k|v projection);
        ``in_kv``: the input is read from the KV cache (an MLA latent).
        """
        p, tp = self.p, self.tp
        fin_l = fin / tp if split == "row" else fin
        fout_l = fout_local if fout_local is not None else (fout / tp if split == "col" else fout)
        wb = p.hp if hp else p.w
        ib = p.a if in_bytes is None else in_bytes
        t = Terms()
        t.add("matmul", "", TWO, (n_label, n_tok), ("in", fin_l), ("out", fout_l))  # one multiply + one add per weight
        if bias:
            t.add("flops", "bias", (n_label, n_tok), ("out", fout_l))  # bias add per output
        if weight_label:
            t.add("weight", "weights", (weight_label, fin_l * fout_l), self._b(wb))
        else:
            t.add("weight", "weights", ("in", fin_l), ("out", fout_l), self._b(wb))
        if bias:
            t.add("weight", "bias", ("out", fout_l), self._fhp)
        t.add(
            "kv" if in_kv else "activation",
            "input (KV cache)" if in_kv else "input",
            (n_label, n_tok),
            ("in", fin_l),
            self._b(ib),
        )
        if out_kv:
            t.add("kv", "output (to KV cache)", (n_label, n_tok), ("out", fout_l), self._fkv)
        elif kv_features:
            t.add("activation", "output q", (n_label, n_tok), ("out−kv", fout_l - kv_features), self._fa)
            t.add("kv", "output k, v (to KV cache)", (n_label, n_tok), ("kv", kv_features), self._fkv)
        else:
            t.add("activation", "output", (n_label, n_tok), ("out", fout_l), self._fa)
        if tp > 1 and split:
            t.note("flops", f"per device: {'out' if split == 'col' else 'in'} / TP {tp}")
        dt = compute_dtype(p.hp_fmt if hp else p.w_fmt, p.a_fmt)
        params = fin * fout + (fout if bias else 0)
        r = self._push(name, "matmul", t, dt, params=params, wclass=wclass or ("hp" if hp else "linear"))
        r.m_dim = n_tok
        r.n_dim = fout_l
        return r

    def _push(self, name, kind, t: Terms, dtype, **kw) -> Row:
        """Append a row whose figures are the sums of the terms ``t`` (see :mod:`.terms`)."""
        s = t.totals()
        r = Row(
            name,
            self._lt,
            self._count,
            kind,
            s["matmul"] + s["flops"],
            s["matmul"],
            s["weight"],
            s["activation"],
            s["kv"],
            dtype,
            terms=t,
            **kw,
        )
        r.comm_s = s["time"]
        r.comm_bytes = s["message"]
        self.rows.append(r)
        return r

    def elementwise(self, name, n_elems, flops_per, *, reads=1, writes=1, weight_elems=0, what=""):
        """An element-wise operator over ``n_elems`` elements (norms, activations, adds, softmax)."""
        t = Terms()
        t.add("flops", "", (None, flops_per), ("elements", n_elems))
        if what:
            t.note("flops", what)
        if self.o.fused:  # fused into a neighbour: no traffic of its own
            t.note("bytes", "fused into the neighbouring operator: its tensors stay on chip")
        else:
            rw = reads + writes
            t.add("activation", "", ("elements", n_elems), (f"({reads} read + {writes} write)", rw), self._fa)
        if weight_elems:
            t.add("weight", "weights", (None, weight_elems), self._fhp)
        return self._push(name, "elementwise", t, "vector", params=weight_elems, wclass="hp" if weight_elems else None)

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

    def collective(self, name, seconds, msg_bytes, what, hops=0, direct_hops=1, *, terms: Terms | None = None):
        """A communication operator: no FLOPs; ``msg_bytes`` cross the interconnect in ``seconds``.

        ``terms``: its "message" and "time" terms (then ``seconds``/``msg_bytes`` are their sums and the
        formulas show them with numbers); without, ``what`` describes it.
        """
        if terms is not None:
            terms.note("flops", "data movement only")
            terms.note("time", what)
            r = self._push(name, "communication", terms, "link")
            r.comm_hops = hops  # of ``seconds``, hops · α is latency, the rest bytes over the bus bandwidth
            r.comm_direct_hops = direct_hops
            return r
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

    def _message(self, label, *factors) -> tuple[Terms, float]:
        """The terms of a collective's message, and its bytes."""
        t = Terms()
        return t, t.add("message", label, *factors)

    def tp_allreduce(self, name, n_tok):
        if self.tp > 1:
            bw, alpha = self._link()
            # the layer output, every device holds a partial sum
            t, msg = self._message("layer output", ("N", n_tok), ("h", self.m.hidden_size), self._fa)
            ring_allreduce_terms(t, msg, self.tp, bw, alpha)
            self.collective(
                name,
                t.total("time"),
                msg,
                f"ring all-reduce over TP {self.tp}",
                hops=2 * (self.tp - 1),
                direct_hops=2,
                terms=t,
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
        kv_cat = "kv" if kv_in_cache else "activation"
        q_f = (("B", B), ("T", T), ("H", H), ("d", dqk), self._b(q_bytes))
        k_f = (("B", B), ("Hkv", Hkv), ("keys", keys), ("d", dqk), self._b(k_bytes))
        v_f = (("B", B), ("Hkv", Hkv), ("keys", keys), ("d_v", dv), self._b(v_bytes))
        o_f = (("B", B), ("T", T), ("H", H), ("d_v", dv), self._fa)
        pairs_note = f"pairs = query–key pairs per head{label}"
        if self.o.flash_attention != "off":
            self._flash(
                a,
                H=H,
                Hkv=Hkv,
                dqk=dqk,
                dv=dv,
                pairs=pairs,
                keys=keys,
                io=(q_f, k_f, v_f, o_f),
                sm_per=sm_per,
                dt=dt,
                kv_cat=kv_cat,
                note=pairs_note,
            )
            return
        s_f = (("B", B), ("H", H), ("pairs", pairs), self._fa)
        t = Terms()
        t.add("matmul", "scores", TWO, ("B", B), ("H", H), ("d", dqk), ("pairs", pairs))  # 2·d FLOPs per pair per head
        t.note("flops", pairs_note)
        t.add("activation", "Q", *q_f)
        t.add(kv_cat, "K", *k_f)
        t.add("activation", "scores", *s_f)
        r = self._push("attn_score", "attention", t, dt)
        r.m_dim = T * H / Hkv  # queries sharing a KV head form the rows of the product
        self.elementwise(
            "attn_softmax",
            B * H * pairs,
            sm_per,
            what="softmax" + (" + tanh soft-cap" if a.softcap else "") + (" + ALiBi bias add" if a.alibi else ""),
        )
        t = Terms()
        t.add("matmul", "values", TWO, ("B", B), ("H", H), ("d_v", dv), ("pairs", pairs))  # 2·d_v per pair per head
        t.note("flops", pairs_note)
        t.add("activation", "P", *s_f)
        t.add(kv_cat, "V", *v_f)
        t.add("activation", "O", *o_f)
        r = self._push("attn_value", "attention", t, dt)
        r.m_dim = T * H / Hkv

    def _flash(self, a, *, H, Hkv, dqk, dv, pairs, keys, io, sm_per, dt, kv_cat, note):
        """FlashAttention: scores, softmax and values in one kernel; no S² score traffic.

        ideal: Q, K, V read once and O written once. tiled (FlashAttention-2): the queries are cut
        into tiles of Br rows that fit the per-SM on-chip memory M (Bc = ⌈M/4d⌉, Br = min(Bc, d),
        in elements); query heads sharing a KV head are packed into the same tiles (GQA-aware);
        every query tile re-reads the K/V it can see (on average pairs/T keys per query under a causal mask).
        ``io``: the factors of Q, K, V and O (bytes).
        """
        T, p, B = self.T, self.p, self.B
        q_f, k_f, v_f, o_f = io
        t = Terms()
        t.add("matmul", "scores", TWO, ("B", B), ("H", H), ("d", dqk), ("pairs", pairs))
        t.add("matmul", "values", TWO, ("B", B), ("H", H), ("d_v", dv), ("pairs", pairs))
        # softmax (+ soft-cap) (+ ALiBi bias) per score
        parts = [SOFTMAX_FLOPS] + [SOFTCAP_FLOPS] * bool(a.softcap) + [ALIBI_FLOPS] * bool(a.alibi)
        sm_sym = f"({'+'.join(map(str, parts))})" if len(parts) > 1 else str(sm_per)
        t.add("flops", "softmax", (sm_sym, sm_per), ("B", B), ("H", H), ("pairs", pairs))
        t.note("flops", note)
        t.add("activation", "Q", *q_f)
        t.add("activation", "O", *o_f)
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
            t.add(kv_cat, "K", *k_f, ("re-reads", factor))
            t.add(kv_cat, "V", *v_f, ("re-reads", factor))
            t.note("bytes", f"no score matrix; K, V re-read by {_n(tiles)} query tile(s) of {br} rows")
        else:
            t.add(kv_cat, "K", *k_f)
            t.add(kv_cat, "V", *v_f)
            t.note("bytes", "no score matrix; K, V read once")
        r = self._push("flash_attention", "attention", t, dt)
        r.m_dim = T * H / Hkv

    def mha(self, a: AttentionSpec):
        h, N, p, tp = self.m.hidden_size, self.N, self.p, self.tp
        H, Hkv, d, dv = a.num_heads, a.num_kv_heads, a.head_dim, a.v_head_dim
        Hl, Hkvl = H // tp, kv_heads_per_device(Hkv, tp)
        if a.fused_qkv:
            # one projection to [q | k | v]; its k and v parts go to the KV cache
            self.linear(
                "qkv_proj",
                N,
                h,
                H * d + Hkv * (d + dv),
                bias=a.qkv_bias,
                split="col",
                fout_local=Hl * d + Hkvl * (d + dv),
                kv_features=Hkvl * (d + dv),
            )
        else:
            # gated attention (Qwen3-Next): q_proj also yields one gate per output element
            self.linear("q_proj", N, h, H * d * (2 if a.out_gate else 1), bias=a.qkv_bias, split="col")
            if not a.kv_shared:  # a KV-shared layer (Gemma-3n) attends an earlier layer's K and V
                self.linear("k_proj", N, h, Hkv * d, bias=a.qkv_bias, out_kv=True, split="col", fout_local=Hkvl * d)
                if not a.k_eq_v:  # Gemma-4 attention_k_eq_v: the k projection's output is the value too
                    self.linear(
                        "v_proj", N, h, Hkv * dv, bias=a.qkv_bias, out_kv=True, split="col", fout_local=Hkvl * dv
                    )
        Hkv_new = 0 if a.kv_shared else Hkvl  # KV heads this layer computes (rotary, norms)
        if a.qk_norm == "l2":
            self.elementwise("qk_norm", N * (Hl + Hkvl) * d, L2_FLOPS, what="L2 norm of q and k (no weights)")
        elif a.qk_norm:
            w = (1 if a.kv_shared else 2) * d if a.qk_norm == "head" else (H + Hkv) * d
            # per-head norms are replicated; a full-width norm's weights are sharded with the heads
            w_local = w if a.qk_norm == "head" else (Hl + Hkvl) * d
            r = self.elementwise(
                "qk_norm", N * (Hl + Hkv_new) * d, RMS_FLOPS, weight_elems=w_local, what="RMSNorm of q and k"
            )
            r.params = w
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
            sm.add_term("weight", "sink logits", ("H", Hl), self._fhp)
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
            # its input is the cached latent: a KV-cache read
            self.linear(
                "kv_b_proj", n_lat, kvl, H * (nope + dv), in_bytes=p.kv, in_kv=True, n_label="B·keys", split="col"
            )
            self.attention_core(
                a, H=Hl, Hkv=Hl, dqk=dqk, dv=dv, q_bytes=p.a, k_bytes=p.a, v_bytes=p.a, kv_in_cache=False, topk=topk
            )
        else:
            # absorbed: W_UK folded into q, attention runs over the shared latent (MQA-like), W_UV after
            self._absorbed("q_absorb", Hl, H, ("nope", nope), ("kv_lora", kvl), "W_UK")  # per-head q_nope·W_UK
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
            self._absorbed("v_absorb", Hl, H, ("kv_lora", kvl), ("d_v", dv), "W_UV")  # per-head latent output·W_UV
        self.linear("o_proj", N, H * dv, h, bias=a.o_bias, split="row")
        self.tp_allreduce("attn_allreduce", N)

    def _absorbed(self, name, Hl, H, fin, fout, wname):
        """A per-head product of N token vectors with H small ``fin × fout`` matrices (MLA's absorbed weights)."""
        N, p, tp = self.N, self.p, self.tp
        t = Terms()
        t.add("matmul", "", TWO, ("N", N), ("H", Hl), fin, fout)  # 2·fin·fout per token per head
        t.add("weight", wname, ("H", Hl), fin, fout, self._fw)
        t.add("activation", "input", ("N", N), ("H", Hl), fin, self._fa)
        t.add("activation", "output", ("N", N), ("H", Hl), fout, self._fa)
        if tp > 1:
            t.note("flops", f"per device: H / TP {tp}")
        r = self._push(name, "matmul", t, compute_dtype(p.w_fmt, p.a_fmt), params=H * fin[1] * fout[1], wclass="linear")
        r.m_dim = N
        return r

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
        t = Terms()
        t.add("matmul", "q·k", TWO, ("B", B), ("Hi", Hi), ("Di", Di), ("pairs", pairs))  # q·k per indexer head
        t.add("matmul", "head weights", TWO, ("B", B), ("Hi", Hi), ("pairs", pairs))  # weighted sum over heads
        t.add("flops", "ReLU", ("B", B), ("Hi", Hi), ("pairs", pairs))  # one per score
        t.note("flops", "ReLU(q·k) per indexer head, weighted sum over heads")
        t.add("activation", "q", ("B", B), ("T", self.T), ("Hi", Hi), ("Di", Di), self._fa)  # indexer q in
        t.add("activation", "index scores", ("B", B), ("pairs", pairs), self._fa)  # index scores out
        t.add("kv", "cached keys", ("B", B), ("keys", keys), ("Di", Di), self._fkv)
        r = self._push("indexer_scores", "attention", t, compute_dtype(p.kv_fmt, p.a_fmt))
        r.m_dim = self.T * Hi
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
        r.add_term(
            "flops", "softmax + top-k", (None, SOFTMAX_FLOPS), ("N", N), ("E", E)
        )  # scoring and top-k over E logits
        if mlp.router_score_bias:
            # DeepSeek-V3's e_score_correction_bias: read with the router; a buffer, not a
            # parameter, in transformers, so it is left out of the parameter count
            r.add_term("weight", "score bias", ("E", E), self._fhp)
            r.resident += E * p.hp
        a_f = self._fa
        hid = h  # the hidden size, for the shared expert
        if mlp.latent_size:
            # latent MoE: the hidden state projected down to L before the routed experts (and back after them);
            # the experts' inputs and outputs, and the tokens EP sends, are L wide
            self.linear("moe_latent_in", N, h, mlp.latent_size, bias=mlp.bias)
            h = mlp.latent_size
        if ep > 1:
            bw, alpha = self._link()
            # each token goes to k experts
            t, msg = self._message("tokens to experts", ("N", N), ("k", k), ("h", h), a_f)
            ring_gather_terms(t, msg, ep, bw, alpha)
            self.collective("ep_dispatch", t.total("time"), msg, f"all-to-all over EP {ep}", hops=ep - 1, terms=t)
        # expected distinct experts the whole batch touches under uniform routing; this device holds E/ep
        n_total = N * ep
        e_eff = E * (1.0 - (1.0 - k / E) ** n_total) / ep
        e_sym = "E·(1−(1−k/E)^(N·EP))/EP" if ep > 1 else "E·(1−(1−k/E)^N)"
        pairs = N * k  # token–expert assignments served by this device (balanced routing)
        first = "experts_gate_up" if mlp.gated else "experts_up"  # Nemotron-H experts are not gated
        for name, fin, fout, split in ((first, h, (2 if mlp.gated else 1) * I, "col"), ("experts_down", I, h, "row")):
            fin_l = fin / tp if split == "row" else fin
            fout_l = fout / tp if split == "col" else fout
            bias_l = fout_l if mlp.expert_bias else 0.0
            t = Terms()
            t.add("matmul", "", TWO, ("N", N), ("k", k), ("in", fin_l), ("out", fout_l))  # each token runs k experts
            if mlp.expert_bias:
                t.add("flops", "bias", ("N", N), ("k", k), ("out", fout_l))
            # the experts this pass streams (of E/EP resident), each its in×out weights (+ bias)
            t.add("weight", "streamed experts", (e_sym, e_eff), ("in", fin_l), ("out", fout_l), self._fw)
            if mlp.expert_bias:
                t.add("weight", "their biases", (e_sym, e_eff), ("out", fout_l), self._fhp)
            t.add("activation", "input", ("N", N), ("k", k), ("in", fin_l), a_f)
            t.add("activation", "output", ("N", N), ("k", k), ("out", fout_l), a_f)
            t.note("bytes", f"{_n(e_eff)} of the {_n(E / ep)} resident experts")
            if tp > 1:
                t.note("flops", f"per device: {'out' if split == 'col' else 'in'} / TP {tp}")
            per_expert = fin_l * fout_l * p.w + bias_l * p.hp
            r = self._push(
                name,
                "matmul",
                t,
                compute_dtype(p.w_fmt, p.a_fmt),
                params=E * (fin * fout + (fout if mlp.expert_bias else 0)),
                resident=E / ep * per_expert,
                wclass="expert",
            )
            r.m_dim = pairs / np.maximum(e_eff, 1.0)  # tokens per touched expert
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
            t, msg = self._message("expert outputs back", ("N", N), ("k", k), ("h", h), a_f)
            ring_gather_terms(t, msg, ep, bw, alpha)
            self.collective("ep_combine", t.total("time"), msg, f"all-to-all over EP {ep}", hops=ep - 1, terms=t)
        r = self.elementwise(
            "experts_combine", N * k * h, 2, reads=1, writes=0, what="weighted sum of k expert outputs"
        )
        if not self.o.fused:
            r.add_term("activation", "combined output", ("N", N), ("h", h), a_f)
        if mlp.latent_size:
            self.linear("moe_latent_out", N, h, hid, bias=mlp.bias)  # the combined latent back to the hidden size
            h = hid
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
        if self._reuse is None or lt.attention is not None:
            self._layer(lt)
            return
        # an attention-free layer type: the same rows at every cached length (see ``reuse``)
        self._built_once(self._reuse, ("layer", id(lt)), lambda: self._layer(lt))

    def _built_once(self, memo: dict, key, build) -> None:
        """The rows ``build()`` appends, built the first time ``key`` is seen in ``memo`` and copied under the current
        layer type's name and count after that. Within one pass the rows themselves are kept; when passes share
        ``memo`` (``reuse``), pristine copies (each pass applies its weight storage options to its own rows)."""
        rows = memo.get(key)
        if rows is None:
            start = len(self.rows)
            build()
            new = self.rows[start:]
            memo[key] = new if self._reuse is None else [r.clone(r.layer_type, r.count) for r in new]
        else:
            self.rows.extend(r.clone(self._lt, self._count) for r in rows)

    def _layer(self, lt: LayerType):
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
        attn = lt.attention
        assert attn is not None  # neither an MLP-only block nor a recurrent-only layer (both returned above)
        if lt.pre_norms:
            self.norm("attn_norm", N, h)
        if attn.kind == "mla":
            self.mla_attention(attn)
        else:
            self.mha(attn)
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
            self._mlp(lt.mlp)
            self.tp_allreduce("mlp_allreduce", N)
            self.elementwise("residual", N * h, 2, reads=3, writes=1, what="x + attention + MLP")
            return
        if lt.post_norms:
            self.norm("post_attn_norm", N, h)
        self.elementwise("attn_residual", N * h, 1, reads=2, writes=1, what="residual add")
        if lt.pre_norms:
            self.norm("mlp_norm", N, h)
        self._mlp(lt.mlp)
        self.tp_allreduce("mlp_allreduce", N)
        if lt.post_norms:
            self.norm("post_mlp_norm", N, h)
        self.elementwise("mlp_residual", N * h, 1, reads=2, writes=1, what="residual add")
        if self.m.gemma3n:
            families_gemma3n.layer_post(self, lt)
        if self.m.gemma4:
            families_gemma4.layer_post(self, lt)

    def _mlp(self, mlp: MLPSpec):
        """The MLP or MoE rows of the current layer type. Layer types of one pass with the same MLP spec (a hybrid's
        attention and recurrent layers, sliding and full layers) have the same MLP rows: built once per pass, then
        copied under each layer type's name and count (their figures do not depend on the layer type)."""
        self._built_once(self._mlp_memo, mlp, lambda: self.moe_mlp(mlp) if mlp.kind == "moe" else self.dense_mlp(mlp))

    def _mlp_block(self, lt: LayerType):
        """Norm, MLP or MoE, residual: the second half of a layer, or a whole MLP-only block."""
        h, N = self.m.hidden_size, self.N
        mlp = lt.mlp
        assert mlp is not None  # called only for layers with an MLP or MoE
        self.norm("mlp_norm", N, h)
        self._mlp(mlp)
        self.tp_allreduce("mlp_allreduce", N)
        self.elementwise("mlp_residual", N * h, 1, reads=2, writes=1, what="residual add")

    def build(self, layer_fraction: float = 1.0) -> list[Row]:
        """All rows of the pass; ``layer_fraction`` < 1 runs that mean share of the layers (early exit)."""
        if getattr(self.m, "traced", None) is not None:  # the traced path: rows from the model's trace
            return self.m.traced.build_rows(self, layer_fraction)
        m, p, N, h, tp = self.m, self.p, self.N, self.m.hidden_size, self.tp
        self._lt, self._count = "model", 1
        # token embedding: a lookup reads N rows of the V × h table (vocab-parallel under TP)
        t = Terms()
        t.note("flops", "table lookup, no arithmetic")
        rows_f = (("N", N), ("h", h), self._fhp)
        t.add("weight", "rows", *(rows_f + (Div(("TP", tp)),) if tp > 1 else rows_f))
        t.add("activation", "output", ("N", N), ("h", h), self._fa)
        if tp > 1:
            t.note("bytes", f"vocabulary-parallel: each device reads the rows of its 1/{tp} shard")
        self._push(
            "embed_tokens",
            "lookup",
            t,
            "vector",
            params=m.vocab_size * h,
            resident=m.vocab_size * h * p.hp / tp,
            wclass="hp",
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
        if m.gemma4:
            families_gemma4.model_ops(self)
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
            t, msg = self._message("logits", ("B·positions", nl), ("V", m.vocab_size), self._fa)
            ring_gather_terms(t, msg, tp, bw, alpha)
            self.collective(
                "logits_allgather",
                t.total("time"),
                msg,
                f"all-gather of the vocabulary shards over TP {tp}",
                hops=tp - 1,
                terms=t,
            )
        if m.final_softcap:
            self.elementwise("logit_softcap", nl * m.vocab_size / tp, SOFTCAP_FLOPS, what="tanh soft-cap of logits")
        if self.o.pp > 1:
            bw, alpha = self._link()
            # activations handed to the next stage: M/β + α
            t, msg = self._message("activations", ("N", N), ("h", h), self._fa)
            t.add("time", "bandwidth", ("M", msg), Div(("β", bw)))
            t.add("time", "latency", ("α", alpha))
            self.collective(
                "pp_send",
                t.total("time"),
                msg,
                f"point-to-point between {self.o.pp} pipeline stages",
                hops=1,
                terms=t,
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
                    kind = f"2:4 sparse (0.5·{wb:g} + 1/8)/{wb:g}"
                    if self.hw is not None and self.hw.structured_sparsity:
                        r.speedup = 2.0  # sparse tensor cores skip the zeros
                else:
                    # unstructured: the non-zeros + a 1-bit-per-weight bitmask; no compute speed-up
                    factor = ((1.0 - sp) * wb + 1 / 8) / wb
                    kind = f"bitmask sparse ({1.0 - sp:g}·{wb:g} + 1/8)/{wb:g}"
                if r.terms is not None:
                    r.terms.scale("weight", ("s", factor))
                    r.terms.note("bytes", f"s = {kind} storage per weight byte {_n(factor)}")
                    r.weight_bytes = r.terms.total("weight")
                else:
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
                if fkv and r.kv_bytes is not None and not r.kv_state:
                    r.host_bytes = r.host_bytes + fkv * r.kv_bytes
