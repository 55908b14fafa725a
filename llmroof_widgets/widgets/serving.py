"""``ServingView``: a deployment under load, for a State's model, device and settings.

The engine's serving layer (:func:`llmroof_widgets.serve`, :func:`latency_curve`,
:func:`interactivity_curve`) computes everything; this view shows it: a load control (request rate, open
loop, or users, closed loop), headline figures (TTFT/TPOT percentiles, throughput per device and per
user, energy and cost), TTFT and TPOT p50/p99 against load with the SLO lines, and throughput per device
against tokens/s per user across batch sizes and TP degrees. Like the sweep, it computes only while
``active`` (the dashboard keeps it inactive while its section is closed).
"""

from __future__ import annotations

import html

import bqplot as bq
import ipywidgets as W
import numpy as np
import traitlets

from ..engine import serving as srv_engine
from ._base import StateView
from ._data import fmt_time
from .plots import COMPUTE_COLOR, MEMORY_COLOR, SELECT_COLOR, _figure_kwargs
from .sweep import NOFIT_COLOR

_EMPTY = np.zeros(0)
TP_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2")
# analyze() inputs that a serving deployment does not take (the scheduler decides the batch)
_NOT_SERVING = ("batch_size", "prompt_len", "gen_len", "logits", "attention", "speculative", "model", "hardware")


class ServingView(StateView, W.VBox):
    """Latency percentiles against load, the throughput–interactivity curve, energy and cost.

    >>> s = lr.State(model="meta-llama/Llama-3.1-8B", hardware="h100-sxm", prompt_len=1024, gen_len=256)
    >>> v = lr.ServingView(s, rate=10, slo_ttft_s=0.5, slo_tpot_s=0.05, price_per_hour=3.0)
    >>> v.result.to_dict()        # the lr.serve result behind the headline

    The State's model, device, lengths, precision and technique knobs are used; the load, the SLO,
    chunked prefill, ``max_batch`` and the price are this view's own settings.
    """

    mode = traitlets.Enum(("rate", "users"), "rate", help="open loop (requests/s) or closed loop (users in flight)")
    rate = traitlets.Float(5.0, help="requests per second (open loop)")
    users = traitlets.Int(16, help="requests always in flight (closed loop)")
    slo_ttft_s = traitlets.Float(0.5, help="SLO on p99 TTFT (s)")
    slo_tpot_s = traitlets.Float(0.05, help="SLO on p99 TPOT (s)")
    chunk_size = traitlets.Int(0, help="chunked-prefill token budget per step (0: off)")
    max_batch = traitlets.Int(0, help="running requests at most (0: the KV cache decides)")
    price_per_hour = traitlets.Float(0.0, help="$ per device-hour (0: no cost figures)")
    active = traitlets.Bool(True, help="recompute on every change (False: only mark stale)")
    stale = traitlets.Bool(False)

    def __init__(self, state, *, active: bool = True, **settings):
        self.result = None  # the lr.serve result at the current load
        self.curve = None  # latency_curve DataFrame
        self.frontier = None  # interactivity_curve DataFrame
        self.message = ""
        self.computations = 0
        # -- controls ----------------------------------------------------------------------------------
        self.mode_toggle = W.ToggleButtons(
            options=[("requests/s", "rate"), ("users", "users")],
            style={"button_width": "86px"},
            tooltips=["open loop: Poisson arrivals at a rate", "closed loop: N requests always in flight"],
        )
        self.load_text = W.BoundedFloatText(
            min=1e-6, max=1e9, step=1, description="load", layout=W.Layout(width="170px")
        )
        self.slo_ttft = W.BoundedFloatText(min=1e-6, max=1e6, step=0.05, description="p99 TTFT ≤ (s)")
        self.slo_tpot = W.BoundedFloatText(min=1e-6, max=1e6, step=0.005, description="p99 TPOT ≤ (s)")
        self.chunk_text = W.BoundedIntText(min=0, max=10**7, description="chunk (tokens)")
        self.batch_text = W.BoundedIntText(min=0, max=10**7, description="max batch")
        self.price_text = W.BoundedFloatText(min=0, max=1e6, step=0.1, description="$/device-h")
        for w in (self.slo_ttft, self.slo_tpot, self.chunk_text, self.batch_text, self.price_text):
            w.style = {"description_width": "initial"}
            w.layout = W.Layout(width="200px")
        self.headline = W.HTML()
        self.headline.add_class("lr-serving-headline")
        # -- latency against load -----------------------------------------------------------------------
        self.x_rate = bq.LogScale()
        self.y_time = bq.LogScale()
        sc = {"x": self.x_rate, "y": self.y_time}
        common = dict(scales=sc, stroke_width=2, interactions={}, display_legend=True)
        self.ttft_p99 = bq.Lines(x=_EMPTY, y=_EMPTY, colors=[COMPUTE_COLOR], labels=["TTFT p99"], **common)
        self.ttft_p50 = bq.Lines(
            x=_EMPTY, y=_EMPTY, colors=[COMPUTE_COLOR], line_style="dashed", labels=["TTFT p50"], **common
        )
        self.tpot_p99 = bq.Lines(x=_EMPTY, y=_EMPTY, colors=[MEMORY_COLOR], labels=["TPOT p99"], **common)
        self.tpot_p50 = bq.Lines(
            x=_EMPTY, y=_EMPTY, colors=[MEMORY_COLOR], line_style="dashed", labels=["TPOT p50"], **common
        )
        self.slo_lines = bq.Lines(
            x=_EMPTY,
            y=_EMPTY,
            scales=sc,
            colors=[COMPUTE_COLOR, MEMORY_COLOR],
            line_style="dotted",
            stroke_width=1.5,
            interactions={},
        )
        self.now = bq.Lines(
            x=_EMPTY, y=_EMPTY, scales=sc, colors=[SELECT_COLOR], line_style="dotted", stroke_width=2, interactions={}
        )
        self.max_line = bq.Lines(
            x=_EMPTY,
            y=_EMPTY,
            scales=sc,
            colors=[NOFIT_COLOR],
            line_style="dashed",
            stroke_width=2,
            display_legend=True,
            labels=["max stable rate"],
            interactions={},
        )
        self.x_axis = bq.Axis(scale=self.x_rate, label="load: requests/s", tick_format="~g")
        self.y_axis = bq.Axis(
            scale=self.y_time,
            orientation="vertical",
            side="left",
            label="time (s, log)",
            tick_format="~g",
            grid_lines="dashed",
            label_offset="52px",
        )
        self.latency_figure = bq.Figure(
            marks=[self.ttft_p99, self.ttft_p50, self.tpot_p99, self.tpot_p50, self.slo_lines, self.max_line, self.now],
            axes=[self.x_axis, self.y_axis],
            title="Latency against load (roofline: lower bounds)",
            legend_location="top-left",
            fig_margin={"top": 40, "bottom": 52, "left": 64, "right": 16},
            **_figure_kwargs("320px"),
        )
        # -- throughput per device against tokens/s per user -------------------------------------------
        self.x_user = bq.LinearScale()
        self.y_dev = bq.LinearScale(min=0.0)
        fsc = {"x": self.x_user, "y": self.y_dev}
        self.frontier_lines = [  # one line per TP degree (1, 2, 4, 8)
            bq.Lines(
                x=_EMPTY,
                y=_EMPTY,
                scales=fsc,
                colors=[c],
                marker="circle",
                marker_size=20,
                stroke_width=2,
                display_legend=True,
                labels=[f"TP {t}"],
                interactions={},
                visible=False,
            )
            for c, t in zip(TP_COLORS, (1, 2, 4, 8))
        ]
        self.frontier_now = bq.Scatter(
            x=_EMPTY,
            y=_EMPTY,
            scales=fsc,
            colors=[SELECT_COLOR],
            default_size=90,
            marker="diamond",
            display_legend=True,
            labels=["at this load"],
            interactions={},
        )
        self.frontier_figure = bq.Figure(
            marks=[*self.frontier_lines, self.frontier_now],
            axes=[
                bq.Axis(scale=self.x_user, label="tokens/s per user (1/TPOT)", tick_format="~s"),
                bq.Axis(
                    scale=self.y_dev,
                    orientation="vertical",
                    side="left",
                    label="tokens/s per device",
                    tick_format="~s",
                    grid_lines="dashed",
                    label_offset="52px",
                ),
            ],
            title="Throughput per device vs interactivity (batch 1…512, by TP)",
            legend_location="top-right",
            fig_margin={"top": 40, "bottom": 52, "left": 64, "right": 16},
            **_figure_kwargs("320px"),
        )
        self.latency_figure.layout.flex = "1 1 0"
        self.frontier_figure.layout.flex = "1 1 0"
        self.status = W.Label()
        self.status.add_class("lr-serving-status")
        row1 = W.HBox(
            [self.mode_toggle, self.load_text, self.slo_ttft, self.slo_tpot],
            layout=W.Layout(flex_flow="row wrap", align_items="center", grid_gap="6px"),
        )
        row2 = W.HBox(
            [self.chunk_text, self.batch_text, self.price_text],
            layout=W.Layout(flex_flow="row wrap", align_items="center", grid_gap="6px"),
        )
        plots = W.HBox([self.latency_figure, self.frontier_figure], layout=W.Layout(width="100%", flex_flow="row wrap"))
        super().__init__(children=[row1, row2, self.headline, plots, self.status], layout=W.Layout(width="100%"))
        self.add_class("lr-serving")
        with self.hold_trait_notifications():
            for k, v in settings.items():
                if not self.has_trait(k) or k in ("active", "stale"):
                    raise TypeError(f"ServingView: unknown setting {k!r}")
                setattr(self, k, v)
            self.active = active
        self._sync_controls()
        for w, name in (
            (self.mode_toggle, "mode"),
            (self.slo_ttft, "slo_ttft_s"),
            (self.slo_tpot, "slo_tpot_s"),
            (self.chunk_text, "chunk_size"),
            (self.batch_text, "max_batch"),
            (self.price_text, "price_per_hour"),
        ):
            w.observe(lambda ch, name=name: setattr(self, name, ch["new"]), names="value")
        self.load_text.observe(self._load_typed, names="value")
        self.observe(
            self._on_setting,
            names=["mode", "rate", "users", "slo_ttft_s", "slo_tpot_s", "chunk_size", "max_batch", "price_per_hour"],
        )
        self.observe(lambda ch: self.refresh() if ch["new"] and self.stale else None, names=["active"])
        self._attach(state, error=True)
        if self.active:
            self.refresh()
        else:
            self.stale = True

    # -- wiring ---------------------------------------------------------------------------------------------
    def _sync_controls(self):
        self.mode_toggle.value = self.mode
        self.load_text.value = self.rate if self.mode == "rate" else float(self.users)
        self.load_text.description = "req/s" if self.mode == "rate" else "users"
        self.slo_ttft.value, self.slo_tpot.value = self.slo_ttft_s, self.slo_tpot_s
        self.chunk_text.value, self.batch_text.value, self.price_text.value = (
            self.chunk_size,
            self.max_batch,
            self.price_per_hour,
        )

    def _load_typed(self, change):
        if self.mode == "rate":
            self.rate = float(change["new"])
        else:
            self.users = max(1, int(round(change["new"])))

    def _on_setting(self, change):
        self._sync_controls()
        self._on_revision()

    def _on_revision(self, change=None) -> None:
        if self.active:
            self.refresh()
        else:
            self.stale = True

    def _on_error(self, change=None) -> None:
        if self.state.error:
            self.status.value = f"showing the last valid settings: {self.state.error}"

    def serve_inputs(self) -> tuple:
        """``(model, hardware, kwargs)`` of :func:`lr.serve` from the State and this view's settings."""
        st = self.state
        kw = st.inputs()
        model = st._load("model", kw.pop("model"))
        hardware = st._load("hardware", kw.pop("hardware"))
        lengths = {"prompt_len": kw["prompt_len"], "gen_len": kw["gen_len"]}
        knobs = {k: v for k, v in kw.items() if k not in _NOT_SERVING}
        ignored = [k for k in ("speculative",) if kw.get(k) is not None]
        opts = dict(max_batch=self.max_batch or None, chunk_size=self.chunk_size or None)
        return model, hardware, lengths, knobs, opts, ignored

    # -- computation --------------------------------------------------------------------------------------
    def refresh(self) -> None:
        st = self.state
        if st.result is None:
            self.stale = True
            return
        try:
            model, hardware, lengths, knobs, opts, ignored = self.serve_inputs()
            load = {"rate": self.rate} if self.mode == "rate" else {"concurrency": self.users}
            price = self.price_per_hour or None
            key = repr((id(model), id(hardware), lengths, sorted(knobs.items()), opts, load, price, self.mode))
            if key == getattr(self, "_key", None):  # e.g. the batch size changed: serving does not read it
                self.stale = False
                self._draw()
                return
            self.result = srv_engine.serve(model, hardware, **load, **lengths, **opts, price_per_hour=price, **knobs)
            self.curve = srv_engine.latency_curve(
                model, hardware, closed=self.mode == "users", **lengths, **opts, **knobs
            )
            self.frontier = srv_engine.interactivity_curve(model, hardware, **lengths, **knobs)
        except ValueError as e:
            self.message = str(e)
            self.status.value = f"serving: {e}"
            self.stale = False
            return
        self._key = key
        self.computations += 1
        self.stale = False
        self.message = "speculative decoding is not modelled by the serving layer (ignored)" if ignored else ""
        self.status.value = self.message
        self._draw()

    def _draw(self):
        d = self.result.to_dict()
        self.headline.value = _headline(d, self.slo_ttft_s, self.slo_tpot_s)
        c = self.curve
        x = c["rate"].to_numpy() if len(c) else _EMPTY
        ys = (
            [c[k].to_numpy() for k in ("ttft_p99_s", "ttft_p50_s", "tpot_p99_s", "tpot_p50_s")]
            if len(c)
            else [_EMPTY] * 4
        )
        vals = np.concatenate([y for y in ys if len(y)] + [[self.slo_ttft_s, self.slo_tpot_s]])
        vals = vals[np.isfinite(vals) & (vals > 0)]
        lo, hi = (float(vals.min()) / 1.5, float(vals.max()) * 1.5) if len(vals) else (1e-3, 1.0)
        xlo, xhi = (float(x.min()) / 1.2, max(float(x.max()), float(d["rate"] or 0)) * 1.2) if len(x) else (0.1, 10.0)
        xlo = min(xlo, float(d["rate"]) / 1.2) if d["rate"] else xlo
        with self.hold_sync():
            self.x_rate.min, self.x_rate.max = max(xlo, 1e-9), max(xhi, xlo * 10)
            self.y_time.min, self.y_time.max = lo, hi
            for mark, y in zip((self.ttft_p99, self.ttft_p50, self.tpot_p99, self.tpot_p50), ys):
                mark.x, mark.y = x, y
            self.slo_lines.x = np.array([[xlo, xhi], [xlo, xhi]])
            self.slo_lines.y = np.array([[self.slo_ttft_s] * 2, [self.slo_tpot_s] * 2])
            self.max_line.x, self.max_line.y = np.array([d["max_rate"]] * 2), np.array([lo, hi])
            self.now.x = np.array([d["rate"]] * 2) if d["rate"] else _EMPTY
            self.now.y = np.array([lo, hi]) if d["rate"] else _EMPTY
            f = self.frontier
            for line, t in zip(self.frontier_lines, (1, 2, 4, 8)):
                part = f[f.tp == t] if len(f) else f
                line.visible = bool(len(part))
                line.x = part["tokens_per_s_per_user"].to_numpy() if len(part) else _EMPTY
                line.y = part["throughput_per_device_tokens_per_s"].to_numpy() if len(part) else _EMPTY
            if d["stable"] and d["tpot_s"]["mean"]:
                self.frontier_now.x = np.array([1.0 / d["tpot_s"]["mean"]])
                self.frontier_now.y = np.array([d["throughput_per_device_tokens_per_s"]])
            else:
                self.frontier_now.x, self.frontier_now.y = _EMPTY, _EMPTY

    def close(self):
        self._detach()
        super().close()


def _headline(d: dict, slo_ttft: float, slo_tpot: float) -> str:
    """The headline figures as HTML (text escaped); every time is a roofline lower bound unless calibrated."""
    e = html.escape
    if not d["stable"]:
        return (
            f"<b>Unstable</b> at {d['rate']:.3g} requests/s: the deployment sustains at most "
            f"{d['max_rate']:.3g}/s ({e(str(d.get('why_unstable', '')))})."
        )
    t, p = d["ttft_s"], d["tpot_s"]
    ok = t["p99"] <= slo_ttft and p["p99"] <= slo_tpot
    parts = [
        f"<b>{d['rate']:.3g} requests/s</b> of at most {d['max_rate']:.3g} (utilization {d['utilization']:.0%}), "
        f"{d['concurrency']:.3g} in flight",
        f"TTFT p50 {e(fmt_time(t['p50']))} · p99 {e(fmt_time(t['p99']))}; "
        f"TPOT p50 {e(fmt_time(p['p50']))} · p99 {e(fmt_time(p['p99']))} — "
        + ("<b>meets</b> the SLO" if ok else "<b>misses</b> the SLO"),
        f"{d['throughput_tokens_per_s']:,.0f} generated tokens/s in all "
        f"({d.get('throughput_per_device_tokens_per_s', 0):,.0f} per device; {1 / p['mean']:,.0f} per user)",
    ]
    if d.get("energy_j_per_token") is not None:
        parts.append(
            f"energy {d['energy_j_per_token']:.3g} J/token ({d.get('power_w_per_device', 0):.0f} W per device; "
            f"idle {d.get('idle_w_per_device') or 0:.0f} W, {e(str(d.get('idle_power_source', '')))})"
        )
    if d.get("cost_per_million_tokens") is not None:
        parts.append(f"cost ${d['cost_per_million_tokens']:.3g} per million generated tokens")
    mode = d["settings"].get("efficiency", "roofline")
    parts.append(
        "roofline times: lower bounds (latency optimistic, throughput an upper bound)"
        if mode in ("roofline", None, {})
        else "calibrated estimate"
    )
    return "<br>".join(parts)
