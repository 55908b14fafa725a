"""``analyze``: settings → operators → roofline times → memory → a :class:`Result`."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import generation, memory
from .hardware import Hardware, load_hardware
from .models import ModelConfig, load_model
from .ops import PassBuilder, Row
from .precision import Precision, check_bits
from .roofline import pass_time, row_dict

LOGITS = ("last", "all")
ATTENTION = ("causal", "full")
MLA = ("absorbed", "naive")


def _check_count(field: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or value != value or int(value) != value:
        raise ValueError(f"{field} must be a whole number ≥ {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{field} must be ≥ {minimum}, got {int(value)}")
    if value > 10**9:
        raise ValueError(f"{field} must be ≤ 1e9, got {int(value)}")
    return int(value)


def _check_choice(field: str, value, allowed) -> str:
    if value not in allowed:
        raise ValueError(f"{field} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


@dataclass
class Phase:
    """One forward pass: the prefill, or one decode step."""

    name: str
    tokens: int  # new tokens per sequence
    context: int  # tokens attended by the last new token (cached + new)
    rows: list[Row]
    time_s: float
    hardware: Hardware

    @property
    def flops(self) -> float:
        return float(sum(r.count * r.flops for r in self.rows))

    @property
    def matmul_flops(self) -> float:
        return float(sum(r.count * r.matmul_flops for r in self.rows))

    @property
    def bytes(self) -> float:
        return float(sum(r.count * r.bytes for r in self.rows))

    @property
    def ops(self) -> list[dict]:
        return [row_dict(r, self.hardware, self.time_s) for r in self.rows]

    def to_dict(self) -> dict:
        ops = self.ops
        fl, by = self.flops, self.bytes
        compute_t = sum(o["count"] * o["compute_time_s"] for o in ops if o["bound"] == "compute")
        return {
            "tokens": self.tokens,
            "context": self.context,
            "flops": fl,
            "matmul_flops": self.matmul_flops,
            "bytes": by,
            "weight_bytes": float(sum(r.count * r.weight_bytes for r in self.rows)),
            "kv_bytes": float(sum(r.count * r.kv_bytes for r in self.rows)),
            "activation_bytes": float(sum(r.count * r.activation_bytes for r in self.rows)),
            "arithmetic_intensity": fl / by if by else 0.0,
            "time_s": self.time_s,
            # a phase is compute-bound when most of its time is spent in compute-bound operators
            "bound": "compute" if compute_t >= 0.5 * self.time_s else "memory",
            "ops": ops,
        }


class Result:
    """The analysis of one model on one device for one workload. ``to_dict()`` gives plain data."""

    def __init__(self, model: ModelConfig, hardware: Hardware, settings: dict, prefill: Phase, decode: Phase,
                 step_contexts: np.ndarray, step_times: np.ndarray, generation_summary: dict, memory_summary: dict):
        self.model = model
        self.hardware = hardware
        self.settings = settings
        self.prefill = prefill
        self.decode = decode
        self.decode_contexts = step_contexts  # tokens attended at each decode step (cached + 1)
        self.decode_step_times_s = step_times
        self.generation = generation_summary
        self.memory = memory_summary

    @property
    def params_total(self) -> int:
        return memory.params_total(self.prefill.rows)

    @property
    def params_active(self) -> int:
        """Parameters one token uses: all but the routed experts it does not visit (top-k of E)."""
        total = 0.0
        for r in self.prefill.rows:
            if r.name in ("experts_gate_up", "experts_down"):
                lt = next(lt for lt in self.model.layer_types if lt.name == r.layer_type)
                total += r.count * r.params * lt.mlp.top_k / lt.mlp.num_experts
            else:
                total += r.count * r.params
        return int(round(total))

    def to_dict(self) -> dict:
        m = self.model
        gen = dict(self.generation)
        gen["decode_step_times_s"] = [float(x) for x in self.decode_step_times_s]
        gen["decode_contexts"] = [int(x) for x in self.decode_contexts]
        return {
            "model": {
                **m.to_dict(),
                "params_total": self.params_total,
                "params_active": self.params_active,
            },
            "hardware": self.hardware.to_dict(),
            "settings": dict(self.settings),
            "prefill": self.prefill.to_dict(),
            "decode": self.decode.to_dict(),
            "generation": gen,
            "memory": dict(self.memory),
            "notes": {
                "time": "roofline times are lower bounds: each operator at the device's peak compute or peak bandwidth",
                "ttft": "time to first token = prefill time",
                "tpot": "time per output token after the first = (e2e − ttft)/(gen_len − 1)",
                "tokens_per_s": "generated tokens per second for one sequence (one user), end to end",
                "throughput_tokens_per_s": "generated tokens per second for the whole batch, per device",
            },
        }

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    def save(self, path) -> None:
        """Write ``to_dict()`` as JSON (conventionally ``*.llmroof.json``)."""
        with open(path, "w") as f:
            json.dump(self.to_dict(), f)

    def __repr__(self) -> str:
        g = self.generation
        return (f"<Result {self.model.name} on {self.hardware.name}: TTFT {g['ttft_s'] * 1e3:.3g} ms, "
                f"TPOT {g['tpot_s'] * 1e3:.3g} ms, memory {self.memory['total_bytes'] / 1e9:.3g} GB"
                f"{'' if self.memory['fits'] else ' (does not fit)'}>")


def analyze(model: Any, hardware: Any, *, batch_size: int = 1, prompt_len: int = 1024, gen_len: int = 256,
            w_bits: int = 16, a_bits: int = 16, kv_bits: int = 16, logits: str = "last",
            attention: str = "causal", mla: str = "absorbed") -> Result:
    """Roofline and memory analysis of generating ``gen_len`` tokens after a ``prompt_len`` prompt.

    Parameters
    ----------
    model : catalog name, path to a config.json (or folder), config dict, or ModelConfig
    hardware : catalog device id, or :class:`Hardware`
    batch_size : sequences processed together
    prompt_len : prompt tokens per sequence (prefill)
    gen_len : tokens generated per sequence (the first comes from the prefill)
    w_bits, a_bits, kv_bits : bits per weight (linear layers), activation and KV-cache element (4, 8, 16, 32)
    logits : ``"last"`` — the prefill computes logits for the last position only (what generation
        needs); ``"all"`` — for every prompt position, as a ``transformers`` forward does
    attention : ``"causal"`` — the prefill counts only the causal half of the score matrix (query i
        attends i keys; what fast kernels compute); ``"full"`` — the whole S×S matrix, as eager attention
        computes before masking (what ``FlopCounterMode`` counts)
    mla : for multi-head latent attention (DeepSeek) decode: ``"absorbed"`` (weights absorbed,
        attention over the cached latent, as FlashMLA does) or ``"naive"`` (the latent re-expanded
        through ``kv_b_proj`` for every cached token at every step, as ``transformers`` does)
    """
    m = load_model(model)
    hw = load_hardware(hardware)
    B = _check_count("batch_size", batch_size)
    P = _check_count("prompt_len", prompt_len)
    G = _check_count("gen_len", gen_len)
    prec = Precision(check_bits("w_bits", w_bits), check_bits("a_bits", a_bits), check_bits("kv_bits", kv_bits))
    _check_choice("logits", logits, LOGITS)
    _check_choice("attention", attention, ATTENTION)
    _check_choice("mla", mla, MLA)
    settings = {
        "model": m.name, "hardware": hw.name, "batch_size": B, "prompt_len": P, "gen_len": G,
        "w_bits": prec.w_bits, "a_bits": prec.a_bits, "kv_bits": prec.kv_bits, "logits": logits,
        "attention": attention, "mla": mla,
    }

    pre_rows = PassBuilder(m, prec, batch=B, tokens=P, cached=0, logits_tokens=P if logits == "all" else 1,
                           attention=attention, mla=mla).build()
    pre = Phase("prefill", P, P, pre_rows, float(pass_time(pre_rows, hw)), hw)
    dec_rows = PassBuilder(m, prec, batch=B, tokens=1, cached=P, logits_tokens=1, attention="causal",
                           mla=mla).build()
    dec = Phase("decode", 1, P + 1, dec_rows, float(pass_time(dec_rows, hw)), hw)

    cached, steps = generation.decode_step_times(m, prec, hw, batch=B, prompt_len=P, gen_len=G, mla=mla)
    gen = generation.summarize(pre.time_s, steps, batch=B, gen_len=G, first_step_time=dec.time_s)
    mem = memory.footprint(m, prec, hw.memory_bytes, batch=B, prompt_len=P, gen_len=G,
                           prefill_rows=pre_rows, decode_rows=dec_rows)
    return Result(m, hw, settings, pre, dec, cached + 1, steps, gen, mem)
