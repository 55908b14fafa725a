"""Validation against measured inference: predicted vs measured for every record with a source.

``lr.validate(mode="roofline" | "calibrated", cv=None | "source")`` maps each record of
``llmroof_widgets/data/measurements.json`` to engine settings (model, device, precision, batch, lengths,
devices as tensor parallelism, framework family) and to the metric it reports, predicts it, and returns a
DataFrame with the error of each record.

- roofline mode: every prediction is a lower bound on time (an upper bound on throughput); nothing is fitted.
- calibrated mode, ``cv=None``: the shipped fit (``data/calibration_fit.json``), fitted on *these* records —
  in-sample figures, optimistic.
- calibrated mode, ``cv="source"``: leave one source out — for each source, the kernel model is refitted
  without its records and predicts them. These out-of-sample figures are the honest error of the mode.
"""

from __future__ import annotations

import numpy as np

from .engine import analyze, calibration, fit
from .engine.fit import HIGHER_IS_FASTER, METRICS, load_measurements, record_model, record_settings  # noqa: F401

CV = (None, "source")


def predict(rec: dict, result) -> float:
    """The record's metric from an analysis of its settings."""
    g = result.generation
    metric = rec["metric"]
    if metric == "prefill_tokens_per_s":
        # the prefill pass alone (llama-bench / mlx_lm time the forward pass, no request overhead)
        pre = result.prefill.time_s  # the pass alone: TTFT also holds the per-request overhead
        return result.settings["batch_size"] * result.settings["prompt_len"] / pre
    if metric == "decode_tokens_per_s_per_sequence":
        return (result.settings["gen_len"] - 1) / g["decode_s"]
    if metric == "output_tokens_per_s_per_gpu":
        return g["throughput_per_device_tokens_per_s"]
    if metric == "ttft_s":
        return g["ttft_s"]
    if metric == "tpot_s":
        return g["tpot_s"]
    return g["e2e_s"]


def _row(rec: dict, kw: dict, pred: float, mode: str, scope: str | None) -> dict:
    meas = float(rec["value"])
    time_ratio = meas / pred if rec["metric"] in HIGHER_IS_FASTER else pred / meas
    return {
        "id": rec["id"],
        "model": rec["model"],
        "hardware": rec["hardware"],
        "framework": calibration.framework(kw["framework"]).name,  # the family (versions in framework_version)
        "framework_version": rec.get("framework_version"),
        "metric": rec["metric"],
        "batch_size": kw["batch_size"],
        "prompt_len": rec["prompt_len"],
        "gen_len": rec["gen_len"],
        "num_devices": int(rec.get("num_devices", 1) or 1),
        "w_bits": kw["w_bits"],
        "kv_bits": kw["kv_bits"],
        "measured": meas,
        "predicted": pred,
        "time_ratio": time_ratio,
        "error": time_ratio - 1.0,
        "abs_error": abs(time_ratio - 1.0),
        "lower_bound_holds": time_ratio <= 1.0 + 1e-9,
        "fit_scope": scope,
        "source": rec.get("source", ""),
    }


def validate(mode: str = "roofline", records: list[dict] | None = None, cv: str | None = None):
    """Predicted vs measured for every record; columns include ``error`` = predicted/measured − 1 in time terms.

    ``time_ratio`` = predicted time / measured time (< 1: the prediction is faster than reality). In roofline
    mode it should be ≤ 1 (a lower bound). ``cv="source"`` (calibrated mode): leave-one-source-out
    predictions — each source predicted by a fit that never saw it (``fit_scope`` names the fit group used).
    ``records``: other measurements in the same schema (the shipped ones by default).
    """
    import pandas as pd

    if mode not in ("roofline", "calibrated"):
        raise ValueError(f"mode must be 'roofline' or 'calibrated', got {mode!r}")
    if cv not in CV:
        raise ValueError(f"cv must be None (in-sample) or 'source' (leave one source out), got {cv!r}")
    recs = list(load_measurements() if records is None else records)
    rows = []
    if mode == "calibrated" and cv == "source":
        if records is None:
            recs_, feats, times = fit.default_features()
        else:
            feats = [fit.features(r) for r in recs]
            times = np.array([fit.measured_time(r, record_settings(r)) for r in recs])
        loo = fit.leave_one_source_out(recs, feats, times)
        for rec, o in zip(recs, loo):
            kw = record_settings(rec)
            pred = fit.metric_from_time(rec, kw, o["predicted_time"])
            rows.append(_row(rec, kw, pred, mode, o["scope"]))
    else:
        for rec in recs:
            kw = record_settings(rec)
            r = analyze(record_model(rec), rec["hardware"], efficiency=mode, **kw)
            scope = r.prefill.roof.km.scope if mode == "calibrated" else None
            rows.append(_row(rec, kw, predict(rec, r), mode, scope))
    df = pd.DataFrame(rows)
    df.attrs["mode"] = mode
    df.attrs["cv"] = cv
    return df


def summary(df) -> dict:
    """Median and 90th-percentile |error| (in time), the median signed error, and the share of records
    where the prediction is a lower bound."""
    return {
        "mode": df.attrs.get("mode"),
        "cv": df.attrs.get("cv"),
        "records": int(len(df)),
        "median_abs_error": float(np.median(df.abs_error)),
        "p90_abs_error": float(np.percentile(df.abs_error, 90)),
        "median_signed_error": float(np.median(df.error)),
        "lower_bound_share": float(df.lower_bound_holds.mean()),
    }


def summary_by(df, by: str = "source"):
    """:func:`summary` per group (``by``: a column such as "source", "framework", "metric", "hardware")."""
    import pandas as pd

    rows = []
    for key, g in df.groupby(by, sort=True):
        s = summary(g)
        rows.append(
            {
                by: key,
                "records": s["records"],
                "median_abs_error": s["median_abs_error"],
                "p90_abs_error": s["p90_abs_error"],
                "median_signed_error": s["median_signed_error"],
                "lower_bound_share": s["lower_bound_share"],
            }
        )
    return pd.DataFrame(rows)


def parity_plot(df, title: str = ""):
    """A log–log bqplot of predicted vs measured time, one colour per source (±15 % band dotted)."""
    import bqplot as bq

    from .engine.fit import measured_time

    recs = {r["id"]: r for r in load_measurements()}
    mx, px, src = [], [], []
    for row in df.itertuples():
        rec = recs.get(row.id)
        if rec is None:
            continue
        kw = record_settings(rec)
        t = measured_time(rec, kw)
        mx.append(t)
        px.append(t * row.time_ratio)
        src.append(_short(row.source))
    groups = sorted(set(src))
    x_sc, y_sc = bq.LogScale(), bq.LogScale()
    col = bq.OrdinalColorScale(domain=groups)
    dots = bq.Scatter(
        x=mx,
        y=px,
        color=src,
        scales={"x": x_sc, "y": y_sc, "color": col},
        default_size=40,
        tooltip=bq.Tooltip(fields=["x", "y", "color"], labels=["measured s", "predicted s", "source"]),
    )
    lo, hi = min(mx + px) / 1.5, max(mx + px) * 1.5
    sc = {"x": x_sc, "y": y_sc}
    marks = [bq.Lines(x=[lo, hi], y=[lo, hi], scales=sc, colors=["gray"], line_style="dashed")]
    for f in (1.15, 1 / 1.15):
        marks.append(bq.Lines(x=[lo, hi], y=[lo * f, hi * f], scales=sc, colors=["#bbb"], line_style="dotted"))
    axes = [
        bq.Axis(scale=x_sc, label="measured time (s)", tick_format=".2g"),
        bq.Axis(scale=y_sc, label="predicted time (s)", side="left", tick_format=".2g"),
        bq.ColorAxis(scale=col, side="right", label="source"),
    ]
    return bq.Figure(marks=marks + [dots], axes=axes, title=title, layout={"width": "640px", "height": "480px"})


def _short(url: str) -> str:
    """A short label for a source URL: owner/repo and the kind of page."""
    parts = url.split("/")
    if "github.com" in url and len(parts) > 4:
        tail = parts[-1] if parts[-1] else parts[-2]
        at = f" @{parts[6][:7]}" if len(parts) > 7 and parts[5] == "blob" else ""
        return f"{parts[3]}/{parts[4]} {tail}{at}"
    return url
