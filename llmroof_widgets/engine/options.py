"""The survey's inference techniques as analysis options, validated (``ValueError`` naming the field).

Every option at its default reproduces the plain analysis exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

FLASH = ("off", "ideal", "tiled")


def _is_real(v) -> bool:
    """A finite real number: Python or numpy ints and floats, never a bool."""
    if isinstance(v, (bool, np.bool_)):
        return False
    if isinstance(v, (int, np.integer)):
        return True  # a huge int is finite (math.isfinite would overflow converting it)
    return isinstance(v, (float, np.floating)) and math.isfinite(v)


def _frac(field_name: str, v, *, low_open=True) -> float:
    if not _is_real(v):
        raise ValueError(f"{field_name} must be a number in (0, 1], got {v!r}")
    v = float(v)
    if not (0.0 < v <= 1.0) if low_open else not (0.0 <= v <= 1.0):
        raise ValueError(f"{field_name} must be in {'(0, 1]' if low_open else '[0, 1]'}, got {v!r}")
    return v


def _whole(v) -> bool:
    return _is_real(v) and float(v).is_integer()


def _degree(field_name: str, v) -> int:
    if not (isinstance(v, (int, np.integer)) and _whole(v)) or not 1 <= v <= 10**6:
        raise ValueError(f"{field_name} must be a whole number in [1, 1e6], got {v!r}")
    return int(v)


@dataclass(frozen=True)
class Options:
    """Technique knobs of one analysis (see :func:`llmroof_widgets.analyze` for each one's model).

    - ``flash_attention``: "off" (scores written and read back), "ideal" (Q, K, V read once, O
      written once), "tiled" (FlashAttention-2 tiling with the device's per-SM on-chip memory).
    - ``fused``: element-wise operators (norms, activations, residual adds, rotary, softmax) fused
      into their neighbours: their intermediate tensors never reach device memory.
    - ``kv_keep_ratio`` / ``kv_budget``: KV eviction (H2O / SnapKV): decode keeps that share (or at most
      that many tokens) of the cache, in memory and in attention traffic.
    - ``early_exit_fraction``: mean share of the layers a decode token runs.
    - ``sparsity``: None, "2:4" (structured: half the weights + 2-bit indices; 2× compute only on
      devices with sparse tensor cores), or a float s in [0, 1) (unstructured: non-zeros + a bitmask;
      no compute speed-up).
    - ``offload``: {"weights": f, "kv_cache": f, "experts": f}: share held in host memory and streamed
      over the host link each time it is used (overlapped with device memory reads).
    - ``tp``, ``pp``, ``ep``: tensor, pipeline and expert parallel degrees.
    - ``efficiency``: "roofline" (default: every factor 1.0, a strict lower bound), "calibrated" (the
      explained model of real kernels in :mod:`calibration`), or {"compute": f, "memory": f,
      "communication": f} factors on the peaks.
    """

    flash_attention: str = "off"
    fused: bool = False
    kv_keep_ratio: float = 1.0
    kv_budget: int | None = None
    early_exit_fraction: float = 1.0
    sparsity: object = None
    offload: dict = field(default_factory=dict)
    tp: int = 1
    pp: int = 1
    ep: int = 1
    efficiency: dict | str = field(default_factory=dict)  # dict of factors, or "calibrated"

    @property
    def devices(self) -> int:
        return self.tp * self.pp * self.ep


def make_options(
    *,
    flash_attention="off",
    fused=False,
    kv_keep_ratio=1.0,
    kv_budget=None,
    early_exit_fraction=1.0,
    sparsity=None,
    offload=None,
    tp=1,
    pp=1,
    ep=1,
    efficiency=None,
) -> Options:
    if flash_attention not in FLASH:
        raise ValueError(f"flash_attention must be one of {', '.join(map(repr, FLASH))}, got {flash_attention!r}")
    if not isinstance(fused, (bool, np.bool_)):
        raise ValueError(f"fused must be True or False, got {fused!r}")
    fused = bool(fused)
    kv_keep_ratio = _frac("kv_keep_ratio", kv_keep_ratio)
    if kv_budget is not None:
        if not (isinstance(kv_budget, (int, np.integer)) and _whole(kv_budget)) or not 1 <= kv_budget <= 10**9:
            raise ValueError(f"kv_budget must be a whole number of tokens in [1, 1e9] or None, got {kv_budget!r}")
        kv_budget = int(kv_budget)
    early_exit_fraction = _frac("early_exit_fraction", early_exit_fraction)
    if sparsity is not None and not (isinstance(sparsity, str) and sparsity == "2:4"):
        if not _is_real(sparsity) or not (0.0 <= sparsity < 1.0):
            raise ValueError(f"sparsity must be None, '2:4', or the share of zero weights in [0, 1), got {sparsity!r}")
        sparsity = float(sparsity)
    off = {}
    if offload:
        if not isinstance(offload, dict):
            raise ValueError("offload must be a dict like {'weights': 0.5, 'kv_cache': 0.0, 'experts': 1.0}")
        for k, v in offload.items():
            if k not in ("weights", "kv_cache", "experts"):
                raise ValueError(f"offload key {k!r} is not one of 'weights', 'kv_cache', 'experts'")
            off[k] = _frac(f"offload[{k!r}]", v, low_open=False)
    eff: dict | str = {}
    if efficiency in ("roofline", "calibrated"):
        eff = {} if efficiency == "roofline" else "calibrated"
    elif efficiency:
        if not isinstance(efficiency, dict):
            raise ValueError(
                "efficiency must be 'roofline', 'calibrated', or a dict like "
                "{'compute': 0.7, 'memory': 0.85, 'communication': 0.8}"
            )
        eff = {}
        for k, v in efficiency.items():
            if k not in ("compute", "memory", "communication"):
                raise ValueError(f"efficiency key {k!r} is not one of 'compute', 'memory', 'communication'")
            eff[k] = _frac(f"efficiency[{k!r}]", v)
    return Options(
        flash_attention=flash_attention,
        fused=fused,
        kv_keep_ratio=kv_keep_ratio,
        kv_budget=kv_budget,
        early_exit_fraction=early_exit_fraction,
        sparsity=sparsity,
        offload=off,
        tp=_degree("tp", tp),
        pp=_degree("pp", pp),
        ep=_degree("ep", ep),
        efficiency=eff,
    )


def kv_heads_per_device(num_kv_heads: int, tp: int) -> int:
    """KV heads one tensor-parallel device holds: its shard, or one replicated head when tp exceeds them."""
    return num_kv_heads // tp if num_kv_heads % tp == 0 else 1


def validate_for(opts: Options, model, hardware, batch_size: int) -> None:
    """Checks that need the model or the device."""
    if getattr(model, "traced", None) is not None:
        model.traced.validate(opts)  # tp/pp/ep do not apply to a traced model
    tp = opts.tp
    for lt in model.layer_types:
        if lt.mixer is not None:
            _validate_mixer_tp(lt.mixer, tp)
        a = lt.attention
        if a is None:
            pass
        elif a.num_heads % tp:
            raise ValueError(
                f"tp = {tp} does not divide num_attention_heads = {a.num_heads}; allowed tp: "
                f"{', '.join(str(d) for d in range(1, a.num_heads + 1) if a.num_heads % d == 0)}"
            )
        elif a.kind == "mha" and a.num_kv_heads % tp and tp % a.num_kv_heads:
            raise ValueError(
                f"tp = {tp} and num_key_value_heads = {a.num_kv_heads}: one must divide the other "
                "(KV heads are sharded, or replicated when tp exceeds them)"
            )
        if lt.mlp is None:
            continue
        width = lt.mlp.intermediate_size
        if width % tp:
            raise ValueError(f"tp = {tp} does not divide the MLP intermediate size {width}")
        if lt.mlp.kind == "moe" and lt.mlp.num_experts % opts.ep:
            raise ValueError(f"ep = {opts.ep} does not divide the number of experts {lt.mlp.num_experts}")
    if opts.ep > 1 and not model.is_moe:
        raise ValueError("ep > 1 needs a mixture-of-experts model")
    if opts.pp > model.num_layers:
        raise ValueError(f"pp = {opts.pp} exceeds the number of layers {model.num_layers}")
    if opts.ep > batch_size:
        raise ValueError(f"ep = {opts.ep} exceeds batch_size = {batch_size}: attention is data-parallel over EP ranks")
    if (tp > 1 or opts.pp > 1 or opts.ep > 1) and not hardware.interconnect_bandwidth:
        raise ValueError(f"hardware {hardware.name!r} has no interconnect_bandwidth: needed for tp/pp/ep > 1")
    if any(opts.offload.values()) and not hardware.host_link_bandwidth:
        raise ValueError(f"hardware {hardware.name!r} has no host_link_bandwidth: needed for offload")


def _validate_mixer_tp(r, tp: int) -> None:
    """Tensor parallelism of a recurrent mixer shards its heads (and its convolution channels with them)."""
    if tp == 1:
        return
    for what, n in (("heads", r.num_heads), ("groups / key heads", r.n_groups), ("channels", r.conv_dim)):
        if r.kind in ("short_conv", "mamba") and what != "channels":
            continue  # no heads to shard: the channels (Mamba: its inner channels, d_inner)
        if n % tp:
            raise ValueError(
                f"tp = {tp} does not divide the {r.kind} mixer's {what} ({n}); allowed tp: divisors of {n}"
            )
