"""Numeric formats: bits per element, group-wise quantization overhead, and the dtype a product runs in."""

from __future__ import annotations

import numpy as np

ALLOWED_BITS = (4, 8, 16, 32)

# name → (bits per element, family). fp8 = e4m3 unless stated; nf4 = QLoRA NormalFloat4.
FORMATS = {
    "fp32": (32, "float"),
    "tf32": (32, "float"),
    "bf16": (16, "float"),
    "fp16": (16, "float"),
    "fp8": (8, "fp8"),
    "fp8_e4m3": (8, "fp8"),
    "fp8_e5m2": (8, "fp8"),
    "int8": (8, "int"),
    "int4": (4, "int"),
    "fp4": (4, "fp4"),
    "nf4": (4, "nf4"),
    # llama.cpp (GGUF) block formats: nominal bits, family; their block scales are in GGUF_STORAGE_BITS
    "q8_0": (8, "int"),
    "q4_0": (4, "int"),
    "q4_k": (4, "int"),
    "q5_k": (5, "int"),
    "q6_k": (6, "int"),
}
# bits per weight including block scales (ggml block layouts): q8_0 = 32 int8 + an fp16 scale → 8.5;
# q4_0 = 32 4-bit + an fp16 scale → 4.5; k-quants: 256-weight super-blocks with 6/8-bit sub-scales
GGUF_STORAGE_BITS = {"q8_0": 8.5, "q4_0": 4.5, "q4_k": 4.5, "q5_k": 5.5, "q6_k": 6.5625}
BITS_TO_FORMAT = {32: "fp32", 16: "fp16", 8: "int8", 4: "int4"}

# Per-group metadata bits for weight formats quantized in groups of g weights (added as bits/g per weight):
GROUP_OVERHEAD_BITS = {
    "int": lambda bits: 16 + bits,  # an fp16 scale and a `bits`-wide zero point per group (GPTQ/AWQ layout)
    "nf4": lambda bits: 16,  # an fp16 absmax scale per block (bitsandbytes, without double quantization)
    "fp4": lambda bits: 8,  # an 8-bit (e8m0) shared exponent per block (MXFP4)
    "fp8": lambda bits: 32,  # an fp32 scale per block (DeepSeek-V3 style 128-wide blocks)
    "float": lambda bits: 0,
}


def check_format(field: str, value) -> str:
    """A bit width (4, 8, 16, 32) or a format name → the format name."""
    if isinstance(value, str):
        v = value.strip().lower()
        if v in FORMATS:
            return v
    elif (
        not isinstance(value, (bool, np.bool_))
        and isinstance(value, (int, float, np.integer, np.floating))
        and value in ALLOWED_BITS
    ):
        return BITS_TO_FORMAT[int(value)]
    raise ValueError(
        f"{field} must be one of {', '.join(map(str, ALLOWED_BITS))} bits or a format name "
        f"({', '.join(FORMATS)}), got {value!r}"
    )


def compute_dtype(w_fmt: str, a_fmt: str) -> str:
    """The dtype a product of a stored operand (weights or cache) and an activation runs in.

    An activation of 16 bits or more means the narrow operand is dequantized and the product
    runs in the activation's floating-point format (weight-only int4 with fp16 activations
    computes in fp16). With 8- or 4-bit activations the narrow units are used: W8A8 int8 → int8,
    W4A8 → int8, W4A4 → int4, fp8 activations → fp8, fp4 × fp4 → fp4.
    """
    abits, afam = FORMATS[a_fmt]
    wbits, wfam = FORMATS[w_fmt]
    if abits >= 16:
        return "fp32" if abits == 32 else ("bf16" if a_fmt == "bf16" else "fp16")
    if wbits > abits:  # a wider stored operand than the activation: compute at the stored width
        return {"int": "int8", "fp8": "fp8"}.get(wfam, "fp16") if wbits == 8 else "fp16"
    if afam == "int":
        return "int4" if abits <= 4 else "int8"
    if afam in ("fp4", "nf4"):
        return "fp4"
    return "fp8"


class Precision:
    """Bytes per element of each tensor class for one analysis."""

    __slots__ = (
        "w_fmt",
        "a_fmt",
        "kv_fmt",
        "w_bits",
        "a_bits",
        "kv_bits",
        "w",
        "a",
        "kv",
        "hp",
        "hp_bits",
        "hp_fmt",
        "group_size",
        "w_storage_bits",
    )

    def __init__(self, w_bits, a_bits, kv_bits, group_size: int | None = None):
        self.w_fmt = check_format("w_bits", w_bits)
        self.a_fmt = check_format("a_bits", a_bits)
        self.kv_fmt = check_format("kv_bits", kv_bits)
        if group_size is not None and (
            isinstance(group_size, (bool, np.bool_))
            or not isinstance(group_size, (int, np.integer))
            or not 1 <= group_size <= 2**20
        ):
            raise ValueError(
                f"group_size must be a positive integer ≤ 2**20 (e.g. 32, 64, 128) or None, got {group_size!r}"
            )
        self.group_size = None if group_size is None else int(group_size)
        self.w_bits = FORMATS[self.w_fmt][0]
        self.a_bits = FORMATS[self.a_fmt][0]
        self.kv_bits = FORMATS[self.kv_fmt][0]
        wbits = float(self.w_bits)
        if self.w_fmt in GGUF_STORAGE_BITS:
            wbits = GGUF_STORAGE_BITS[self.w_fmt]  # the block scales are part of the format
        elif group_size and self.w_bits < 16:
            # group-wise scales (and zero points) add their bits spread over the group
            wbits += GROUP_OVERHEAD_BITS[FORMATS[self.w_fmt][1]](self.w_bits) / group_size
        self.w_storage_bits = wbits
        self.w = wbits / 8  # bytes per weight of the linear layers (projections, experts)
        self.a = self.a_bits / 8  # bytes per activation element
        self.kv = GGUF_STORAGE_BITS.get(self.kv_fmt, self.kv_bits) / 8  # bytes per cached key/value element
        # embeddings, lm_head, norms, biases and routers stay in 16-bit floating point when the
        # linear layers are quantized (as AWQ/GPTQ/bitsandbytes checkpoints keep them), fp32 in an fp32 model
        self.hp_bits = 32 if self.w_bits == 32 else 16
        self.hp_fmt = "fp32" if self.hp_bits == 32 else ("bf16" if self.w_fmt == "bf16" else "fp16")
        self.hp = self.hp_bits / 8
