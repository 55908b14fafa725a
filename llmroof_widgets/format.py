"""Readable units, used only at the edges (CLI, widgets' Python text). Inside, everything is SI."""

from __future__ import annotations


def _scaled(x: float, units: list[tuple[float, str]], digits: int = 3) -> str:
    ax = abs(x)
    for scale, name in units:
        if ax >= scale:
            return f"{x / scale:.{digits}g} {name}"
    scale, name = units[-1]
    return f"{x / scale:.{digits}g} {name}"


def fmt_bytes(x: float) -> str:
    """Decimal bytes: B, kB, MB, GB, TB."""
    return _scaled(x, [(1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB"), (1, "B")])


def fmt_flops(x: float) -> str:
    """FLOP counts: FLOP, kFLOP … PFLOP."""
    return _scaled(x, [(1e15, "PFLOP"), (1e12, "TFLOP"), (1e9, "GFLOP"), (1e6, "MFLOP"), (1e3, "kFLOP"), (1, "FLOP")])


def fmt_time(x: float) -> str:
    """Seconds: s, ms, µs, ns."""
    return _scaled(x, [(1, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")])
