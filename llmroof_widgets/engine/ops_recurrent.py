"""Operators of recurrent and convolution token mixers: Mamba, Mamba2, Gated DeltaNet, LFM2 short convolution.

Every mixer reads its input through projections, runs a depthwise causal convolution of K taps, and (but the
short convolution) a linear-time scan that carries a fixed-size state per sequence:

- prefill (or any pass of more than one new token) runs the *chunked* scan: the sequence is cut into chunks of
  C tokens; inside a chunk the mixer is a small masked attention (C × C products), across chunks the state is
  carried by products with the state matrix. Its FLOPs grow linearly with the length (C is a constant).
- decode runs one *recurrent step* per token: the state is read, decayed, updated with the token and written
  back; the step costs the same at every context length (a flat line in the decode timeline).

FLOPs of the scans follow the algorithms transformers runs (``torch_chunk_gated_delta_rule``, ``mamba2_chunk_scan``,
``mamba_selective_scan``), which are also what the fused kernels (FLA, mamba_ssm) compute: ``matmul_flops`` holds
their matrix products, the element-wise parts (decays, discretisation, the state update of a decode step, the
triangular solves) are in ``flops`` only. The state bytes are KV-class traffic (``kv_bytes``): the per-sequence
cache of the layer. Tensor parallelism shards heads (and the convolution channels with them).
"""

from __future__ import annotations

import numpy as np

from .families_hybrid import RecurrentSpec
from .models import ACT_FLOPS
from .ops import RMS_FLOPS, PassBuilder, Row, _n
from .precision import compute_dtype

SIGMOID_FLOPS = 4  # neg, exp, add, divide
SOFTPLUS_FLOPS = 3  # exp, add, log


def _is_step(pb: PassBuilder) -> bool:
    """One new token after a cached context: the recurrent step (else the chunked scan; ``T`` may be an array)."""
    return not pb.prefill and np.ndim(pb.T) == 0 and pb.T == 1


def _padded(T, C):
    """T rounded up to whole chunks of C (T may be an array of prompt lengths)."""
    return np.ceil(np.asarray(T, dtype=np.float64) / C) * C


def _shard(pb: PassBuilder, r: RecurrentSpec) -> float:
    """Share of the mixer's heads (and channels) on one tensor-parallel device."""
    return 1.0 / pb.tp


def causal_conv(pb: PassBuilder, r: RecurrentSpec):
    """Depthwise causal convolution of K taps over ``conv_dim`` channels; it keeps the last K inputs per sequence.

    Its activation (SiLU for the SSM mixers) runs inside the same kernel (causal_conv1d's ``activation=``).
    """
    p, f = pb.p, _shard(pb, r)
    N, B, K = pb.N, pb.B, r.conv_kernel
    ch = r.conv_dim * f
    mm = 2.0 * N * ch * K  # one multiply and one add per tap per channel per token
    act_fl = ACT_FLOPS[r.act] if r.act else 0
    fl = mm + (N * ch if r.conv_bias else 0.0) + N * ch * act_fl  # + bias add + fused activation
    wbytes = ch * (K + (1 if r.conv_bias else 0)) * p.hp
    act = N * ch * p.a * 2  # input read, output written
    step = _is_step(pb)
    # the state: a decode step reads the K cached inputs and writes them back shifted; a prefill writes them
    state = B * ch * K * p.a * (2 if step else 1)

    def fmt():
        ff = (
            f"2·N·channels·K{' + N·channels (bias)' if r.conv_bias else ''}"
            + (f" + {act_fl}·N·channels ({r.act}, fused)" if act_fl else "")
            + f" = 2·{_n(N)}·{_n(ch)}·{K} + …"
        )
        bf = (
            f"weights channels·K·{p.hp:g} B + input and output N·channels·{p.a:g} B ×2 + "
            f"state B·channels·K·{p.a:g} B ×{2 if step else 1} = {_n(wbytes)} + {_n(act)} + {_n(state)}"
        )
        return ff, bf

    row = Row(
        "conv1d",
        pb._lt,
        pb._count,
        "elementwise",
        fl,
        0.0,
        wbytes,
        act,
        state,
        "vector",
        fmt,
        params=r.conv_dim * (K + (1 if r.conv_bias else 0)),
        wclass="hp",
    )
    pb.rows.append(row)
    return row


def _scan_row(pb: PassBuilder, name, flops, mm, act_bytes, state_bytes, formula, m_dim):
    p = pb.p
    row = Row(
        name,
        pb._lt,
        pb._count,
        "attention",
        flops,
        mm,
        0.0,
        act_bytes,
        state_bytes,
        compute_dtype(p.a_fmt, p.a_fmt),
        formula,
    )
    row.m_dim = m_dim
    pb.rows.append(row)
    return row


def _params_row(row: Row, params: float):
    """An element-wise operator that owns replicated / sharded small parameters: count the global ones."""
    row.params = params
    return row


def gated_deltanet(pb: PassBuilder, r: RecurrentSpec):
    """Gated DeltaNet (Qwen3-Next, Qwen3.5): q, k, v, z, β and the decay from the input; a delta-rule state."""
    h, N, B, T, p, tp = pb.m.hidden_size, pb.N, pb.B, pb.T, pb.p, pb.tp
    Hv, Hk, dk, dv, C = r.num_heads, r.n_groups, r.key_head_dim, r.head_dim, r.chunk_size
    Hvl, Hkl = Hv / tp, Hk / tp
    # q, k, v, the output gate z, and β, a per value head (transformers: in_proj_qkvz + in_proj_ba; Qwen3.5 splits
    # them in four): one product with the concatenated weights
    pb.linear("in_proj", N, h, 2 * Hk * dk + 2 * Hv * dv + 2 * Hv, bias=r.proj_bias, split="col")
    causal_conv(pb, r)
    l2 = N * 2 * Hkl * dk * RMS_FLOPS  # L2 normalisation of q and k, inside the scan kernel (use_qk_l2norm_in_kernel)
    g = pb.elementwise(
        "gates",
        N * Hvl,
        SIGMOID_FLOPS + SOFTPLUS_FLOPS + 3,
        reads=2,
        writes=2,
        weight_elems=2 * Hvl,
        what="β = sigmoid(b); decay g = −exp(A_log)·softplus(a + dt_bias)",
    )
    _params_row(g, 2 * Hv)  # A_log and dt_bias, one per value head
    sb = r.state_bytes
    state = B * Hvl * dk * dv * sb
    io = N * (2 * Hkl * dk + Hvl * dv + 2 * Hvl) * p.a + N * Hvl * dv * p.a  # q, k, v, β, g in; o out
    if _is_step(pb):
        # one delta-rule step per value head: S ← g·S; S += k ⊗ β(v − Sᵀk); o = Sᵀq
        fl = B * Hvl * (7.0 * dk * dv + 3.0 * dv) + l2

        def fmt():
            return (
                f"B·H_v·(7·d_k·d_v + 3·d_v) + L2 norms = {_n(B)}·{_n(Hvl)}·(7·{dk}·{dv} + 3·{dv}) + {_n(l2)}  "
                "(decay, read, delta, rank-1 update, output: element-wise)",
                f"q, k, v, gates, output {_n(io)} B + state read and written 2·B·H_v·d_k·d_v·{sb} B = {_n(2 * state)}",
            )

        _scan_row(pb, "gdn_recurrent_step", fl, 0.0, io, 2 * state, fmt, 1)
    else:
        Tp = _padded(T, C)  # padded to whole chunks
        # per sequence and value head: k_β·kᵀ and q·kᵀ (C×C per chunk), (masked scores)·v_new, and three products with
        # the d_k × d_v state (read by the decayed keys, read by q, updated by kᵀ·v_new)
        mm = B * Hvl * (4.0 * Tp * C * dk + 2.0 * Tp * C * dv + 6.0 * Tp * dk * dv)
        other = B * Hvl * Tp * C * (dk + dv + 4.0) + l2  # two unit-triangular solves, the decay mask, L2 norms

        def fmt():
            return (
                f"B·H_v·(4·T'·C·d_k + 2·T'·C·d_v + 6·T'·d_k·d_v) + solves B·H_v·T'·C·(d_k + d_v + 4), T' = {_n(Tp)} "
                f"(T padded to chunks of C = {C}) = {_n(mm)} + {_n(other)}",
                f"q, k, v, gates, output {_n(io)} B + final state B·H_v·d_k·d_v·{sb} B = {_n(state)}",
            )

        _scan_row(pb, "gdn_chunk_scan", mm + other, mm, io, state, fmt, C)
    n = pb.elementwise(
        "gated_norm",
        N * Hvl * dv,
        RMS_FLOPS + ACT_FLOPS["silu"] + 1,
        reads=2,
        weight_elems=dv,
        what="RMSNorm(o)·silu(z)",
    )
    _params_row(n, dv)
    pb.linear("out_proj", N, Hv * dv, h, bias=r.proj_bias, split="row")
    pb.tp_allreduce("mixer_allreduce", N)


def mamba2(pb: PassBuilder, r: RecurrentSpec):
    """Mamba2 / SSD (Nemotron-H, Bamba, Granite-4, Falcon-H1): scalar decay per head, state heads × head_dim × d_state."""
    h, N, B, T, p, tp = pb.m.hidden_size, pb.N, pb.B, pb.T, pb.p, pb.tp
    Hs, P, S, G, C = r.num_heads, r.head_dim, r.state_size, r.n_groups, r.chunk_size
    Hl, Gl = Hs / tp, G / tp
    pb.linear("in_proj", N, h, Hs * P + r.conv_dim + Hs, bias=r.proj_bias, split="col")  # z, x·B·C, dt
    causal_conv(pb, r)
    d = pb.elementwise(
        "dt_softplus",
        N * Hl,
        SOFTPLUS_FLOPS + 1,
        weight_elems=3 * Hl,
        what="dt = softplus(dt + dt_bias); A = −exp(A_log); D",
    )
    _params_row(d, 3 * Hs)  # dt_bias, A_log, D
    sb = r.state_bytes
    state = B * Hl * P * S * sb
    io = N * (Hl * P + 2 * Gl * S + Hl) * p.a + N * Hl * P * p.a  # x, B, C, dt in; y out
    if _is_step(pb):
        mm = 2.0 * B * Hl * P * S  # y = S·C per head
        fl = mm + B * Hl * P * (6.0 * S + 2.0)  # discretise, decay and update the state; D skip

        def fmt():
            return (
                f"output 2·B·H·P·N + state update B·H·P·(6·N + 2) = 2·{_n(B)}·{_n(Hl)}·{P}·{S} + …",
                f"x, B, C, dt, y {_n(io)} B + state read and written 2·B·H·P·N·{sb} B = {_n(2 * state)}",
            )

        _scan_row(pb, "ssm_recurrent_step", fl, mm, io, 2 * state, fmt, 1)
    else:
        Tp = _padded(T, C)
        nc = Tp / C
        # per sequence: C·Bᵀ (C×C per chunk and head), its masked product with x, the chunk states Bᵀ·x, the
        # inter-chunk recurrence over (chunks + 1)² pairs, and C times the chunk-start states
        mm = B * Hl * (2.0 * Tp * C * (S + P) + 4.0 * Tp * P * S + 2.0 * (nc + 1) ** 2 * P * S)
        other = B * Hl * Tp * (3.0 * C + 2.0 * P)  # decay mask exp(segsum) and the D skip

        def fmt():
            return (
                f"B·H·(2·T'·C·(N+P) + 4·T'·P·N + 2·(chunks+1)²·P·N), T' = {_n(Tp)}, C = {C}, N = {S}, P = {P} = {_n(mm)}",
                f"x, B, C, dt, y {_n(io)} B + final state B·H·P·N·{sb} B = {_n(state)}",
            )

        _scan_row(pb, "ssm_chunk_scan", mm + other, mm, io, state, fmt, C)
    if r.gated_norm:
        n = pb.elementwise(
            "gated_norm",
            N * Hl * P,
            RMS_FLOPS + ACT_FLOPS["silu"] + 1,
            reads=2,
            weight_elems=Hl * P,
            what="RMSNorm(y·silu(z)) per group",
        )
        _params_row(n, Hs * P)
    else:
        pb.elementwise("gate", N * Hl * P, ACT_FLOPS["silu"] + 1, reads=2, what="y·silu(z)")
    out_bias = r.proj_bias if r.out_bias is None else r.out_bias
    pb.linear("out_proj", N, Hs * P, h, bias=out_bias, split="row")
    pb.tp_allreduce("mixer_allreduce", N)


def mamba(pb: PassBuilder, r: RecurrentSpec):
    """Mamba (v1; Jamba, falcon-mamba): a diagonal state of d_state per inner channel, selective dt, B, C."""
    h, N, B, p = pb.m.hidden_size, pb.N, pb.B, pb.p
    D, S, R = r.d_inner, r.state_size, r.dt_rank
    pb.linear("in_proj", N, h, 2 * D, bias=r.proj_bias)  # x and the gate z
    causal_conv(pb, r)
    pb.linear("x_proj", N, D, R + 2 * S)  # dt (low rank), B, C
    n = pb.elementwise("dt_b_c_norms", N * (R + 2 * S), RMS_FLOPS, weight_elems=R + 2 * S, what="RMSNorm of dt, B, C")
    _params_row(n, R + 2 * S)
    pb.linear("dt_proj", N, R, D, bias=True)
    sb = r.state_bytes
    state = B * D * S * sb
    io = N * (3 * D + 2 * S) * p.a + N * D * p.a  # x, dt, z, B, C in; y out
    step = _is_step(pb)
    # per token and channel: dA = exp(A·dt), dB·x, S = dA·S + dB·x (element-wise), y = S·C (a product), D skip, gate
    mm = 2.0 * N * D * S
    fl = mm + N * D * (6.0 * S + 2.0 + ACT_FLOPS["silu"] + 1)

    def fmt():
        return (
            f"y = S·C 2·N·d_inner·N_s + state update N·d_inner·(6·N_s + 2) + gate = 2·{_n(N)}·{D}·{S} + …",
            f"x, dt, z, B, C, y {_n(io)} B + state B·d_inner·N_s·{sb} B ×{2 if step else 1} = {_n(state * (2 if step else 1))}",
        )

    row = _scan_row(
        pb, "ssm_recurrent_step" if step else "selective_scan", fl, mm, io, state * (2 if step else 1), fmt, 1
    )
    row.params = D * S + D  # A_log and D
    row.weight_bytes = row.resident = (D * S + D) * p.hp
    row.wclass = "hp"
    pb.linear("out_proj", N, D, h, bias=r.proj_bias)


def lightning(pb: PassBuilder, r: RecurrentSpec):
    """Lightning attention (MiniMax-01): linear attention with a fixed per-head decay, in blocks of C tokens."""
    h, N, B, T, p, tp = pb.m.hidden_size, pb.N, pb.B, pb.T, pb.p, pb.tp
    H, d, C = r.num_heads, r.head_dim, r.chunk_size
    Hl = H / tp
    pb.linear("qkv_proj", N, h, 3 * H * d, split="col")
    pb.elementwise("qkv_act", N * 3 * Hl * d, ACT_FLOPS["silu"], what="silu of q, k, v")
    sb = r.state_bytes or p.a
    state = B * Hl * d * d * sb
    io = N * 3 * Hl * d * p.a + N * Hl * d * p.a
    if _is_step(pb):
        mm = 4.0 * B * Hl * d * d  # kᵀ·v added to the d × d state, then q times the state
        fl = mm + 2.0 * B * Hl * d * d  # decay the state and add

        def fmt():
            return (
                f"kᵀv + q·S 4·B·H·d² + decay 2·B·H·d² = 4·{_n(B)}·{_n(Hl)}·{d}² + …",
                f"q, k, v, output {_n(io)} B + state read and written 2·B·H·d²·{sb:g} B = {_n(2 * state)}",
            )

        _scan_row(pb, "lightning_recurrent_step", fl, mm, io, 2 * state, fmt, 1)
    else:
        full, last = np.divmod(T, C)
        sq = full * C * C + last * last  # Σ over blocks of (block length)²: the last block is not padded
        # per sequence and head: q·kᵀ and its masked product with v inside each block (4·d per pair), q times the
        # carried state and kᵀ·v into it (4·d² per token)
        mm = B * Hl * (4.0 * d * sq + 4.0 * d * d * T)
        other = (
            B * Hl * (sq + 2.0 * T * d + 2.0 * d * d * np.ceil(np.asarray(T, dtype=np.float64) / C))
        )  # decay masks and state decay

        def fmt():
            return (
                f"B·H·(4·d·Σ block² + 4·d²·T), blocks of C = {C} = {_n(mm)}",
                f"q, k, v, output {_n(io)} B + final state B·H·d²·{sb:g} B = {_n(state)}",
            )

        _scan_row(pb, "lightning_block_scan", mm + other, mm, io, state, fmt, C)
    n = pb.elementwise("lightning_norm", N * Hl * d, RMS_FLOPS, weight_elems=Hl * d, what="RMSNorm of the heads")
    _params_row(n, H * d)
    pb.linear("output_gate", N, h, H * d, split="col")
    pb.elementwise("gate_mul", N * Hl * d, SIGMOID_FLOPS + 1, reads=2, what="sigmoid(gate)·output")
    pb.linear("out_proj", N, H * d, h, split="row")
    pb.tp_allreduce("mixer_allreduce", N)


def short_conv(pb: PassBuilder, r: RecurrentSpec):
    """LFM2 gated short convolution: B, C, x = in_proj(h); y = C·conv(B·x); out_proj(y). No recurrent state."""
    h, N = pb.m.hidden_size, pb.N
    pb.linear("in_proj", N, h, 3 * h, bias=r.proj_bias, split="col")
    pb.elementwise("b_gate", N * h / pb.tp, 1, reads=2, what="B·x")
    causal_conv(pb, r)
    pb.elementwise("c_gate", N * h / pb.tp, 1, reads=2, what="C·conv(B·x)")
    pb.linear("out_proj", N, h, h, bias=r.proj_bias, split="row")
    pb.tp_allreduce("mixer_allreduce", N)


MIXERS = {
    "gated_deltanet": gated_deltanet,
    "mamba2": mamba2,
    "mamba": mamba,
    "lightning": lightning,
    "short_conv": short_conv,
}


def recurrent_mixer(pb: PassBuilder, r: RecurrentSpec):
    MIXERS[r.kind](pb, r)


def state_bytes_per_sequence(r: RecurrentSpec, act_bytes: float, tp: int = 1) -> float:
    """Bytes of one sequence's state in one layer on one device: conv inputs (model dtype) + recurrent state."""
    return (r.conv_state_elements() * act_bytes + r.ssm_state_elements() * (r.state_bytes or act_bytes)) / tp
