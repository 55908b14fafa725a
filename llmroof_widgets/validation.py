"""Validation against measured inference: predicted vs measured for every record with a source.

``lr.validate(mode="roofline" | "calibrated")`` maps each record of
``llmroof_widgets/data/measurements.json`` to engine settings (model, device, precision, batch,
lengths, devices as tensor parallelism) and to the metric it reports, predicts it, and returns a
DataFrame with the error of each record. In roofline mode every prediction is a lower bound on
time (an upper bound on throughput); the calibrated mode is an explained model of real kernels
(``engine/calibration.py``), not a fit to these records.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from .engine import analyze
from .engine.models import DATA_DIR

METRICS = (
    "prefill_tokens_per_s",
    "decode_tokens_per_s_per_sequence",
    "output_tokens_per_s_per_gpu",
    "ttft_s",
    "tpot_s",
    "e2e_s",
)
HIGHER_IS_FASTER = {"prefill_tokens_per_s", "decode_tokens_per_s_per_sequence", "output_tokens_per_s_per_gpu"}


def load_measurements(path: str | Path | None = None) -> list[dict]:
    data = json.loads(Path(path or DATA_DIR / "measurements.json").read_text())
    return data["records"] if isinstance(data, dict) else data


def _weight_format(precision: str) -> str:
    """The weight format named in a record's precision text."""
    p = precision.lower()
    for fmt in ("q8_0", "q4_0", "q4_k", "q5_k", "q6_k"):
        if fmt in p:
            return fmt
    m = re.match(r"\s*(weights\s+)?(fp16|bf16|fp32|fp8|int8|int4)", p)
    if m:
        return m.group(2)
    raise ValueError(f"unrecognized precision {precision!r}")


def record_settings(rec: dict) -> dict:
    """analyze() arguments for one record.

    - weights: the record's format (GGUF q8_0/q4_0 carry their block scales: 8.5 / 4.5 bits a weight);
      activations and KV cache: 16-bit (ggml's GPU backends run their matrix products in fp16; the
      KV cache is fp16 in every record);
    - ``num_devices`` > 1: tensor parallelism over that many devices;
    - decode records from an empty context (llama-bench tg128: prompt 0, 128 generated) become a one-token
      prompt followed by gen_len + 1 tokens, so that exactly gen_len decode steps are timed.
    """
    metric = rec["metric"]
    if metric not in METRICS:
        raise ValueError(f"record {rec.get('id')}: unknown metric {metric!r}")
    kw = dict(batch_size=int(rec["batch_size"]), w_bits=_weight_format(rec["precision"]), a_bits=16, kv_bits=16)
    n = int(rec.get("num_devices", 1) or 1)
    if n > 1:
        kw["tp"] = n
    P, G = int(rec["prompt_len"]), int(rec["gen_len"])
    if metric == "prefill_tokens_per_s":
        kw.update(prompt_len=P, gen_len=1)
    elif metric == "decode_tokens_per_s_per_sequence":
        kw.update(prompt_len=max(P, 1), gen_len=G + 1)
    elif metric == "ttft_s":
        kw.update(prompt_len=P, gen_len=max(G, 1))
    else:
        kw.update(prompt_len=P, gen_len=G)
    return kw


def predict(rec: dict, result) -> float:
    """The record's metric from an analysis of its settings."""
    g = result.generation
    metric = rec["metric"]
    if metric == "prefill_tokens_per_s":
        return result.settings["batch_size"] * result.settings["prompt_len"] / g["ttft_s"]
    if metric == "decode_tokens_per_s_per_sequence":
        return (result.settings["gen_len"] - 1) / g["decode_s"]
    if metric == "output_tokens_per_s_per_gpu":
        return g["throughput_per_device_tokens_per_s"]
    if metric == "ttft_s":
        return g["ttft_s"]
    if metric == "tpot_s":
        return g["tpot_s"]
    return g["e2e_s"]


def validate(mode: str = "roofline", records: list[dict] | None = None):
    """Predicted vs measured for every record; columns include ``error`` = predicted/measured − 1 in time terms.

    ``time_ratio`` = predicted time / measured time (< 1: the prediction is faster than reality). In
    roofline mode it should be ≤ 1 (a lower bound).
    """
    import pandas as pd

    if mode not in ("roofline", "calibrated"):
        raise ValueError(f"mode must be 'roofline' or 'calibrated', got {mode!r}")
    rows = []
    for rec in records if records is not None else load_measurements():
        kw = record_settings(rec)
        r = analyze(rec["model"], rec["hardware"], efficiency=mode, **kw)
        pred = predict(rec, r)
        meas = float(rec["value"])
        time_ratio = meas / pred if rec["metric"] in HIGHER_IS_FASTER else pred / meas
        rows.append(
            {
                "id": rec["id"],
                "model": rec["model"],
                "hardware": rec["hardware"],
                "framework": rec["framework"],
                "metric": rec["metric"],
                "batch_size": kw["batch_size"],
                "prompt_len": rec["prompt_len"],
                "gen_len": rec["gen_len"],
                "w_bits": kw["w_bits"],
                "measured": meas,
                "predicted": pred,
                "time_ratio": time_ratio,
                "error": time_ratio - 1.0,
                "abs_error": abs(time_ratio - 1.0),
                "lower_bound_holds": time_ratio <= 1.0 + 1e-9,
                "source": rec.get("source", ""),
            }
        )
    df = pd.DataFrame(rows)
    df.attrs["mode"] = mode
    return df


def summary(df) -> dict:
    """Median and 90th-percentile |error| (in time), and the share of records where the prediction is a lower bound."""
    return {
        "mode": df.attrs.get("mode"),
        "records": int(len(df)),
        "median_abs_error": float(np.median(df.abs_error)),
        "p90_abs_error": float(np.percentile(df.abs_error, 90)),
        "lower_bound_share": float(df.lower_bound_holds.mean()),
    }
