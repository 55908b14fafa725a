"""The roofline: time of each operator = max(FLOPs / peak, bytes / bandwidth).

A roofline time is a *lower bound*: it assumes every operator reaches the device's peak
compute rate or its peak memory bandwidth, whichever limits it. Efficiency factors (default 1)
scale the peaks; offloaded bytes stream over the host link concurrently with device memory
reads; collectives take their α–β time on the interconnect.
"""

from __future__ import annotations

import numpy as np

from . import calibration
from .hardware import Hardware
from .ops import Row
from .terms import Div


class Roof:
    """The device's roofs after efficiency factors."""

    __slots__ = ("hw", "bw", "host_bw", "eff_c", "eff_comm", "_peaks", "calibrated", "fam", "quant_gemm")

    def __init__(self, hw: Hardware, efficiency: dict | str | None = None, *, quantized_weights: bool = False):
        self.calibrated = efficiency == "calibrated"
        self.fam = calibration.family(hw.kind)
        if self.calibrated:
            eff = {"memory": self.fam.mem, "compute": self.fam.mm, "communication": 1.0}
        else:
            eff = efficiency if isinstance(efficiency, dict) else {}
        self.quant_gemm = calibration.QUANT_GEMM if (self.calibrated and quantized_weights) else 1.0
        self.hw = hw
        self.eff_c = eff.get("compute", 1.0)
        self.bw = hw.memory_bandwidth * eff.get("memory", 1.0)  # achievable device-memory bytes/s
        self.host_bw = (hw.host_link_bandwidth or 0.0) * eff.get("memory", 1.0)
        self.eff_comm = eff.get("communication", 1.0)
        self._peaks: dict = {}

    def peak(self, row: Row) -> tuple[str, float]:
        """(dtype whose peak applies, FLOP/s) for one operator."""
        key = row.dtype
        if key not in self._peaks:
            if key == "vector":
                self._peaks[key] = ("vector", self.hw.vector_peak * self.eff_c)
            elif key == "link":
                self._peaks[key] = ("link", float("inf"))
            else:
                d, pk = self.hw.matrix_peak(key)
                self._peaks[key] = (d, pk * self.eff_c)
        d, pk = self._peaks[key]
        return d, pk * row.speedup

    def times(self, r: Row):
        """(compute time, device-memory time, host-link time, communication time) of one execution."""
        if r.kind == "communication":
            return 0.0, 0.0, 0.0, r.comm_s / self.eff_comm
        peak = self.peak(r)[1]
        if self.calibrated and r.m_dim is not None:
            # small-M products leave the matrix units idle: η(M) = M / (M + M_half); a matrix–vector
            # kernel still runs on the vector units, which bounds the rate from below
            peak = np.maximum(peak * (r.m_dim / (r.m_dim + calibration.M_HALF)), self.hw.vector_peak * self.eff_c)
            if r.wclass in ("linear", "expert"):
                peak = peak * self.quant_gemm
        dev_bytes = r.bytes - r.host_bytes
        host = r.host_bytes / self.host_bw if self.host_bw else 0.0
        return r.flops / peak, dev_bytes / self.bw, host, 0.0

    def overhead(self, r: Row):
        """Calibrated mode only: the kernel's launch overhead."""
        return self.fam.launch_s if self.calibrated else 0.0

    def row_time(self, r: Row):
        tc, tm, th, tk = self.times(r)
        if r.kind == "communication":
            return tk
        t = np.maximum(np.maximum(tc, tm), th)
        return t + self.overhead(r) if self.calibrated else t


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
            used, pk = roof.hw.matrix_peak(d)
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
        "note": "calibrated: per-operator small-M GEMM efficiency and launch overhead are applied on top of these roofs"
        if roof.calibrated
        else "roofline: a lower bound on time",
    }


def pass_time(rows: list[Row], roof: Roof):
    """Σ count × operator time over the rows; broadcasts over array-valued rows."""
    total = 0.0
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
    """A collective's α–β time with numbers; divided by the communication efficiency when one is set."""
    if r.kind != "communication" or r.terms is None:
        return ""
    if roof.eff_comm == 1.0:
        return r.time_formula
    t = r.terms.copy()
    t.scale("time", Div(("efficiency", roof.eff_comm)))
    return t.render("time")
