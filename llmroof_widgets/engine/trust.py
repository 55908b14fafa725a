"""What each time figure of a Result is: a roofline lower bound, a calibrated estimate with its
out-of-sample error band, or a measured value (where a public measurement matches the setting).

``Result.to_dict()["generation"]["trust"]`` holds one label per figure (``ttft_s``, ``tpot_s``,
``e2e_s``; throughputs follow ``e2e_s``) and a one-line ``summary`` the views show beside the headline.
"""

from __future__ import annotations

from functools import lru_cache

from . import calibration
from .precision import check_format

FIGURES = {"ttft_s": "prefill", "tpot_s": "decode", "e2e_s": "end-to-end"}
# The figure each measured metric informs.
FIGURE_OF_METRIC = {
    "prefill_tokens_per_s": "ttft_s",
    "ttft_s": "ttft_s",
    "decode_tokens_per_s_per_sequence": "tpot_s",
    "tpot_s": "tpot_s",
    "e2e_s": "e2e_s",
    "output_tokens_per_s_per_gpu": "e2e_s",
}


def _fmt(x) -> str:
    return check_format("bits", x)


@lru_cache(maxsize=1)
def _index() -> dict:
    """Measurements keyed by (model, device, framework, batch, prompt, weights, activations, kv, tp)."""
    from . import fit
    from .models import load_model

    out: dict = {}
    for rec in fit._default_records():
        kw = fit.record_settings(rec)
        name = load_model(fit.record_model(rec)).name
        key = (
            name,
            rec["hardware"],
            kw["batch_size"],
            kw["prompt_len"],
            _fmt(kw["w_bits"]),
            _fmt(kw["a_bits"]),
            _fmt(kw["kv_bits"]),
            kw.get("tp", 1),
        )
        out.setdefault(key, []).append((rec, kw))
    return out


def measured(result) -> dict:
    """{figure: measured seconds with its record} for the public measurements that match the setting."""
    from . import fit

    s = result.settings
    if s.get("pp", 1) != 1 or s.get("ep", 1) != 1 or s.get("speculative") or any(s.get("offload", {}).values()):
        return {}
    try:
        key = (
            s["model"],
            result.hardware.id,
            s["batch_size"],
            s["prompt_len"],
            _fmt(s["w_bits"]),
            _fmt(s["a_bits"]),
            _fmt(s["kv_bits"]),
            s.get("tp", 1),
        )
    except ValueError:
        return {}
    out: dict = {}
    for rec, kw in _index().get(key, []):
        fw = calibration.framework(kw["framework"]).name  # families match, whatever the versions
        if calibration.framework(s.get("framework", "generic")).name not in ("generic", fw):
            continue
        figure = FIGURE_OF_METRIC[rec["metric"]]
        # a decode or end-to-end measurement holds for its number of generated tokens only
        if figure != "ttft_s" and kw["gen_len"] != s["gen_len"]:
            continue
        t = fit.measured_time(rec, kw)
        if figure == "tpot_s":
            t = t / max(kw["gen_len"] - 1, 1)
        out.setdefault(figure, []).append(
            {
                "seconds": t,
                "metric": rec["metric"],
                "value": rec["value"],
                "unit": rec.get("unit"),
                "framework": rec.get("framework"),
                "record": rec["id"],
                "source": rec.get("source"),
            }
        )
    return out


def label(result) -> dict:
    """The trust label of every time figure of ``result`` (see the module docstring)."""
    s = result.settings
    eff = s.get("efficiency")
    dev = calibration.device_family(result.hardware)
    fw = s.get("framework", "generic")
    meas = measured(result)
    out: dict = {}
    for figure, phase in FIGURES.items():
        if eff == "calibrated":
            band = calibration.error_band(fw, dev, phase)
            lab = {
                "kind": "calibrated estimate",
                "framework": fw,
                "device_family": dev,
                "error_band": band,
                "source": "fit of data/measurements.json (engine/fit.py); band: leave-one-source-out errors",
            }
        elif isinstance(eff, dict) and eff:
            lab = {"kind": "efficiency factors", "error_band": None, "source": "user-set efficiency factors"}
        else:
            lab = {
                "kind": "roofline lower bound",
                "error_band": None,
                "source": "datasheet peaks (data/hardware.json): real runs take longer",
            }
        if figure in meas:
            lab = {"kind": "measured", "measurements": meas[figure], "model": lab}
        out[figure] = lab
    out["summary"] = summary(out)
    return out


def summary(labels: dict) -> str:
    """One line for a headline: what the TTFT and TPOT figures are."""
    parts = []
    for figure, name in (("ttft_s", "TTFT"), ("tpot_s", "TPOT")):
        lab = labels[figure]
        if lab["kind"] == "measured":
            m = lab["measurements"][0]
            parts.append(f"{name}: measured {m['seconds'] * 1e3:.3g} ms ({m['framework']}, {m['source']})")
        elif lab["kind"] == "calibrated estimate":
            b = lab["error_band"]
            band = f" ±{b['median_abs_error']:.0%} typical, ±{b['p90_abs_error']:.0%} p90 out of sample" if b else ""
            parts.append(f"{name}: calibrated estimate ({lab['framework']}){band}")
        else:
            parts.append(f"{name}: {lab['kind']}")
    return "; ".join(parts)
