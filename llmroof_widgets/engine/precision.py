"""Numeric formats: bits per element, bytes, and the dtype a product is computed in."""
from __future__ import annotations

ALLOWED_BITS = (4, 8, 16, 32)


def check_bits(field: str, value) -> int:
    """Validate a bit width setting; returns it as an int."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value not in ALLOWED_BITS:
        raise ValueError(f"{field} must be one of {', '.join(map(str, ALLOWED_BITS))} bits, got {value!r}")
    return int(value)


def compute_dtype(*operand_bits: int) -> str:
    """The dtype a product of operands with these widths is computed in.

    The widest operand decides: anything at 16 bits or wider is dequantized and computed in
    floating point (weight-only int4 with fp16 activations computes in fp16); when every
    operand is 8 bits or narrower the integer units are used (W8A8 → int8, W4A4 → int4).
    """
    m = max(operand_bits)
    return {32: "fp32", 16: "fp16", 8: "int8", 4: "int4"}[m]


class Precision:
    """Bytes per element of each tensor class for one analysis."""

    __slots__ = ("w_bits", "a_bits", "kv_bits", "w", "a", "kv", "hp", "hp_bits")

    def __init__(self, w_bits: int, a_bits: int, kv_bits: int):
        self.w_bits, self.a_bits, self.kv_bits = w_bits, a_bits, kv_bits
        self.w = w_bits / 8  # bytes per weight of the linear layers (projections, experts)
        self.a = a_bits / 8  # bytes per activation element
        self.kv = kv_bits / 8  # bytes per cached key/value element
        # embeddings, lm_head, norms, biases and routers stay in 16-bit floating point when the
        # linear layers are quantized (as AWQ/GPTQ/bitsandbytes checkpoints keep them), fp32 in an fp32 model
        self.hp_bits = 32 if w_bits == 32 else 16
        self.hp = self.hp_bits / 8
