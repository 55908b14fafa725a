"""The roofline: time of each operator = max(FLOPs / peak, bytes / bandwidth).

A roofline time is a *lower bound*: it assumes every operator reaches the device's peak
compute rate (the fp16-accumulate peak where a GeForce card has a faster one) or its peak memory
bandwidth, whichever limits it. The calibrated mode (``efficiency="calibrated"``) applies the fitted
kernel model of :mod:`calibration` instead. Efficiency factors (default 1)
scale the peaks; offloaded bytes stream over the host link concurrently with device memory
reads; collectives take their α–β time on the interconnect.
"""

from __future__ import annotations

import numpy as np

from . import calibration
from .hardware import Hardware
from .ops import Row
from .terms import Div, Terms

# The operator whose rows are the positions sampled in a pass (B at a decode step, B at the last prompt position):
# the per-sequence host work of a step (sampling, the sequence's scheduling and output bookkeeping) rides on it.
SAMPLED_ROW = "lm_head"


_SCALAR = (float, int, np.floating)


class Roof:
    """The device's roofs after efficiency factors, and the calibrated kernel model when asked for."""

    __slots__ = ("hw", "bw", "host_bw", "eff_c", "eff_comm", "_peaks", "calibrated", "km", "quantized")

    def __init__(
        self,
        hw: Hardware,
        efficiency: dict | str | None = None,
        *,
        quantized_weights: bool = False,
        framework: str = "generic",
        kernel_model: calibration.KernelModel | None = None,
    ):
        self.calibrated = efficiency == "calibrated"
        self.km: calibration.KernelModel | None = None
        if self.calibrated:
            km = self.km = kernel_model or calibration.kernel_model(framework, hw)
            # the achieved shares of the peaks, for the plotted roofs and the per-operator peaks
            eff = {"memory": 1.0 / km.memory, "compute": 1.0 / km.compute, "communication": 1.0}
        else:
            eff = efficiency if isinstance(efficiency, dict) else {}
        self.quantized = quantized_weights  # linear/expert weights stored below 16 bits (dequantizing GEMMs)
        self.hw = hw
        self.eff_c = eff.get("compute", 1.0)
        self.bw = hw.memory_bandwidth * eff.get("memory", 1.0)  # achievable device-memory bytes/s
        self.host_bw = (hw.host_link_bandwidth or 0.0) * eff.get("memory", 1.0)
        self.eff_comm = eff.get("communication", 1.0)
        self._peaks: dict = {}

    @property
    def kernel(self) -> calibration.KernelModel:
        """The fitted kernel model (calibrated mode only)."""
        assert self.km is not None, "the kernel model exists in the calibrated mode only"
        return self.km

    def _matrix_peak(self, key: str) -> tuple[str, float]:
        """The matrix peak a kernel can use: the roofline takes the fp16-accumulate peak where it is
        higher (GeForce), so that it stays a bound; the calibrated mode only for frameworks that use it."""
        if self.calibrated and not self.kernel.framework.fp16_accumulate:
            return self.hw.matrix_peak(key)
        return self.hw.fast_matrix_peak(key)

    def peak(self, row: Row) -> tuple[str, float]:
        """(dtype whose peak applies, FLOP/s) for one operator, after efficiency factors."""
        key = row.dtype
        if self.calibrated and row.wclass == "expert" and self.kernel.framework.legacy_moe:
            key = "legacy expert"  # Ampere-class grouped GEMMs: 16-bit products at the mma.sync share of the peak
        if key not in self._peaks:
            if key == "legacy expert":
                d, pk = self._matrix_peak("fp16")
                self._peaks[key] = (d, pk * calibration.legacy_mma_share(self.hw) * self.eff_c)
            elif key == "vector":
                self._peaks[key] = ("vector", self.hw.vector_peak * self.eff_c)
            elif key == "link":
                self._peaks[key] = ("link", float("inf"))
            else:
                d, pk = self._matrix_peak(key)
                self._peaks[key] = (d, pk * self.eff_c)
        d, pk = self._peaks[key]
        return d, pk * row.speedup

    def unit_times(self, r: Row):
        """Calibrated mode, before the fitted multipliers: (compute time at the shape-efficient peak,
        its kernel class — 0 float GEMM or other, 1 dequantizing GEMM, 2 MoE expert GEMM, 3 fp8/int8 GEMM —,
        FLOPs / (SMs ·
        1 TFLOP/s), device-memory time at the datasheet bandwidth, host-link time)."""
        d, peak = self.peak(r)
        peak = peak * self.kernel.compute  # back to the datasheet peak (peak() applies 1 / compute)
        vec = self.hw.vector_peak
        if r.m_dim is not None:
            # tile fill and wave quantization; a matrix–vector kernel still has the vector units
            peak = np.maximum(peak * calibration.shape_efficiency(r.m_dim, r.n_dim, self.hw.sm_count), vec)
        # dequantizing: narrow stored weights multiplied in a ≥ 16-bit float format (W8A8 / fp8 × fp8 is not)
        dequant = self.quantized and r.wclass == "linear" and r.dtype in ("fp16", "bf16", "fp32", "tf32")
        narrow = r.kind == "matmul" and d in ("fp8", "int8", "int4", "fp4")  # d: the peak's dtype actually used
        cls = 2 if r.wclass == "expert" else (1 if dequant else (3 if narrow else 0))
        per_sm = r.matmul_flops / (self.hw.sm_count * 1e12) if (self.hw.sm_count and r.kind == "matmul") else 0.0
        mem = (r.bytes - r.host_bytes) / self.hw.memory_bandwidth
        host = r.host_bytes / self.hw.host_link_bandwidth if self.hw.host_link_bandwidth else 0.0
        return r.flops / peak, cls, per_sm, mem, host

    def times(self, r: Row):
        """(compute time, device-memory time, host-link time, communication time) of one execution."""
        if r.kind == "communication":
            if self.calibrated:
                alpha = self.hw.interconnect_latency_s or 0.0
                km = self.kernel
                # bytes over the achieved bus bandwidth (ring: 2(n−1)/n·M/β for an all-reduce), plus the fitted
                # latency per link step of the direct (one-/two-shot) kernels serving frameworks use for
                # small messages: the ring's 2(n−1) steps would cost latency the frameworks avoid
                bus = r.comm_s - r.comm_hops * alpha
                return 0.0, 0.0, 0.0, km.bus * bus + km.hop_s * r.comm_direct_hops
            return 0.0, 0.0, 0.0, r.comm_s / self.eff_comm
        if self.calibrated:
            km = self.kernel
            tc, cls, per_sm, mem, host = self.unit_times(r)
            coef = (km.compute, km.dequant_compute, km.expert_compute, km.narrow_compute)[cls]
            tc = np.maximum(coef * tc, km.per_sm_compute * per_sm)
            return tc, km.memory * mem, km.memory * host, 0.0
        peak = self.peak(r)[1]
        dev_bytes = r.bytes - r.host_bytes
        host = r.host_bytes / self.host_bw if self.host_bw else 0.0
        return r.flops / peak, dev_bytes / self.bw, host, 0.0

    def overhead(self, r: Row):
        """Calibrated mode only: the fitted per-kernel overhead of an operator that launches a kernel, and on
        the row that makes the logits, the per-sequence host work of the step (once per sampled position)."""
        if not self.calibrated or r.kind == "communication":
            return 0.0
        if not is_kernel(r):
            return 0.0
        t = self.kernel.graph_kernel_s if self.kernel.framework.graphs else self.kernel.kernel_s
        if r.name == SAMPLED_ROW:
            t = t + self.kernel.seq_step_s * r.m_dim  # m_dim: B · positions whose logits are sampled
        return t

    def row_time(self, r: Row):
        tc, tm, th, tk = self.times(r)
        if r.kind == "communication":
            return tk
        if self.calibrated:
            return np.maximum(np.maximum(tc, tm), th) + self.overhead(r)
        if isinstance(tc, _SCALAR) and isinstance(tm, _SCALAR) and isinstance(th, _SCALAR):
            return max(tc, tm, th)  # scalar figures: Python's max (np.maximum costs ~1 µs a call on a float)
        return np.maximum(np.maximum(tc, tm), th)

    @property
    def step_overhead(self) -> float:
        """Calibrated mode: host time per forward pass."""
        return self.kernel.step_s if self.calibrated else 0.0

    @property
    def request_overhead(self) -> float:
        """Calibrated mode: host time per request, part of the time to first token."""
        return self.kernel.request_s if self.calibrated else 0.0


def is_kernel(r: Row) -> bool:
    """An operator that launches work of its own (fused element-wise operators move no bytes and launch nothing)."""
    return r.kind != "communication" and bool(np.any(r.matmul_flops > 0) or np.any(r.bytes > 0))


def roofs(roof: Roof, dtypes, sparse: bool = False) -> dict:
    """The roofs a plot draws: bandwidth slope and one flat roof per dtype, after efficiency factors.

    ``sparse``: 2:4 sparse weights on sparse tensor cores — ``sparse_peaks`` holds the doubled roofs.
    """
    peaks = {}
    for d in dtypes:
        if d == "link":
            continue
        if d == "vector":
            peaks["vector"] = roof.hw.vector_peak * roof.eff_c
        else:
            used, pk = roof._matrix_peak(d)
            peaks[used] = pk * roof.eff_c
    mode = (
        "calibrated"
        if roof.calibrated
        else (
            "custom"
            if (roof.eff_c != 1.0 or roof.bw != roof.hw.memory_bandwidth or roof.eff_comm != 1.0)
            else "roofline"
        )
    )
    return {
        "memory_bandwidth": roof.bw,
        "host_bandwidth": roof.host_bw or None,
        "peaks": peaks,
        "sparse_peaks": {d: 2 * pk for d, pk in peaks.items() if d != "vector"} if sparse else {},
        "ridge": {d: pk / roof.bw for d, pk in peaks.items()},  # FLOP/byte where compute meets bandwidth
        "mode": mode,
        "note": "calibrated: per-operator GEMM shape efficiency, dequantization, per-SM ceilings and host overheads "
        "are applied on top of these roofs"
        if roof.calibrated
        else "roofline: a lower bound on time",
    }


def pass_time(rows: list[Row], roof: Roof, *, request: bool = False):
    """Σ count × operator time over the rows (+ the calibrated per-step overhead, and the per-request one
    when ``request``: the prefill of a new request); broadcasts over array-valued rows."""
    total = roof.step_overhead + (roof.request_overhead if request else 0.0)
    for r in rows:
        total = total + r.count * roof.row_time(r)
    return total


def row_dict(r: Row, roof: Roof, phase_time: float) -> dict:
    """One operator's figures for one execution, plus its share of the phase time (count included)."""
    dtype, peak = roof.peak(r)
    tc, tm, th, tk = (float(x) for x in roof.times(r))
    fl, by = float(r.flops), float(r.bytes)
    t = max(tc, tm, th, tk) + (float(roof.overhead(r)) if roof.calibrated and r.kind != "communication" else 0.0)
    if r.kind == "communication":
        bound = "communication"
    elif tc >= max(tm, th) and fl > 0:
        bound = "compute"
    else:
        bound = "memory"
    count = float(r.count)
    return {
        "name": r.name,
        "layer_type": r.layer_type,
        "count": int(count) if count == int(count) else count,
        "kind": r.kind,
        "flops": fl,
        "matmul_flops": float(r.matmul_flops),
        "bytes": by,
        "weight_bytes": float(r.weight_bytes),
        "activation_bytes": float(r.activation_bytes),
        "kv_bytes": float(r.kv_bytes),
        "host_bytes": float(r.host_bytes),
        "comm_bytes": float(r.comm_bytes),
        "arithmetic_intensity": fl / by if by > 0 else 0.0,  # FLOPs per byte moved
        "time_s": t,
        "compute_time_s": tc,
        "memory_time_s": tm,
        "host_time_s": th,
        "communication_time_s": tk,
        "bound": bound,
        "peak_dtype": dtype,
        "peak_flops": peak if np.isfinite(peak) else 0.0,  # after efficiency factors
        "bandwidth": roof.bw,  # device-memory bytes/s after efficiency factors
        "attained_flops": fl / t if t > 0 else 0.0,  # FLOP/s this operator runs at (its roofline dot's height)
        "resident_bytes": float(r.resident),  # parameter bytes this operator keeps in device memory
        "share": (count * t / phase_time) if phase_time > 0 else 0.0,
        "params": int(r.params),
        "flops_formula": r.flops_formula,
        "bytes_formula": r.bytes_formula,  # a collective: its message
        "time_formula": _time_formula(r, roof),  # a collective: its α–β time ("" otherwise)
    }


def _time_formula(r: Row, roof: Roof) -> str:
    """A collective's α–β time with numbers, as :meth:`Roof.times` takes it: divided by the communication
    efficiency when one is set; calibrated, its bandwidth terms at the fitted bus factor plus the fitted
    latency of each direct-kernel hop."""
    if r.kind != "communication" or r.terms is None:
        return ""
    km = roof.km
    if roof.calibrated and km is not None:
        t = Terms()
        for cat, label, factors, _ in r.terms.items:
            if cat == "time" and label == "bandwidth":  # Σ of these = comm_s − hops·α
                t.add("time", "bandwidth", *factors, ("bus factor", km.bus))
        t.add("time", "hops", ("direct hops", r.comm_direct_hops), ("t_hop", km.hop_s))
        t.note("time", "calibrated: achieved bus bandwidth, latency per step of the one-/two-shot kernels")
        return t.render("time")
    if roof.eff_comm == 1.0:
        return r.time_formula
    t = r.terms.copy()
    t.scale("time", Div(("efficiency", roof.eff_comm)))
    return t.render("time")
