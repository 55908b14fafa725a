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
from .ops import RMS_FLOPS, TWO, PassBuilder, Row, ring_allreduce_terms
from .precision import compute_dtype
from .terms import Terms

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
    f = _shard(pb, r)
    N, B, K = pb.N, pb.B, r.conv_kernel
    ch = r.conv_dim * f
    act_fl = ACT_FLOPS[r.act] if r.act else 0
    bias = 1 if r.conv_bias else 0
    step = _is_step(pb)
    t = Terms()
    t.add("flops", "taps", TWO, ("N", N), ("channels", ch), ("K", K))  # one multiply and one add per tap
    if bias:
        t.add("flops", "bias", ("N", N), ("channels", ch))
    if act_fl:
        t.add("flops", f"{r.act} (fused)", (None, act_fl), ("N", N), ("channels", ch))
    t.add("weight", "weights", ("channels", ch), ("K + bias" if bias else "K", K + bias), pb._fhp)
    t.add("activation", "input and output", ("N", N), ("channels", ch), pb._fa, (None, 2))
    # the state: a decode step reads the K cached inputs and writes them back shifted; a prefill writes them
    t.add("kv", "state", ("B", B), ("channels", ch), ("K", K), pb._fa, ("read + write" if step else "write", 1 + step))
    row = pb._push("conv1d", "elementwise", t, "vector", params=r.conv_dim * (K + bias), wclass="hp")
    row.kv_state = True  # the conv state stays in device memory (memory.recurrent_state_bytes)
    return row


def _scan_row(pb: PassBuilder, name, t: Terms, m_dim):
    p = pb.p
    row = pb._push(name, "attention", t, compute_dtype(p.a_fmt, p.a_fmt))
    row.m_dim = m_dim
    row.kv_state = True  # the recurrent state stays in device memory (memory.recurrent_state_bytes)
    return row


def _params_row(row: Row, params: float):
    """An element-wise operator that owns replicated / sharded small parameters: count the global ones."""
    row.params = params
    return row


def gated_deltanet(pb: PassBuilder, r: RecurrentSpec):
    """Gated DeltaNet (Qwen3-Next, Qwen3.5): q, k, v, z, β and the decay from the input; a delta-rule state."""
    h, N, B, T, tp = pb.m.hidden_size, pb.N, pb.B, pb.T, pb.tp
    Hv, Hk, dk, dv, C = r.num_heads, r.n_groups, r.key_head_dim, r.head_dim, r.chunk_size
    Hvl, Hkl = Hv / tp, Hk / tp
    # q, k, v, the output gate z, and β, a per value head (transformers: in_proj_qkvz + in_proj_ba; Qwen3.5 splits
    # them in four): one product with the concatenated weights
    pb.linear("in_proj", N, h, 2 * Hk * dk + 2 * Hv * dv + 2 * Hv, bias=r.proj_bias, split="col")
    causal_conv(pb, r)
    # the L2 normalisation of q and k runs inside the scan kernel (use_qk_l2norm_in_kernel)
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
    sb = pb._b(r.state_bytes)
    state_f = (("B", B), ("H_v", Hvl), ("d_k", dk), ("d_v", dv), sb)
    t = Terms()
    # q, k, v, β, g in; o out
    t.add(
        "activation",
        "q, k, v, gates",
        ("N", N),
        ("(2·H_k·d_k + H_v·d_v + 2·H_v)", 2 * Hkl * dk + Hvl * dv + 2 * Hvl),
        pb._fa,
    )
    t.add("activation", "output", ("N", N), ("H_v", Hvl), ("d_v", dv), pb._fa)
    if _is_step(pb):
        # one delta-rule step per value head: S ← g·S; S += k ⊗ β(v − Sᵀk); o = Sᵀq
        t.add("flops", "step", ("B", B), ("H_v", Hvl), ("(7·d_k·d_v + 3·d_v)", 7.0 * dk * dv + 3.0 * dv))
        t.add("flops", "L2 norms", ("N", N), (None, 2), ("H_k", Hkl), ("d_k", dk), (None, RMS_FLOPS))
        t.note("flops", "decay, read, delta, rank-1 update, output: element-wise")
        t.add("kv", "state read and written", (None, 2), *state_f)
        _scan_row(pb, "gdn_recurrent_step", t, 1)
    else:
        Tp = _padded(T, C)  # padded to whole chunks
        # per sequence and value head: k_β·kᵀ and q·kᵀ (C×C per chunk), (masked scores)·v_new, and three products with
        # the d_k × d_v state (read by the decayed keys, read by q, updated by kᵀ·v_new)
        t.add("matmul", "k_β·kᵀ, q·kᵀ", ("B", B), ("H_v", Hvl), (None, 4), ("T'", Tp), ("C", C), ("d_k", dk))
        t.add("matmul", "scores·v", ("B", B), ("H_v", Hvl), (None, 2), ("T'", Tp), ("C", C), ("d_v", dv))
        t.add("matmul", "state products", ("B", B), ("H_v", Hvl), (None, 6), ("T'", Tp), ("d_k", dk), ("d_v", dv))
        # two unit-triangular solves, the decay mask; the L2 norms
        t.add("flops", "solves", ("B", B), ("H_v", Hvl), ("T'", Tp), ("C", C), ("(d_k + d_v + 4)", dk + dv + 4.0))
        t.add("flops", "L2 norms", ("N", N), (None, 2), ("H_k", Hkl), ("d_k", dk), (None, RMS_FLOPS))
        t.note("flops", f"T' = T padded to chunks of C = {C}")
        t.add("kv", "final state", *state_f)
        _scan_row(pb, "gdn_chunk_scan", t, C)
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
    h, N, B, T, tp = pb.m.hidden_size, pb.N, pb.B, pb.T, pb.tp
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
    sb = pb._b(r.state_bytes)
    state_f = (("B", B), ("H", Hl), ("P", P), ("N_s", S), sb)
    t = Terms()
    t.add("activation", "x, B, C, dt", ("N", N), ("(H·P + 2·G·N_s + H)", Hl * P + 2 * Gl * S + Hl), pb._fa)
    t.add("activation", "y", ("N", N), ("H", Hl), ("P", P), pb._fa)
    if _is_step(pb):
        t.add("matmul", "y = S·C", TWO, ("B", B), ("H", Hl), ("P", P), ("N_s", S))
        # discretise, decay and update the state; D skip
        t.add("flops", "state update", ("B", B), ("H", Hl), ("P", P), ("(6·N_s + 2)", 6.0 * S + 2.0))
        t.add("kv", "state read and written", (None, 2), *state_f)
        _scan_row(pb, "ssm_recurrent_step", t, 1)
    else:
        Tp = _padded(T, C)
        nc = Tp / C
        # per sequence: C·Bᵀ (C×C per chunk and head), its masked product with x, the chunk states Bᵀ·x, the
        # inter-chunk recurrence over (chunks + 1)² pairs, and C times the chunk-start states
        t.add("matmul", "intra-chunk", ("B", B), ("H", Hl), (None, 2), ("T'", Tp), ("C", C), ("(N_s + P)", S + P))
        t.add("matmul", "chunk states", ("B", B), ("H", Hl), (None, 4), ("T'", Tp), ("P", P), ("N_s", S))
        t.add(
            "matmul",
            "inter-chunk",
            ("B", B),
            ("H", Hl),
            (None, 2),
            ("(chunks + 1)²", (nc + 1) ** 2),
            ("P", P),
            ("N_s", S),
        )
        # decay mask exp(segsum) and the D skip
        t.add("flops", "decay mask, skip", ("B", B), ("H", Hl), ("T'", Tp), ("(3·C + 2·P)", 3.0 * C + 2.0 * P))
        t.note("flops", f"T' = T padded to chunks of C = {C}")
        t.add("kv", "final state", *state_f)
        _scan_row(pb, "ssm_chunk_scan", t, C)
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


def _partial_allreduce(pb: PassBuilder, name: str, n_tok, width: int, label: str):
    """A ring all-reduce of a row-parallel product's partial sums (``n_tok`` × ``width``), under TP only."""
    if pb.tp > 1:
        bw, alpha = pb._link()
        t, msg = pb._message(label, ("N", n_tok), ("width", width), pb._fa)
        ring_allreduce_terms(t, msg, pb.tp, bw, alpha)
        pb.collective(
            name, t.total("time"), msg, f"ring all-reduce over TP {pb.tp}", hops=2 * (pb.tp - 1), direct_hops=2, terms=t
        )


def mamba(pb: PassBuilder, r: RecurrentSpec):
    """Mamba (v1; Mamba, falcon-mamba, Jamba): a diagonal state of d_state per inner channel, selective dt, B, C.

    Tensor parallelism (as vLLM's MambaMixer): in_proj, the convolution, dt_proj and the scan shard the inner
    channels; x_proj is row-parallel (its dt, B, C partial sums are all-reduced), out_proj too (the layer output).
    """
    h, N, B, tp = pb.m.hidden_size, pb.N, pb.B, pb.tp
    D, S, R = r.d_inner, r.state_size, r.dt_rank
    Dl = D / tp  # inner channels on one device
    pb.linear("in_proj", N, h, 2 * D, bias=r.proj_bias, split="col")  # x and the gate z
    causal_conv(pb, r)
    pb.linear("x_proj", N, D, R + 2 * S, split="row")  # dt (low rank), B, C
    _partial_allreduce(pb, "x_proj_allreduce", N, R + 2 * S, "dt, B, C")
    if r.dt_bc_norm == "weighted":  # Jamba: RMSNorm of dt, B and C, each with a weight
        n = pb.elementwise(
            "dt_b_c_norms", N * (R + 2 * S), RMS_FLOPS, weight_elems=R + 2 * S, what="RMSNorm of dt, B, C"
        )
        _params_row(n, R + 2 * S)
    elif r.dt_bc_norm:  # falcon-mamba: the same norms without weights
        pb.elementwise("dt_b_c_norms", N * (R + 2 * S), RMS_FLOPS, what="RMSNorm of dt, B, C (no weights)")
    pb.linear("dt_proj", N, R, D, bias=True, split="col")
    step = _is_step(pb)
    t = Terms()
    # per token and channel: dA = exp(A·dt), dB·x, S = dA·S + dB·x (element-wise), y = S·C (a product), D skip, gate
    t.add("matmul", "y = S·C", TWO, ("N", N), ("d_inner", Dl), ("N_s", S))
    t.add(
        "flops",
        "state update, skip, gate",
        ("N", N),
        ("d_inner", Dl),
        ("(6·N_s + 2 + silu + 1)", 6.0 * S + 2.0 + ACT_FLOPS["silu"] + 1),
    )
    t.add("weight", "A_log and D", ("(d_inner·N_s + d_inner)", Dl * S + Dl), pb._fhp)
    t.add("activation", "x, dt, z, B, C", ("N", N), ("(3·d_inner + 2·N_s)", 3 * Dl + 2 * S), pb._fa)
    t.add("activation", "y", ("N", N), ("d_inner", Dl), pb._fa)
    t.add(
        "kv",
        "state",
        ("B", B),
        ("d_inner", Dl),
        ("N_s", S),
        pb._b(r.state_bytes),
        ("read + write" if step else "write", 1 + step),
    )
    row = _scan_row(pb, "ssm_recurrent_step" if step else "selective_scan", t, 1)
    row.params = D * S + D  # A_log and D
    row.resident = row.weight_bytes
    row.wclass = "hp"
    pb.linear("out_proj", N, D, h, bias=r.proj_bias, split="row")
    pb.tp_allreduce("mixer_allreduce", N)


def lightning(pb: PassBuilder, r: RecurrentSpec):
    """Lightning attention (MiniMax-01): linear attention with a fixed per-head decay, in blocks of C tokens."""
    h, N, B, T, p, tp = pb.m.hidden_size, pb.N, pb.B, pb.T, pb.p, pb.tp
    H, d, C = r.num_heads, r.head_dim, r.chunk_size
    Hl = H / tp
    pb.linear("qkv_proj", N, h, 3 * H * d, split="col")
    pb.elementwise("qkv_act", N * 3 * Hl * d, ACT_FLOPS["silu"], what="silu of q, k, v")
    sb = pb._b(r.state_bytes or p.a)
    state_f = (("B", B), ("H", Hl), ("d", d), ("d", d), sb)
    t = Terms()
    t.add("activation", "q, k, v", ("N", N), (None, 3), ("H", Hl), ("d", d), pb._fa)
    t.add("activation", "output", ("N", N), ("H", Hl), ("d", d), pb._fa)
    if _is_step(pb):
        # kᵀ·v added to the d × d state, then q times the state; decay the state and add
        t.add("matmul", "kᵀv + q·S", (None, 4), ("B", B), ("H", Hl), ("d", d), ("d", d))
        t.add("flops", "decay", (None, 2), ("B", B), ("H", Hl), ("d", d), ("d", d))
        t.add("kv", "state read and written", (None, 2), *state_f)
        _scan_row(pb, "lightning_recurrent_step", t, 1)
    else:
        full, last = np.divmod(T, C)
        sq = full * C * C + last * last  # Σ over blocks of (block length)²: the last block is not padded
        # per sequence and head: q·kᵀ and its masked product with v inside each block (4·d per pair), q times the
        # carried state and kᵀ·v into it (4·d² per token)
        t.add("matmul", "in blocks", ("B", B), ("H", Hl), (None, 4), ("d", d), ("Σ block²", sq))
        t.add("matmul", "state", ("B", B), ("H", Hl), (None, 4), ("d", d), ("d", d), ("T", T))
        # decay masks and state decay
        t.add("flops", "decay masks", ("B", B), ("H", Hl), ("Σ block²", sq))
        t.add("flops", "decays", ("B", B), ("H", Hl), (None, 2), ("T", T), ("d", d))
        blocks = np.ceil(np.asarray(T, dtype=np.float64) / C)
        t.add("flops", "state decay", ("B", B), ("H", Hl), (None, 2), ("d", d), ("d", d), ("blocks", blocks))
        t.note("flops", f"blocks of C = {C}")
        t.add("kv", "final state", *state_f)
        _scan_row(pb, "lightning_block_scan", t, C)
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
