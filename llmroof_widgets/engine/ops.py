"""Operators of one forward pass: FLOPs and bytes moved, per layer type.

Conventions (see README "Conventions"):
- A FLOP is one multiply or one add; a multiply-accumulate is 2 FLOPs. A linear layer with
  ``in`` inputs and ``out`` outputs over N tokens costs 2·N·in·out (+ N·out for its bias).
- Every operator reads its inputs from device memory and writes its outputs back (no fusion):
  bytes = weights read + activations read and written + KV-cache elements read and written.
- Element-wise costs per element: RMSNorm 4 (square, sum, scale, weight), LayerNorm 7 (mean,
  subtract, square, sum, scale, weight, bias), softmax 5 (max, subtract, exp, sum, divide; the
  1/√d scale is folded into Q), soft-capping 3 (divide, tanh, multiply), rotary 3 (two
  multiplies and an add), residual add 1, gated activation act+1 (the gate multiply); the
  activation costs are in :data:`models.ACT_FLOPS`.

The builder works on numpy arrays: ``cached`` (the number of tokens already in the KV cache)
may be an array over decode steps, and every FLOP/byte count broadcasts over it — a whole
generation is evaluated without a Python loop per token.
"""
from __future__ import annotations

import numpy as np

from .models import ACT_FLOPS, AttentionSpec, LayerType, MLPSpec, ModelConfig
from .precision import Precision, compute_dtype

RMS_FLOPS = 4  # per element: square, sum, multiply by 1/rms, multiply by weight
LN_FLOPS = 7  # per element: mean, subtract, square, sum, multiply by 1/std, weight, bias
SOFTMAX_FLOPS = 5  # per score: max, subtract, exp, sum, divide
SOFTCAP_FLOPS = 3  # per element: divide by cap, tanh, multiply by cap
ROPE_FLOPS = 3  # per rotated element: x·cos + rotate(x)·sin


def _n(x) -> str:
    """Compact number for formulas."""
    if isinstance(x, np.ndarray):
        return "…"
    x = float(x)
    if x == int(x) and abs(x) < 1e15:
        return f"{int(x):,}".replace(",", " ")
    return f"{x:.4g}"


class Row:
    """One operator of one pass. Figures are for a single execution; the pass runs it ``count`` times."""

    __slots__ = ("name", "layer_type", "count", "kind", "flops", "matmul_flops", "weight_bytes",
                 "activation_bytes", "kv_bytes", "dtype", "formula", "params", "resident")

    def __init__(self, name, layer_type, count, kind, flops, matmul_flops, weight_bytes, activation_bytes,
                 kv_bytes, dtype, formula=None, params=0, resident=None):
        self.name = name
        self.layer_type = layer_type
        self.count = count
        self.kind = kind  # "matmul", "attention", "elementwise", "lookup"
        self.flops = flops
        self.matmul_flops = matmul_flops
        self.weight_bytes = weight_bytes
        self.activation_bytes = activation_bytes
        self.kv_bytes = kv_bytes
        self.dtype = dtype  # compute dtype (key of Hardware.peak_flops) or "vector"
        self.formula = formula  # () → (FLOPs formula, bytes formula), built only when displayed
        self.params = params  # parameters this operator owns (counted once per layer)
        # bytes those parameters occupy in device memory (≠ weight_bytes read when a lookup
        # reads a few rows, or a MoE pass streams only the experts it touches)
        self.resident = weight_bytes if resident is None else resident

    @property
    def flops_formula(self) -> str:
        return self.formula()[0] if self.formula else ""

    @property
    def bytes_formula(self) -> str:
        return self.formula()[1] if self.formula else ""

    @property
    def bytes(self):
        return self.weight_bytes + self.activation_bytes + self.kv_bytes


class PassBuilder:
    """Collects the operator rows of one forward pass of ``tokens`` new tokens per sequence."""

    def __init__(self, model: ModelConfig, prec: Precision, *, batch: int, tokens: int, cached,
                 logits_tokens: int, attention: str, mla: str):
        self.m = model
        self.p = prec
        self.B = batch
        self.T = tokens
        self.c0 = cached  # tokens already cached per sequence (scalar or array)
        self.N = batch * tokens  # new tokens in the pass
        self.logits_tokens = logits_tokens  # positions that get logits (per sequence)
        self.attention = attention
        self.mla = mla
        self.rows: list[Row] = []
        self._lt = "model"
        self._count = 1

    # -- generic operators -----------------------------------------------------------------
    def linear(self, name, n_tok, fin, fout, *, bias=False, wbytes=None, in_bytes=None, out_bytes=None,
               out_kv=False, dtype=None, n_label="N", weight_elems=None, weight_label=None):
        """A matrix product of ``n_tok`` token vectors with an ``fin × fout`` weight matrix."""
        p = self.p
        wb = p.w if wbytes is None else wbytes
        ib = p.a if in_bytes is None else in_bytes
        ob = (p.kv if out_kv else p.a) if out_bytes is None else out_bytes
        welems = fin * fout if weight_elems is None else weight_elems
        mm = 2.0 * n_tok * fin * fout  # one multiply and one add per weight per token
        fl = mm + (n_tok * fout if bias else 0.0)  # bias add per output
        wbytes_total = welems * wb + (fout * p.hp if bias else 0.0)
        act = n_tok * fin * ib + (0.0 if out_kv else n_tok * fout * ob)
        kv = n_tok * fout * ob if out_kv else 0.0
        def fmt():
            ff = f"2·{n_label}·in·out{' + ' + n_label + '·out (bias)' if bias else ''} = 2·{_n(n_tok)}·{_n(fin)}·{_n(fout)}" + (
                f" + {_n(n_tok)}·{_n(fout)}" if bias else "")
            wl = weight_label or "in·out"
            bf = (f"weights {wl}·{wb:g} B{' + bias out·' + format(p.hp, 'g') + ' B' if bias else ''} + input {n_label}·in·{ib:g} B + "
                  f"output {n_label}·out·{ob:g} B{' (to KV cache)' if out_kv else ''} = "
                  f"{_n(welems)}·{wb:g} + {_n(n_tok)}·{_n(fin)}·{ib:g} + {_n(n_tok)}·{_n(fout)}·{ob:g}")
            return ff, bf
        dt = dtype or compute_dtype(p.w_bits if wbytes is None else p.hp_bits, p.a_bits)
        self.rows.append(Row(name, self._lt, self._count, "matmul", fl, mm, wbytes_total, act, kv, dt, fmt,
                             params=welems + (fout if bias else 0)))

    def elementwise(self, name, n_elems, flops_per, *, reads=1, writes=1, weight_elems=0, what=""):
        """An element-wise operator over ``n_elems`` elements (norms, activations, adds, softmax)."""
        p = self.p
        fl = n_elems * flops_per
        act = n_elems * (reads + writes) * p.a
        wbytes = weight_elems * p.hp
        def fmt():
            ff = f"{flops_per}·elements = {flops_per}·{_n(n_elems)}" + (f"  ({what})" if what else "")
            bf = f"read {reads}× + write {writes}× elements·{p.a:g} B" + (
                f" + weights {_n(weight_elems)}·{p.hp:g} B" if weight_elems else "") + f" = ({reads}+{writes})·{_n(n_elems)}·{p.a:g}" + (
                f" + {_n(weight_elems)}·{p.hp:g}" if weight_elems else "")
            return ff, bf
        self.rows.append(Row(name, self._lt, self._count, "elementwise", fl, 0.0, wbytes, act, 0.0, "vector", fmt,
                             params=weight_elems))

    def norm(self, name, rows, width):
        ln = self.m.norm == "ln"
        self.elementwise(name, rows * width, LN_FLOPS if ln else RMS_FLOPS, weight_elems=(2 if ln else 1) * width,
                         what="LayerNorm" if ln else "RMSNorm")

    # -- attention -------------------------------------------------------------------------
    def _pairs(self, window):
        """Query–key pairs per sequence per head, and keys read from the cache per sequence."""
        T, c0 = self.T, self.c0
        total = c0 + T
        if self.attention == "full" and isinstance(c0, (int, float)) and c0 == 0:
            pairs = T * T  # whole score matrix, as eager attention computes it before masking
        elif window is None:
            pairs = T * c0 + T * (T + 1) / 2  # query i attends c0 + i keys (causal)
        else:
            m = np.clip(window - c0, 0, T)  # queries whose span still fits in the window
            pairs = m * c0 + m * (m + 1) / 2 + (T - m) * window
        keys = total if window is None else np.minimum(total, window + T - 1)
        return pairs, keys

    def attention_core(self, a: AttentionSpec, *, H, Hkv, dqk, dv, q_bytes, k_bytes, v_bytes, label="",
                       kv_in_cache=True):
        """Scores Q·Kᵀ, softmax, and scores·V for one layer."""
        B, T = self.B, self.T
        pairs, keys = self._pairs(a.window)
        p = self.p
        kcls = "kv" if kv_in_cache else "act"
        # score matrix: 2·d FLOPs per (query, key) pair per head
        mm = 2.0 * B * H * dqk * pairs
        q_read = B * T * H * dqk * q_bytes
        k_read = B * Hkv * keys * dqk * k_bytes
        s_write = B * H * pairs * p.a
        def fmt_score():
            ff = f"2·B·H·d·pairs = 2·{_n(B)}·{_n(H)}·{_n(dqk)}·{_n(pairs)}  (pairs = query–key pairs per head{label})"
            bf = (f"Q B·T·H·d·{q_bytes:g} + K B·Hkv·keys·d·{k_bytes:g} + scores B·H·pairs·{p.a:g} = "
                  f"{_n(B * T * H * dqk)}·{q_bytes:g} + {_n(B * Hkv * keys * dqk)}·{k_bytes:g} + {_n(B * H * pairs)}·{p.a:g}")
            return ff, bf
        dt = compute_dtype(p.a_bits, p.kv_bits if kv_in_cache else p.a_bits)
        self.rows.append(Row("attn_score", self._lt, self._count, "attention", mm, mm, 0.0,
                             q_read + s_write + (k_read if kcls == "act" else 0.0),
                             k_read if kcls == "kv" else 0.0, dt, fmt_score))
        per = SOFTMAX_FLOPS + (SOFTCAP_FLOPS if a.softcap else 0)
        self.elementwise("attn_softmax", B * H * pairs, per, what="softmax" + (" + tanh soft-cap" if a.softcap else ""))
        mm = 2.0 * B * H * dv * pairs
        p_read = B * H * pairs * p.a
        v_read = B * Hkv * keys * dv * v_bytes
        o_write = B * T * H * dv * p.a
        def fmt_value():
            ff = f"2·B·H·d_v·pairs = 2·{_n(B)}·{_n(H)}·{_n(dv)}·{_n(pairs)}"
            bf = (f"P B·H·pairs·{p.a:g} + V B·Hkv·keys·d_v·{v_bytes:g} + O B·T·H·d_v·{p.a:g} = "
                  f"{_n(B * H * pairs)}·{p.a:g} + {_n(B * Hkv * keys * dv)}·{v_bytes:g} + {_n(B * T * H * dv)}·{p.a:g}")
            return ff, bf
        self.rows.append(Row("attn_value", self._lt, self._count, "attention", mm, mm, 0.0,
                             p_read + o_write + (v_read if kcls == "act" else 0.0),
                             v_read if kcls == "kv" else 0.0, dt, fmt_value))

    def mha(self, a: AttentionSpec):
        h, N = self.m.hidden_size, self.N
        H, Hkv, d, dv = a.num_heads, a.num_kv_heads, a.head_dim, a.v_head_dim
        if a.fused_qkv:
            # one projection to [q | k | v]; its k and v parts go to the KV cache
            fout = H * d + Hkv * (d + dv)
            self.linear("qkv_proj", N, h, fout, bias=a.qkv_bias)
            r = self.rows[-1]
            kv_out = N * Hkv * (d + dv)
            r.activation_bytes -= kv_out * self.p.a
            r.kv_bytes += kv_out * self.p.kv
        else:
            self.linear("q_proj", N, h, H * d, bias=a.qkv_bias)
            self.linear("k_proj", N, h, Hkv * d, bias=a.qkv_bias, out_kv=True)
            self.linear("v_proj", N, h, Hkv * dv, bias=a.qkv_bias, out_kv=True)
        if a.qk_norm:
            w = 2 * d if a.qk_norm == "head" else (H + Hkv) * d
            self.elementwise("qk_norm", N * (H + Hkv) * d, RMS_FLOPS, weight_elems=w, what="RMSNorm of q and k")
        if a.rotary_dim:
            self.elementwise("rotary", N * (H + Hkv) * a.rotary_dim, ROPE_FLOPS, what="rotary embedding of q and k")
        self.attention_core(a, H=H, Hkv=Hkv, dqk=d, dv=dv, q_bytes=self.p.a, k_bytes=self.p.kv, v_bytes=self.p.kv)
        if a.sinks:
            sm = self.rows[-2]  # per-head sink logits join the softmax
            sm.params += H
            sm.weight_bytes += H * self.p.hp
            sm.resident += H * self.p.hp
        self.linear("o_proj", N, H * dv, h, bias=a.o_bias)

    def mla_attention(self, a: AttentionSpec):
        """Multi-head latent attention (DeepSeek-V2/V3)."""
        h, N, B, p = self.m.hidden_size, self.N, self.B, self.p
        H, nope, rope, dv, kvl = a.num_heads, a.qk_nope_head_dim, a.qk_rope_head_dim, a.v_head_dim, a.kv_lora_rank
        dqk = nope + rope
        if a.q_lora_rank:
            self.linear("q_a_proj", N, h, a.q_lora_rank, bias=a.qkv_bias)
            self.norm_rms("q_a_norm", N, a.q_lora_rank)
            self.linear("q_b_proj", N, a.q_lora_rank, H * dqk)
        else:
            self.linear("q_proj", N, h, H * dqk)
        # compressed latent c_KV and the shared RoPE key: what the cache holds
        self.linear("kv_a_proj", N, h, kvl + rope, bias=a.qkv_bias, out_kv=True)
        self.norm_rms("kv_a_norm", N, kvl)
        self.elementwise("rotary", N * (H + 1) * rope, ROPE_FLOPS, what="rotary embedding of q_rope and the shared k_rope")
        _, keys = self._pairs(None)
        absorbed = self.mla == "absorbed" and self.T == 1 and not (isinstance(self.c0, (int, float)) and self.c0 == 0)
        if not absorbed:
            # naive: re-expand every attended latent to per-head K_nope and V through kv_b_proj
            n_lat = B * keys
            self.linear("kv_b_proj", n_lat, kvl, H * (nope + dv), in_bytes=p.kv, n_label="B·keys")
            r = self.rows[-1]  # its input is the cached latent: a KV-cache read
            r.activation_bytes -= n_lat * kvl * p.kv
            r.kv_bytes += n_lat * kvl * p.kv
            self.attention_core(a, H=H, Hkv=H, dqk=dqk, dv=dv, q_bytes=p.a, k_bytes=p.a, v_bytes=p.a,
                                kv_in_cache=False)
        else:
            # absorbed: W_UK folded into q, attention runs over the shared latent (MQA-like), W_UV after
            self.linear("q_absorb", N, H * nope, kvl, weight_elems=H * nope * kvl, weight_label="H·nope·kv_lora")
            r = self.rows[-1]
            r.matmul_flops = r.flops = 2.0 * N * H * nope * kvl  # per-head q_nope·W_UK
            r.activation_bytes = N * H * nope * p.a + N * H * kvl * p.a
            self.attention_core(a, H=H, Hkv=1, dqk=kvl + rope, dv=kvl, q_bytes=p.a, k_bytes=p.kv, v_bytes=p.kv,
                                label=", latent space")
            self.linear("v_absorb", N, H * kvl, dv, weight_elems=H * kvl * dv, weight_label="H·kv_lora·d_v")
            r = self.rows[-1]
            r.matmul_flops = r.flops = 2.0 * N * H * kvl * dv  # per-head latent output·W_UV
            r.activation_bytes = N * H * kvl * p.a + N * H * dv * p.a
        self.linear("o_proj", N, H * dv, h, bias=a.o_bias)

    def norm_rms(self, name, rows, width):
        self.elementwise(name, rows * width, RMS_FLOPS, weight_elems=width, what="RMSNorm")

    # -- MLP -------------------------------------------------------------------------------
    def dense_mlp(self, mlp: MLPSpec, prefix=""):
        h, N, I = self.m.hidden_size, self.N, mlp.intermediate_size
        act = ACT_FLOPS[mlp.act]
        if mlp.gated:
            if mlp.fused_gate_up:
                self.linear(prefix + "gate_up_proj", N, h, 2 * I, bias=mlp.bias)
            else:
                self.linear(prefix + "gate_proj", N, h, I, bias=mlp.bias)
                self.linear(prefix + "up_proj", N, h, I, bias=mlp.bias)
            self.elementwise(prefix + "act_mul", N * I, act + 1, reads=2, writes=1, what=f"{mlp.act}(gate)·up")
            self.linear(prefix + "down_proj", N, I, h, bias=mlp.bias)
        else:
            self.linear(prefix + "fc1", N, h, I, bias=mlp.bias)
            self.elementwise(prefix + "act", N * I, act, what=mlp.act)
            self.linear(prefix + "fc2", N, I, h, bias=mlp.bias)

    def moe_mlp(self, mlp: MLPSpec):
        h, N, I, E, k, p = self.m.hidden_size, self.N, mlp.intermediate_size, mlp.num_experts, mlp.top_k, self.p
        # router logits (kept in 16-bit) + softmax/top-k selection
        self.linear("router", N, h, E, bias=mlp.router_bias, wbytes=p.hp)
        r = self.rows[-1]
        r.flops += SOFTMAX_FLOPS * N * E  # scoring and top-k selection over E logits
        if mlp.router_score_bias:
            # DeepSeek-V3's e_score_correction_bias: read with the router; a buffer, not a
            # parameter, in transformers, so it is left out of the parameter count
            r.weight_bytes += E * p.hp
            r.resident += E * p.hp
        # expected distinct experts the pass touches under uniform routing
        e_eff = E * (1.0 - (1.0 - k / E) ** N)
        pairs = N * k  # token–expert assignments
        for name, fin, fout in (("experts_gate_up", h, 2 * I), ("experts_down", I, h)):
            mm = 2.0 * pairs * fin * fout  # each token runs through k experts
            fl = mm + (pairs * fout if mlp.expert_bias else 0.0)
            wbytes = e_eff * (fin * fout * p.w + (fout * p.hp if mlp.expert_bias else 0.0))
            act = pairs * (fin + fout) * p.a
            def fmt(fin=fin, fout=fout, pairs=pairs):
                ff = f"2·N·k·in·out = 2·{_n(N)}·{k}·{_n(fin)}·{_n(fout)}" + (" + bias" if mlp.expert_bias else "")
                bf = (f"streamed experts E·(1−(1−k/E)^N) = {e_eff:.2f} of {E} × in·out·{p.w:g} B + tokens N·k·(in+out)·{p.a:g} B = "
                      f"{e_eff:.2f}·{_n(fin * fout)}·{p.w:g} + {_n(pairs * (fin + fout))}·{p.a:g}")
                return ff, bf
            self.rows.append(Row(name, self._lt, self._count, "matmul", fl, mm, wbytes, act, 0.0,
                                 compute_dtype(p.w_bits, p.a_bits), fmt,
                                 params=E * (fin * fout + (fout if mlp.expert_bias else 0)),
                                 resident=E * (fin * fout * p.w + (fout * p.hp if mlp.expert_bias else 0.0))))
            if name == "experts_gate_up":
                self.elementwise("experts_act_mul", pairs * I, ACT_FLOPS[mlp.act] + 1, reads=2, writes=1,
                                 what=f"{mlp.act}(gate)·up of N·k token–expert pairs")
        self.elementwise("experts_combine", N * k * h, 2, reads=1, writes=0, what="weighted sum of k expert outputs")
        self.rows[-1].activation_bytes += N * h * p.a  # combined output
        if mlp.shared_intermediate_size:
            Is = mlp.shared_intermediate_size
            self.linear("shared_gate_up", N, h, 2 * Is)
            self.elementwise("shared_act_mul", N * Is, ACT_FLOPS[mlp.act] + 1, reads=2, writes=1,
                             what=f"{mlp.act}(gate)·up of the shared expert")
            self.linear("shared_down", N, Is, h)
            if mlp.shared_gate:
                self.linear("shared_expert_gate", N, h, 1, wbytes=p.hp)

    # -- whole model -----------------------------------------------------------------------
    def layer(self, lt: LayerType):
        self._lt, self._count = lt.name, lt.count
        h, N = self.m.hidden_size, self.N
        self.norm("attn_norm", N, h)
        if lt.attention.kind == "mla":
            self.mla_attention(lt.attention)
        else:
            self.mha(lt.attention)
        if lt.parallel:
            # x + attn(ln(x)) + mlp(ln(x)): the MLP reads the same normed input
            if lt.mlp.kind == "moe":
                self.moe_mlp(lt.mlp)
            else:
                self.dense_mlp(lt.mlp)
            self.elementwise("residual", N * h, 2, reads=3, writes=1, what="x + attention + MLP")
            return
        if lt.post_norms:
            self.norm("post_attn_norm", N, h)
        self.elementwise("attn_residual", N * h, 1, reads=2, writes=1, what="residual add")
        self.norm("mlp_norm", N, h)
        if lt.mlp.kind == "moe":
            self.moe_mlp(lt.mlp)
        else:
            self.dense_mlp(lt.mlp)
        if lt.post_norms:
            self.norm("post_mlp_norm", N, h)
        self.elementwise("mlp_residual", N * h, 1, reads=2, writes=1, what="residual add")

    def build(self) -> list[Row]:
        m, p, N, h = self.m, self.p, self.N, self.m.hidden_size
        self._lt, self._count = "model", 1
        # token embedding: a lookup reads N rows of the V × h table
        self.rows.append(Row("embed_tokens", "model", 1, "lookup", 0.0, 0.0, N * h * p.hp, N * h * p.a, 0.0, "vector",
                             lambda: ("0 (table lookup)",
                                      f"rows N·h·{p.hp:g} B + output N·h·{p.a:g} B = {_n(N * h)}·{p.hp:g} + {_n(N * h)}·{p.a:g}"),
                             params=m.vocab_size * h, resident=m.vocab_size * h * p.hp))
        if m.embed_scale:
            self.elementwise("embed_scale", N * h, 1, what="multiply by √h")
        if m.position == "learned":
            self.elementwise("embed_positions", N * h, 1, reads=2, writes=1, what="add learned position rows")
            r = self.rows[-1]
            r.params = m.position_rows * h  # the rows read are counted as one of its two inputs
            r.resident = m.position_rows * h * p.hp
        for lt in m.layer_types:
            self.layer(lt)
        self._lt, self._count = "model", 1
        self.norm("final_norm", N, h)
        nl = self.B * self.logits_tokens
        self.linear("lm_head", nl, h, m.vocab_size, bias=m.lm_head_bias, wbytes=p.hp, n_label="B·positions")
        if m.tie_embeddings:
            r = self.rows[-1]  # tied: the table is counted once, in embed_tokens
            r.params -= m.vocab_size * h
            r.resident -= m.vocab_size * h * p.hp
        if m.final_softcap:
            self.elementwise("logit_softcap", nl * m.vocab_size, SOFTCAP_FLOPS, what="tanh soft-cap of logits")
        return self.rows
