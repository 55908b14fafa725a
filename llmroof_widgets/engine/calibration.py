"""The calibrated mode: a small, explained model of what real kernels reach.

The roofline mode (the default) is a strict lower bound: every operator at the device's peak
compute or peak bandwidth. Real kernels fall short in a few well-understood ways; each constant
below says where it comes from. Nothing here is fitted per record, and nothing reads measurements.

time(op) = max(FLOPs / (peak · η_mm(M) · η_quant), bytes / (bandwidth · η_mem)) + launch
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FamilyEfficiency:
    mem: float  # achievable share of the peak memory bandwidth for streaming kernels
    mm: float  # achievable share of the dense matrix peak for large GEMMs
    launch_s: float  # per-kernel launch and scheduling overhead


# By Hardware.kind.
FAMILIES = {
    # HBM GPUs: stream/copy benchmarks (BabelStream) reach 85–92 % of the datasheet bandwidth; large cuBLAS /
    # rocBLAS fp16 GEMMs reach 75–85 % of the dense tensor peak. Launch: a kernel launch costs ~3–5 µs of
    # host and scheduling time that back-to-back dependent kernels cannot hide (without CUDA graphs).
    "datacenter-gpu": FamilyEfficiency(mem=0.85, mm=0.80, launch_s=4e-6),
    # GDDR GPUs: the same stream and GEMM behaviour (the GeForce peaks here are already the FP32-accumulate rates).
    "consumer-gpu": FamilyEfficiency(mem=0.85, mm=0.80, launch_s=4e-6),
    # Jetson (LPDDR shared with the CPU): lower achievable stream bandwidth, ~75 %.
    "edge-gpu": FamilyEfficiency(mem=0.75, mm=0.70, launch_s=5e-6),
    # Apple GPUs: GPU copy kernels reach ~85 % of the unified-memory bandwidth (e.g. ~340 GB/s of an M1 Max's
    # 400); Metal simdgroup-matrix GEMMs reach ~75 % of the fp32 peak; each dispatch plus the memory barrier
    # between dependent kernels costs ~7 µs of GPU idle time.
    "apple-silicon": FamilyEfficiency(mem=0.85, mm=0.75, launch_s=7e-6),
    # TPUs and other accelerators: XLA-fused programs, few launches; stream ~85 %, MXU ~80 %.
    "tpu": FamilyEfficiency(mem=0.85, mm=0.80, launch_s=1e-6),
    "accelerator": FamilyEfficiency(mem=0.85, mm=0.75, launch_s=3e-6),
    # CPUs: STREAM triad reaches ~70–80 % of the theoretical DRAM bandwidth; AMX/AVX-512 GEMMs ~60 %.
    "cpu": FamilyEfficiency(mem=0.70, mm=0.60, launch_s=1e-6),
}
DEFAULT_FAMILY = FamilyEfficiency(mem=0.80, mm=0.75, launch_s=3e-6)

# A GEMM with M token rows keeps its tensor units busy only when M fills the tiles: efficiency rises as
# M / (M + M_HALF). With M_HALF = 32, a batch-1 GEMV runs at ~3 % of the matrix peak (it is memory-bound
# anyway), M = 128 at 80 % and M ≥ 1024 at ≥ 97 % of the large-shape efficiency (the shape of cuBLAS
# efficiency curves, e.g. Calculon's size-dependent matrix efficiency tables). A matrix–vector kernel runs
# on the vector units, so the rate never falls below the vector peak × the family's GEMM efficiency.
M_HALF = 32.0

# Kernels that dequantize inside the GEMM (int4/int8/GGUF weight formats) reach ~90 % of the plain fp16
# GEMM's efficiency: the unpacking competes for issue slots. In memory-bound products (decode GEMVs) the
# unpacking hides behind the weight stream, so it costs no time there.
QUANT_GEMM = 0.90


def family(kind: str | None) -> FamilyEfficiency:
    return FAMILIES.get(kind or "", DEFAULT_FAMILY)
