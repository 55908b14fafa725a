"""Devices: memory capacity, memory bandwidth, dense peak FLOP/s per dtype, on-chip memory, links.

All values in SI units (bytes, bytes/s, FLOP/s, seconds). The catalog lives in
``llmroof_widgets/data/hardware.json`` with a source for every number.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from .catalog import DATA_DIR, _short
from .models import _finite, _is_number

DTYPES = ("fp32", "tf32", "fp16", "bf16", "fp8", "int8", "int4", "fp4")
MAX_QUANTITY = 1e21  # bytes, bytes/s or FLOP/s: far above any device (a zetta-unit), finite for every product


def _positive(field_name: str, v, alt: str = "") -> float:
    """A finite positive number (Python or numpy) up to :data:`MAX_QUANTITY`, as a float; else ValueError."""
    if not _is_number(v) or not _finite(v) or not 0 < v <= MAX_QUANTITY:
        raise ValueError(
            f"hardware field {field_name!r} must be a finite positive number ≤ {MAX_QUANTITY:g}"
            f"{' ' + alt if alt else ''}, got {_short(v)}"
        )
    return float(v)


@dataclass(frozen=True)
class Hardware:
    """A device for the roofline.

    ``peak_flops`` maps a dtype (``fp32``, ``tf32``, ``fp16``, ``bf16``, ``fp8``, ``int8``,
    ``int4``, ``fp4``) to its *dense* peak in FLOP/s (OP/s for integers); never the
    2:4-sparsity-doubled figure. ``vector_flops`` is the non-matrix-unit rate used for
    element-wise operators (norms, softmax, activations); it defaults to the fp32 peak.
    """

    name: str
    memory_bytes: float
    memory_bandwidth: float
    peak_flops: dict = field(default_factory=dict)
    vector_flops: float | None = None
    onchip_bytes_per_sm: float | None = None
    sm_count: int | None = None
    l2_bytes: float | None = None
    interconnect_bandwidth: float | None = None  # per direction, bytes/s
    interconnect_latency_s: float | None = None
    host_link_bandwidth: float | None = None  # per direction, bytes/s
    structured_sparsity: bool = False  # 2:4 sparse matrix units (2× the dense peak on 2:4 weights)
    tdp_watts: float | None = None  # board power limit (TDP/TBP), W: the serving power model's maximum
    idle_watts: float | None = None  # idle board power, W (None: a stated share of the TDP, see engine/serving.py)
    # GeForce: dense peaks of fp16/fp8 products accumulated in fp16, twice the fp32-accumulate peak_flops
    fp16_accumulate_flops: dict = field(default_factory=dict)
    id: str | None = None
    vendor: str | None = None
    kind: str | None = None
    source: str | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("hardware field 'name' must be a non-empty string")
        for f in ("id", "vendor", "kind", "source"):
            v = getattr(self, f)
            if v is not None and not isinstance(v, str):
                raise ValueError(f"hardware field {f!r} must be a string or None, got {_short(v)}")
        for f in ("memory_bytes", "memory_bandwidth"):
            object.__setattr__(self, f, _positive(f, getattr(self, f)))
        if not isinstance(self.peak_flops, dict) or not self.peak_flops:
            raise ValueError(f"hardware field 'peak_flops' must map a dtype ({', '.join(DTYPES)}) to FLOP/s")
        clean = {}
        for k, v in self.peak_flops.items():
            if not isinstance(k, str) or k not in DTYPES:
                raise ValueError(
                    f"hardware field 'peak_flops' has unknown dtype {_short(k)}; allowed: {', '.join(DTYPES)}"
                )
            if v is None:
                continue
            clean[k] = _positive(f"peak_flops[{k!r}]", v)
        if not clean:
            raise ValueError("hardware field 'peak_flops' has no positive peak")
        object.__setattr__(self, "peak_flops", clean)
        fast = self.fp16_accumulate_flops or {}
        if not isinstance(fast, dict) or any(
            k not in DTYPES or isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0
            for k, v in fast.items()
        ):
            raise ValueError(
                "hardware field 'fp16_accumulate_flops' must map a dtype "
                f"({', '.join(DTYPES)}) to a positive FLOP/s, got {fast!r}"
            )
        object.__setattr__(self, "fp16_accumulate_flops", {k: float(v) for k, v in fast.items()})
        for f in (
            "vector_flops",
            "onchip_bytes_per_sm",
            "l2_bytes",
            "interconnect_bandwidth",
            "interconnect_latency_s",
            "host_link_bandwidth",
            "tdp_watts",
            "idle_watts",
        ):
            v = getattr(self, f)
            if v is not None:
                object.__setattr__(self, f, _positive(f, v, "or None"))
        if self.sm_count is not None:
            v = self.sm_count
            if not _is_number(v) or not _finite(v) or not 1 <= v <= 10**7 or v != int(v):
                raise ValueError(
                    f"hardware field 'sm_count' must be a whole number in [1, 1e7] or None, got {_short(v)}"
                )
            object.__setattr__(self, "sm_count", int(v))
        if not isinstance(self.structured_sparsity, (bool, np.bool_)):
            raise ValueError(
                f"hardware field 'structured_sparsity' must be True or False, got {_short(self.structured_sparsity)}"
            )
        object.__setattr__(self, "structured_sparsity", bool(self.structured_sparsity))

    # -- peaks ------------------------------------------------------------------------------
    def matrix_peak(self, dtype: str) -> tuple[str, float]:
        """(dtype actually used, FLOP/s) for a matrix product computed in ``dtype``.

        Falls back along documented chains when the device lacks a unit for ``dtype``:
        fp16 ↔ bf16 (same width), then fp32; int4 → int8 → fp16; fp8 → fp16; fp4 → fp8 → fp16.
        """
        chains = {
            "fp32": ("fp32", "tf32", "fp16", "bf16"),
            "tf32": ("tf32", "fp32", "fp16", "bf16"),
            "fp16": ("fp16", "bf16", "fp32"),
            "bf16": ("bf16", "fp16", "fp32"),
            "fp8": ("fp8", "fp16", "bf16", "fp32"),
            "int8": ("int8", "fp16", "bf16", "fp32"),
            "int4": ("int4", "int8", "fp16", "bf16", "fp32"),
            "fp4": ("fp4", "fp8", "fp16", "bf16", "fp32"),
        }
        for d in chains.get(dtype, (dtype,)) + DTYPES:
            if d in self.peak_flops:
                return d, self.peak_flops[d]
        raise AssertionError("unreachable: peak_flops is never empty")  # pragma: no cover

    def fast_matrix_peak(self, dtype: str) -> tuple[str, float]:
        """Like :meth:`matrix_peak`, with the fp16-accumulate peak where the device has a faster one (GeForce)."""
        d, pk = self.matrix_peak(dtype)
        return d, max(pk, self.fp16_accumulate_flops.get(d, 0.0))

    @property
    def vector_peak(self) -> float:
        """FLOP/s for element-wise operators (non-tensor units)."""
        if self.vector_flops:
            return float(self.vector_flops)
        return self.matrix_peak("fp32")[1]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "id": self.id,
            "vendor": self.vendor,
            "kind": self.kind,
            "memory_bytes": float(self.memory_bytes),
            "memory_bandwidth": float(self.memory_bandwidth),
            "peak_flops": dict(self.peak_flops),
            "vector_flops": self.vector_peak,
            "onchip_bytes_per_sm": self.onchip_bytes_per_sm,
            "sm_count": self.sm_count,
            "interconnect_bandwidth": self.interconnect_bandwidth,
            "host_link_bandwidth": self.host_link_bandwidth,
            "structured_sparsity": self.structured_sparsity,
            "tdp_watts": self.tdp_watts,
            "idle_watts": self.idle_watts,
            "fp16_accumulate_flops": dict(self.fp16_accumulate_flops),
            "source": self.source,
        }


@lru_cache(maxsize=1)
def _catalog() -> dict[str, dict]:
    data = json.loads((DATA_DIR / "hardware.json").read_text())
    devices = data["devices"] if isinstance(data, dict) else data
    return {d["id"]: d for d in devices}


@lru_cache(maxsize=1)
def _aliases() -> dict[str, str]:
    out = {}
    for did, d in _catalog().items():
        out[did.lower()] = did
        for a in d.get("aliases", []) or []:
            out[a.lower()] = did
    return out


def list_hardware() -> list[str]:
    """Ids of the built-in device catalog."""
    return list(_catalog())


def hardware_catalog() -> list[dict]:
    """The raw catalog entries (with their sources)."""
    return [dict(d) for d in _catalog().values()]


def _from_entry(d: dict) -> Hardware:
    ic = d.get("interconnect") or {}
    host = d.get("host_link") or {}
    return Hardware(
        name=d.get("name") or d["id"],
        id=d["id"],
        vendor=d.get("vendor"),
        kind=d.get("kind"),
        memory_bytes=d["memory_bytes"],
        memory_bandwidth=d["memory_bandwidth"],
        peak_flops={k: v for k, v in d["peak_flops"].items() if v},
        vector_flops=d.get("vector_flops"),
        onchip_bytes_per_sm=d.get("onchip_bytes_per_sm"),
        sm_count=d.get("sm_count"),
        l2_bytes=d.get("l2_bytes"),
        interconnect_bandwidth=ic.get("bandwidth_per_direction"),
        interconnect_latency_s=ic.get("latency_s"),
        host_link_bandwidth=host.get("bandwidth_per_direction"),
        structured_sparsity=bool(d.get("structured_sparsity", False)),
        tdp_watts=d.get("tdp_watts"),
        idle_watts=d.get("idle_watts"),
        fp16_accumulate_flops=dict(d.get("peak_flops_fp16_accumulate") or {}),
        source=(d.get("sources") or {}).get("spec"),
    )


@lru_cache(maxsize=128)
def _load_catalog_device(did: str) -> Hardware:
    return _from_entry(_catalog()[did])


def load_hardware(x: Any) -> Hardware:
    """A catalog device by id or alias (case-insensitive), a dict of :class:`Hardware` fields, or a Hardware."""
    if isinstance(x, Hardware):
        return x
    if isinstance(x, dict):
        try:
            return Hardware(**x)
        except TypeError as e:
            raise ValueError(f"hardware: {e}") from None
    if not isinstance(x, str) or not x.strip():
        raise ValueError(f"hardware: expected a device id (see lr.list_hardware()) or lr.Hardware(...), got {x!r}")
    key = _aliases().get(x.strip().lower())
    if key is None:
        close = difflib.get_close_matches(x.strip().lower(), list(_aliases()), n=5, cutoff=0.4)
        hint = f" Closest: {', '.join(close)}." if close else ""
        raise ValueError(f"hardware: unknown device {x!r}.{hint} See lr.list_hardware(), or define lr.Hardware(...).")
    return _load_catalog_device(key)
