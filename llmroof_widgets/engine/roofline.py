"""The roofline: time of each operator = max(FLOPs / peak, bytes / bandwidth).

A roofline time is a *lower bound*: it assumes every operator reaches the device's peak
compute rate or its peak memory bandwidth, whichever limits it.
"""
from __future__ import annotations

import numpy as np

from .hardware import Hardware
from .ops import Row


def row_peak(row: Row, hw: Hardware) -> tuple[str, float]:
    """(dtype whose peak applies, FLOP/s) for one operator."""
    if row.dtype == "vector":
        return "vector", hw.vector_peak
    return hw.matrix_peak(row.dtype)


def pass_time(rows: list[Row], hw: Hardware):
    """Σ count × max(FLOPs/peak, bytes/bandwidth) over the rows; broadcasts over array-valued rows."""
    bw = hw.memory_bandwidth
    total = 0.0
    for r in rows:
        peak = row_peak(r, hw)[1]
        total = total + r.count * np.maximum(r.flops / peak, r.bytes / bw)
    return total


def row_dict(r: Row, hw: Hardware, phase_time: float) -> dict:
    """One operator's figures for one execution, plus its share of the phase time (count included)."""
    dtype, peak = row_peak(r, hw)
    fl, by = float(r.flops), float(r.bytes)
    t_compute = fl / peak  # time at the compute roof
    t_memory = by / hw.memory_bandwidth  # time at the bandwidth roof
    t = max(t_compute, t_memory)
    return {
        "name": r.name,
        "layer_type": r.layer_type,
        "count": int(r.count),
        "kind": r.kind,
        "flops": fl,
        "matmul_flops": float(r.matmul_flops),
        "bytes": by,
        "weight_bytes": float(r.weight_bytes),
        "activation_bytes": float(r.activation_bytes),
        "kv_bytes": float(r.kv_bytes),
        "arithmetic_intensity": fl / by if by > 0 else 0.0,  # FLOPs per byte moved
        "time_s": t,
        "compute_time_s": t_compute,
        "memory_time_s": t_memory,
        "bound": "compute" if t_compute >= t_memory and fl > 0 else "memory",
        "peak_dtype": dtype,
        "peak_flops": peak,
        "share": (r.count * t / phase_time) if phase_time > 0 else 0.0,
        "params": int(r.params),
        "flops_formula": r.flops_formula,
        "bytes_formula": r.bytes_formula,
    }
