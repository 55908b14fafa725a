"""The calibrated mode: a model of real kernels whose few constants are fitted from public measurements.

The roofline mode (the default) is a strict lower bound: every operator at the device's peak compute or
peak bandwidth. Real kernels fall short in ways a handful of constants per *framework family* (llama.cpp,
MLX, vLLM, SGLang, TensorRT-LLM, a generic default) and *device family* (``Hardware.kind``) describe:

    time(op)   = max(c_compute · FLOPs / (peak · η_shape),        float GEMMs, attention products
                     (c_dequant | c_expert | c_narrow instead     GEMMs that dequantize their weights,
                      of c_compute for those kernels)             MoE expert GEMMs, fp8/int8 GEMMs;
                                                                  Ampere-class expert GEMMs of older
                                                                  versions: 16-bit peak × mma.sync share)
                     c_per_sm  · FLOPs / (SMs · 1 TFLOP/s),       a kernel's own ceiling per SM
                     c_memory  · bytes / bandwidth)               streaming at an achievable bandwidth
                 + kernel_s (graph_kernel_s with CUDA graphs)     launch and scheduling, per kernel
    time(pass) = Σ count · time(op) + step_s                      host work per forward pass
                 + seq_step_s · B · positions sampled             sampling and bookkeeping per sequence
    TTFT      += request_s                                        admission, tokenization, per request
    time(collective) = c_bus · bytes-part + hops · hop_s          bus bandwidth and per-hop latency

The structure is physics (η_shape below: tile fill for small M and wave quantization over the SMs;
which peak a framework's kernels can use); the thirteen constants ``PARAMS`` are *fitted* by
:mod:`llmroof_widgets.engine.fit` from ``data/measurements.json`` — a bounded, robust least squares on
relative error, pulled towards the explained priors ``PRIOR`` — and stored in
``data/calibration_fit.json`` (regenerated and compared by the tests). Nothing is tuned by hand to a
record. ``lr.validate("calibrated", cv="source")`` reports how well the fit transfers to a source it
did not see.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .catalog import DATA_DIR

FIT_FILE = DATA_DIR / "calibration_fit.json"

# The fitted constants, in order (see the module docstring).
PARAMS = (
    "compute",  # time multiplier of float GEMMs over their shape-efficient peak time (1 / achieved share)
    "dequant_compute",  # the same for GEMMs that unpack quantized weights (GGUF, int4, MLX affine)
    "expert_compute",  # the same for MoE expert GEMMs (grouped GEMMs over a few tokens per expert)
    "narrow_compute",  # the same for fp8 / int8 GEMMs (scaling epilogues; the doubled peak is harder to reach)
    "per_sm_compute",  # s per (FLOP / (SMs · 1e12)): a kernel family's own ceiling per SM (1 / TFLOP/s per SM)
    "memory",  # time multiplier of streamed bytes over the datasheet bandwidth (1 / achievable share)
    "kernel_s",  # seconds per kernel: launch, scheduling and the tail of a dependent kernel
    "graph_kernel_s",  # the same for frameworks that replay CUDA/HIP graphs or compiled engines (no host launch)
    "step_s",  # seconds per forward pass: host work of the step (scheduling, sampling, input preparation)
    "request_s",  # seconds per request, added to the prefill: admission, tokenization, first-step setup
    "bus",  # time multiplier of collectives' bytes over the interconnect bandwidth (1 / achieved bus bandwidth)
    "hop_s",  # seconds per link step of a collective's direct (one-/two-shot) kernel: 2 per all-reduce, 1 else
    "seq_step_s",  # seconds per sampled position per forward pass: sampling, the sequence's bookkeeping in the step
)
# Lower bounds: no kernel runs faster than the datasheet (multipliers ≥ 1), overheads are ≥ 0.
LOWER = np.array([1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0])

# Priors the fit is pulled towards where the data say little: a mean from public figures, and a scale such
# that mean ± 2 scales spans the physically plausible range.
PRIOR_MEAN = np.array(
    [
        1 / 0.75,  # large cuBLAS/rocBLAS/Metal GEMMs reach ~75 % of the dense tensor peak (plausible 25–95 %)
        1 / 0.60,  # dequantizing GEMMs (unpacking competes for issue slots) ~60 % (plausible 20–90 %)
        1 / 0.60,  # grouped MoE GEMMs ~60 % (uneven expert loads, small per-expert M; plausible 10–90 %)
        1 / 0.65,  # fp8/int8 GEMMs ~65 % of their doubled peak (scale epilogues, conversions; plausible 20–95 %)
        # no per-SM ceiling unless the data show one (plausible 0–4: ≥ 0.25 TFLOP/s per SM). The alternating
        # fit only moves a branch that limits some operator, so from 0 it stays 0 on today's data (a second
        # start at a binding ceiling was tried: worse out of sample, and 2× the fit time)
        0.0,
        1 / 0.85,  # stream/copy benchmarks (BabelStream) reach 85–92 % of datasheet bandwidth (plausible 50–95 %)
        4e-6,  # a CUDA kernel launch costs ~3–5 µs of host and scheduling time without CUDA graphs (0–20 µs)
        1.5e-6,  # inside a replayed CUDA graph a dependent kernel still waits ~1–2 µs (drain and ramp; 0–10 µs)
        100e-6,  # ~100 µs of host work per step (serving-and-architectures notes §3; 0–1 ms)
        1e-3,  # ~1 ms per request (tokenization, admission; AISimulate issue 277 saw ~30 ms on B200)
        1 / 0.8,  # NCCL all-reduce bus bandwidth ~80 % of the link's (plausible 30–95 %)
        2e-6,  # NCCL's tuning model: ~0.5–3.4 µs per NVLink hop, ~1–5.7 µs per PCIe hop (0–20 µs)
        # (with synchronisation and launch, a one-shot all-reduce of a small message takes ~5–20 µs)
        # ~4 µs per request in the batch per step: the per-request term of inference-sim/BLIS's step model
        # fitted on H100 vLLM traces (serving-and-architectures notes §2; plausible 0–40 µs: Python
        # schedulers, sampling and detokenization per sequence)
        4e-6,
    ]
)
PRIOR_SCALE = np.array([1.0, 1.5, 2.5, 1.5, 2.0, 0.4, 8e-6, 4e-6, 5e-4, 1e-2, 1.0, 1e-5, 2e-5])
# The prior counts as one record that is off by 100 % when a constant is one scale away from its mean.
PRIOR_WEIGHT = 1.0


@dataclass(frozen=True)
class Framework:
    """What a framework family's kernels do, as its documentation and source say (not fitted)."""

    name: str
    fp16_accumulate: bool  # fp16 GEMMs accumulate in fp16 (GeForce: 2× the fp32-accumulate peak)
    flash_attention: str  # attention kernel its records are analysed with ("off" | "tiled")
    fused: bool  # element-wise operators fused into neighbours (no traffic of their own)
    graphs: bool  # steps replayed as CUDA/HIP graphs or compiled engines: the graph_kernel_s overhead applies
    note: str
    # MoE expert GEMMs run as Ampere-class grouped GEMMs (warp-level mma.sync): narrow expert weights are
    # converted to 16 bits inside the kernel (read as stored, multiplied at the 16-bit rate), at the share of
    # the tensor peak that instruction reaches (LEGACY_MMA_SHARE on Hopper). Set by a version (VERSIONS).
    legacy_moe: bool = False
    version: str | None = None  # the version asked for ("0.9.0"); None: the family as it is today

    @property
    def label(self) -> str:
        """The family name, with the version when one was asked for ("TensorRT-LLM 0.9.0")."""
        return f"{self.name} {self.version}" if self.version else self.name


FRAMEWORKS = {
    "generic": Framework(
        "generic", False, "off", False, False, "no framework named: every constant from the pooled fit of all records"
    ),
    "llama.cpp": Framework(
        "llama.cpp",
        True,  # ggml-cuda runs F16 GEMMs through cuBLAS with CUBLAS_COMPUTE_16F (fp16 accumulation)
        "off",  # llama-bench's flash-attention flag was off by default until 2025
        False,  # one ggml kernel per graph node (norms, rope, adds, softmax are separate kernels)
        False,  # CUDA graphs only from mid-2024 builds on (the records' builds launch kernel by kernel)
        "ggml kernels: quantized GEMMs on int8 dot products of q8_1 activations (MMQ/MMVQ), fp16 cuBLAS, Metal",
    ),
    "MLX": Framework(
        "MLX",
        False,
        "tiled",  # mx.fast.scaled_dot_product_attention (fused attention)
        False,
        False,  # lazy graphs evaluated as Metal command buffers, one dispatch per kernel
        "Apple MLX / mlx-lm: Metal kernels, quantized matmuls on affine group-quantized weights",
    ),
    "vLLM": Framework(
        "vLLM",
        False,
        "tiled",  # FlashAttention / paged attention (ROCm: AITER / CK kernels)
        True,  # fused add-RMSNorm, SiLU-and-mul, rotary kernels
        True,  # decode steps replayed as CUDA/HIP graphs
        "vLLM: CUDA/HIP graphs, paged attention, fused element-wise kernels",
    ),
    "SGLang": Framework(
        "SGLang",
        False,
        "tiled",  # FlashInfer / FlashAttention-3 kernels
        True,  # fused norm and activation kernels
        True,  # CUDA graphs for decode
        "SGLang: FlashInfer attention, CUDA graphs, fused element-wise kernels",
    ),
    "TensorRT-LLM": Framework(
        "TensorRT-LLM",
        False,
        "tiled",  # context FMHA and masked multi-head attention (XQA) plugins
        True,  # TensorRT fuses element-wise layers into the GEMM epilogues
        True,  # a compiled TensorRT engine (and CUDA graphs where enabled)
        "TensorRT-LLM: compiled engines, fused kernels, FMHA/XQA attention",
    ),
}
_ALIASES = {k.lower(): k for k in FRAMEWORKS} | {
    "llamacpp": "llama.cpp",
    "ggml": "llama.cpp",
    "mlx-lm": "MLX",
    "trt-llm": "TensorRT-LLM",
    "tensorrt_llm": "TensorRT-LLM",
    "trtllm": "TensorRT-LLM",
}


# Kernel paths that changed with a framework's version: {family: (first version without them, the Framework
# fields before it, the evidence)}. A version is asked for as "family version" (framework="TensorRT-LLM 0.9.0").
VERSIONS: dict[str, tuple[tuple[int, ...], dict[str, object], str]] = {
    "TensorRT-LLM": (
        (0, 10),
        {"legacy_moe": True},
        "FP8 quantization for Mixtral is new in TensorRT-LLM 0.10.0 (release notes, "
        "https://github.com/NVIDIA/TensorRT-LLM/releases/tag/v0.10.0; 0.9.0 could not export an FP8 Mixtral, "
        "https://github.com/NVIDIA/TensorRT-LLM/issues/1229). Before it the model assumes the MoE plugin's "
        "CUTLASS grouped GEMMs of the Ampere generation, FP8 weights converted to 16 bits in the kernel: "
        "consistent with the 0.9.0 tables, where Mixtral gains 1.8x from A100 FP16 to H100 FP8 and Mistral 7B "
        "3.3x, and with its decode speed (the experts' bytes are FP8)",
    ),
}
# Share of the tensor-core peak that warp-level MMA (mma.sync, the Ampere-era instruction) reaches on devices
# whose peak needs warpgroup MMA (wgmma): "about 2/3" on Hopper (FlashAttention-3, Shah et al. 2024,
# arXiv:2407.08608, §2). Elsewhere the warp-level instruction is the native one (share 1); Blackwell's is not
# known here, so it is left at 1.
LEGACY_MMA_SHARE = 2.0 / 3.0
WGMMA_DEVICES = frozenset({"h100-sxm", "h100-pcie", "h100-nvl", "h200-sxm"})  # the catalog's Hopper (sm90) parts
_VERSION = re.compile(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\S*)$")


def legacy_mma_share(hw) -> float:
    """Share of ``hw``'s tensor peak an Ampere-class (mma.sync) kernel reaches (see LEGACY_MMA_SHARE)."""
    return LEGACY_MMA_SHARE if hw.id in WGMMA_DEVICES else 1.0


def framework(name) -> Framework:
    """The :class:`Framework` for a name (case-insensitive), optionally followed by a version ("TensorRT-LLM
    0.9.0": the kernel paths of that version, :data:`VERSIONS`); ValueError listing the allowed ones."""
    if isinstance(name, Framework):
        return name
    allowed = (
        f"framework must be one of {', '.join(map(repr, FRAMEWORKS))}, optionally followed by a version "
        f"(e.g. 'TensorRT-LLM 0.9.0'), got {name!r}"
    )
    if not isinstance(name, str):
        raise ValueError(allowed)
    text = name.strip()
    key = _ALIASES.get(text.lower())
    if key is not None:
        return FRAMEWORKS[key]
    head, _, ver = text.rpartition(" ")
    key = _ALIASES.get(head.strip().lower())
    m = _VERSION.match(ver)
    if key is None or m is None:
        raise ValueError(allowed)
    fw = dataclasses.replace(FRAMEWORKS[key], version=ver.lstrip("v"))
    rule = VERSIONS.get(fw.name)
    if rule is not None and tuple(int(g or 0) for g in m.groups()) < rule[0]:
        fw = dataclasses.replace(fw, **rule[1])  # type: ignore[arg-type]  # Framework fields named in VERSIONS
    return fw


def device_family(hw) -> str:
    """The device family the fit groups by: the catalog ``kind`` (datacenter-gpu, consumer-gpu, apple-silicon, …)."""
    return hw.kind or "custom"


# -- GEMM efficiency from the shape (physics, not fitted) ------------------------------------------------
# A GEMM with M token rows keeps its tensor units busy only when M fills the tiles and the pipeline: the
# rate rises as M / (M + M_HALF). M_HALF = 32: a batch-1 GEMV runs at ~3 % of the matrix peak (it is
# memory-bound anyway), M = 128 at 80 %, M ≥ 1024 at ≥ 97 % (the shape of cuBLAS efficiency curves, e.g.
# Calculon's size-dependent matrix efficiency tables). A matrix–vector kernel runs on the vector units, so
# the rate never falls below the vector peak.
M_HALF = 32.0
# Wave quantization: a GEMM is cut into TILE × TILE output tiles (cuBLAS/CUTLASS' common 128 × 128), one
# per SM at a time; a last partial wave leaves SMs idle: η_wave = tiles / (⌈tiles / SMs⌉ · SMs). With fewer
# tiles than SMs the libraries split the reduction dimension (split-K) to fill the machine, so no loss.
TILE = 128.0


def shape_efficiency(m, n, sm_count):
    """η_shape = M/(M + M_HALF) · η_wave(M, N, SMs) (n or sm_count None: no wave term)."""
    eta = m / (m + M_HALF)
    if n is None or not sm_count:
        return eta
    tiles = np.ceil(m / TILE) * math.ceil(n / TILE)
    waves = np.ceil(tiles / sm_count)
    wave = np.where(tiles > sm_count, tiles / np.maximum(waves * sm_count, 1.0), 1.0)
    return eta * wave


@dataclass(frozen=True)
class KernelModel:
    """The fitted constants for one framework family on one device family, and where they come from."""

    theta: tuple  # values in the order of PARAMS
    framework: Framework
    device_family: str
    scope: str  # the fit group they come from: "llama.cpp|apple-silicon", "llama.cpp|*", "*|*", …
    records: int  # measurements in that group

    def __getattr__(self, name):
        if name in PARAMS:
            return self.theta[PARAMS.index(name)]
        raise AttributeError(name)

    def to_dict(self) -> dict:
        return {
            "framework": self.framework.name,
            "device_family": self.device_family,
            "scope": self.scope,
            "records": self.records,
            **dict(zip(PARAMS, map(float, self.theta))),
        }


@lru_cache(maxsize=1)
def fitted() -> dict:
    """The fitted constants and their out-of-sample error bands (``data/calibration_fit.json``)."""
    if not FIT_FILE.exists():  # pragma: no cover - the file ships with the package
        return {"groups": {"*|*": {"theta": list(PRIOR_MEAN), "records": 0}}, "bands": {}}
    return json.loads(FIT_FILE.read_text())


def lookup(groups: dict, fw: str, dev: str) -> tuple[str, dict]:
    """The most specific fitted group for (framework, device family): fw|dev → fw|* → *|dev → *|*."""
    keys = (f"{fw}|{dev}", f"{fw}|*", f"*|{dev}", "*|*") if fw != "generic" else (f"*|{dev}", "*|*")
    for k in keys:
        if k in groups:
            return k, groups[k]
    return "prior", {"theta": list(PRIOR_MEAN), "records": 0}


def kernel_model(framework_name, hw, groups: dict | None = None) -> KernelModel:
    """The calibrated constants for a framework on a device (``groups``: a fit other than the shipped one)."""
    fw = framework(framework_name)
    dev = device_family(hw)
    scope, g = lookup(fitted()["groups"] if groups is None else groups, fw.name, dev)
    return KernelModel(tuple(float(x) for x in g["theta"]), fw, dev, scope, int(g.get("records", 0)))


PHASE_OF_METRIC = {
    "prefill_tokens_per_s": "prefill",
    "ttft_s": "prefill",
    "decode_tokens_per_s_per_sequence": "decode",
    "tpot_s": "decode",
    "e2e_s": "end-to-end",
    "output_tokens_per_s_per_gpu": "end-to-end",
}


def error_band(framework_name: str, dev: str, phase: str) -> dict | None:
    """Out-of-sample (leave one source out) |error| figures for the closest group with ≥ 3 records."""
    bands = fitted().get("bands", {})
    fw = framework(framework_name).name
    for key in (f"{fw}|{dev}|{phase}", f"{fw}|{dev}|*", f"{fw}|*|{phase}", f"*|{dev}|{phase}", f"*|*|{phase}", "*|*|*"):
        b = bands.get(key)
        if b and b["records"] >= 3:
            return {"scope": key, **b}
    return None
