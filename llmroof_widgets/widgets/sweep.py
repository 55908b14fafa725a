"""``SweepView``: time and memory against batch size or context length, for a State's settings.

Computed with the engine's vectorized :func:`llmroof_widgets.sweep` on the kernel whenever the
State's result changes, while the view is *active*. An inactive view (the dashboard's sweep
section while it is closed) only marks itself stale and catches up when it becomes active, so a
control change does not pay for the sweep unless someone is looking at it.
"""

from __future__ import annotations

import html
import math

import bqplot as bq
import ipywidgets as W
import numpy as np
import traitlets

from ._base import StateView
from ._data import fmt_si, fmt_time, sweep_dropping_invalid
from .plots import LABEL_COLOR, SELECT_COLOR, TPOT_COLOR, TTFT_COLOR, _figure_kwargs

AXES = ("batch_size", "prompt_len")
AXIS_LABEL = {"batch_size": "batch size (sequences)", "prompt_len": "context: prompt length (tokens)"}
DEFAULT_VALUES = {
    "batch_size": tuple(2**k for k in range(0, 11)),  # 1 … 1024
    "prompt_len": tuple(2**k for k in range(7, 18)),  # 128 … 131 072
}
NOFIT_COLOR = "#d62728"
KV_COLOR = "#f58518"
WEIGHTS_COLOR = "#4c78a8"
_EMPTY = np.zeros(0)


def _log_ticks(lo: float, hi: float) -> np.ndarray:
    """Ticks for a log axis: 1-2-5 steps on short ranges, whole decades on long ones (pitfall P15)."""
    lo, hi = max(lo, 1e-30), max(hi, lo * 1.0001)
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    mult = (1, 2, 5) if b - a <= 4 else (1,)
    step = 1 if b - a <= 8 else 2
    ticks = [m * 10.0**k for k in range(a, b + 1, step) for m in mult]
    return np.array([t for t in ticks if lo <= t <= hi] or [lo, hi])


class SweepView(StateView, W.VBox):
    """TTFT and TPOT (left) and memory (right) against batch size or context length.

    >>> s = lr.State(model="meta-llama/Llama-3.1-8B", hardware="h100-sxm", prompt_len=1024, gen_len=1024)
    >>> v = lr.SweepView(s, x="batch_size")           # or x="prompt_len", values=[512, 1024, ...]
    >>> v.data                                          # the lr.sweep DataFrame behind the lines

    Every other setting (precision, technique knobs, the other length) is the State's current one;
    the State's own value of ``x`` is added to the sweep and marked. The memory plot shows the
    device's capacity; both plots mark the fit limit (``max_batch_size`` from the engine on the
    batch axis; on the context axis the prompt length where the total crosses the capacity,
    interpolated between the swept points) and the configurations that do not fit (red ✕).

    ``active`` (default True): while False, State changes only set ``stale``; setting it True again
    brings the view up to date. The Dashboard keeps its sweep inactive while its section is closed.
    """

    x = traitlets.Enum(AXES, "batch_size", help="the swept input on the x axis")
    values = traitlets.List(traitlets.Int(), help="x values to sweep ([] = the default range for the axis)")
    active = traitlets.Bool(True, help="recompute on every State change (False: only mark stale)")
    stale = traitlets.Bool(False, help="the State changed while inactive")

    def __init__(self, state, x: str = "batch_size", values=None, *, active: bool = True, **kwargs):
        self.data = None  # the last lr.sweep DataFrame
        self.x_values: list[int] = []  # the x values of the last sweep
        self.message = ""
        self.computations = 0
        # time plot: log–log
        self.x_scale = bq.LogScale(min=1.0, max=1024.0)
        self.t_scale = bq.LogScale(min=1e-3, max=1.0)
        self.unit = bq.LinearScale(min=0.0, max=1.0)
        tsc = {"x": self.x_scale, "y": self.t_scale}
        self.ttft = bq.Lines(
            x=_EMPTY,
            y=_EMPTY,
            scales=tsc,
            colors=[TTFT_COLOR],
            stroke_width=2,
            marker="circle",
            marker_size=24,
            display_legend=True,
            labels=["TTFT (prefill)"],
            interactions={},
        )
        self.tpot = bq.Lines(
            x=_EMPTY,
            y=_EMPTY,
            scales=tsc,
            colors=[TPOT_COLOR],
            stroke_width=2,
            marker="circle",
            marker_size=24,
            display_legend=True,
            labels=["TPOT (mean decode step)"],
            interactions={},
        )
        self.t_nofit = bq.Scatter(
            x=_EMPTY,
            y=_EMPTY,
            scales=tsc,
            marker="cross",
            colors=[NOFIT_COLOR],
            default_size=40,
            display_legend=True,
            labels=["does not fit"],
            interactions={},
        )
        self.t_current = bq.Lines(
            x=_EMPTY,
            y=_EMPTY,
            scales={"x": self.x_scale, "y": self.unit},
            colors=[SELECT_COLOR],
            line_style="dotted",
            stroke_width=2,
            interactions={},
        )
        self.t_limit = bq.Lines(
            x=_EMPTY,
            y=_EMPTY,
            scales={"x": self.x_scale, "y": self.unit},
            colors=[NOFIT_COLOR],
            line_style="dashed",
            stroke_width=2,
            interactions={},
        )
        # "now" at the bottom right of its line, the fit limit at the top left of its line
        self.t_labels = bq.Label(
            x=_EMPTY,
            y=_EMPTY,
            text=[],
            scales={"x": self.x_scale, "y": self.unit},
            colors=[SELECT_COLOR],
            default_size=11,
            align="start",
            x_offset=4,
            interactions={},
        )
        self.t_limit_label = bq.Label(
            x=_EMPTY,
            y=_EMPTY,
            text=[],
            scales={"x": self.x_scale, "y": self.unit},
            colors=[NOFIT_COLOR],
            default_size=11,
            align="end",
            x_offset=-4,
            interactions={},
        )
        self.x_axis = bq.Axis(scale=self.x_scale, label=AXIS_LABEL["batch_size"], tick_format="~s")
        self.t_axis = bq.Axis(
            scale=self.t_scale,
            side="left",
            label="time (ms, log)",
            tick_format=",~g",
            grid_lines="dashed",
            label_offset="52px",
        )
        self.time_figure = bq.Figure(
            marks=[self.ttft, self.tpot, self.t_nofit, self.t_current, self.t_limit, self.t_labels, self.t_limit_label],
            axes=[self.x_axis, self.t_axis],
            title="Time",
            legend_location="top-left",
            fig_margin={"top": 40, "bottom": 52, "left": 64, "right": 16},
            **_figure_kwargs("320px"),
        )
        # memory plot: log x, linear GB
        self.m_scale = bq.LinearScale(min=0.0, max=1.0)
        msc = {"x": self.x_scale, "y": self.m_scale}
        self.total = bq.Lines(
            x=_EMPTY,
            y=_EMPTY,
            scales=msc,
            colors=[LABEL_COLOR],
            stroke_width=2,
            marker="circle",
            marker_size=24,
            display_legend=True,
            labels=["total"],
            interactions={},
        )
        self.kv = bq.Lines(
            x=_EMPTY,
            y=_EMPTY,
            scales=msc,
            colors=[KV_COLOR],
            stroke_width=2,
            display_legend=True,
            labels=["KV cache"],
            interactions={},
        )
        self.weights = bq.Lines(
            x=_EMPTY,
            y=_EMPTY,
            scales=msc,
            colors=[WEIGHTS_COLOR],
            stroke_width=2,
            line_style="dashed",
            display_legend=True,
            labels=["weights"],
            interactions={},
        )
        self.m_nofit = bq.Scatter(
            x=_EMPTY, y=_EMPTY, scales=msc, marker="cross", colors=[NOFIT_COLOR], default_size=40, interactions={}
        )
        self.capacity = bq.Lines(
            x=_EMPTY,
            y=_EMPTY,
            scales=msc,
            colors=[NOFIT_COLOR],
            line_style="dashed",
            stroke_width=2,
            display_legend=True,
            labels=["device capacity"],
            interactions={},
        )
        self.m_current = bq.Lines(
            x=_EMPTY,
            y=_EMPTY,
            scales={"x": self.x_scale, "y": self.unit},
            colors=[SELECT_COLOR],
            line_style="dotted",
            stroke_width=2,
            interactions={},
        )
        self.m_limit = bq.Lines(
            x=_EMPTY,
            y=_EMPTY,
            scales={"x": self.x_scale, "y": self.unit},
            colors=[NOFIT_COLOR],
            line_style="dashed",
            stroke_width=2,
            interactions={},
        )
        self.m_axis_x = bq.Axis(scale=self.x_scale, label=AXIS_LABEL["batch_size"], tick_format="~s")
        self.m_axis = bq.Axis(
            scale=self.m_scale, side="left", label="memory per device (GB)", tick_format="~g", grid_lines="dashed"
        )
        self.memory_figure = bq.Figure(
            marks=[self.total, self.kv, self.weights, self.m_nofit, self.capacity, self.m_current, self.m_limit],
            axes=[self.m_axis_x, self.m_axis],
            title="Memory",
            legend_location="top-left",
            fig_margin={"top": 40, "bottom": 52, "left": 64, "right": 16},
            **_figure_kwargs("320px"),
        )
        self.time_figure.layout.flex = "1 1 0"
        self.memory_figure.layout.flex = "1 1 0"
        # header: the axis choice and a status line
        self.axis = W.ToggleButtons(
            options=[("batch size", "batch_size"), ("context", "prompt_len")],
            style={"button_width": "90px"},
            tooltips=[
                "sweep the batch size at the current prompt and generation lengths",
                "sweep the prompt length at the current batch size",
            ],
        )
        # the status line wraps (a W.Label would cut it); its text is escaped (it may hold a model name)
        self.status = W.HTML(layout=W.Layout(flex="1 1 240px", min_width="0"))
        self.status.add_class("lr-sweep-status")
        axis_label = W.HTML("<b>x axis</b>", layout=W.Layout(flex="0 0 auto"))
        head = W.HBox(
            [axis_label, self.axis, self.status],
            layout=W.Layout(width="100%", align_items="center", grid_gap="8px", flex_flow="row wrap"),
        )
        # the figures are put on the page only once there is a sweep to draw: never empty axes (e.g. after
        # an error), and never a figure laid out at zero size (display: none gives negative sizes)
        self.plots = W.HBox([], layout=W.Layout(width="100%", flex_flow="row wrap"))
        self.placeholder = W.HTML("", layout=W.Layout(width="100%"))
        self.placeholder.add_class("lr-sweep-message")
        super().__init__(children=[head, self.plots, self.placeholder], **kwargs)
        self.add_class("lr-sweep")
        with self.hold_trait_notifications():
            self.x = x
            self.values = [int(v) for v in values] if values is not None else []
            self.active = active
        self.axis.value = self.x
        self.axis.observe(lambda ch: setattr(self, "x", ch["new"]), names="value")
        self.observe(self._on_setting, names=["x", "values"])
        self.observe(self._on_active, names=["active"])
        self._attach(state, error=True)
        if self.active:
            self.refresh()
        else:
            self.stale = True

    # -- when to compute -----------------------------------------------------------------------
    def _on_revision(self, change=None) -> None:
        if self.active:
            self.refresh()
        else:
            self.stale = True

    def _on_error(self, change=None) -> None:
        self._show_status()

    def _on_setting(self, change) -> None:
        if change["name"] == "x":
            self.axis.value = change["new"]
            if change["old"] != change["new"] and self.values and change["old"] in AXES:
                self.values = []  # the old axis' values mean nothing on the new one (this refreshes)
                return
        self._on_revision()

    def _on_active(self, change) -> None:
        if change["new"] and self.stale:
            self.refresh()

    # -- computation ---------------------------------------------------------------------------
    def sweep_inputs(self) -> tuple:
        """``(model, hardware, settings)`` of the sweep: the State's inputs with ``x`` as a list."""
        st = self.state
        kw = st.inputs()
        model = st._load("model", kw.pop("model"))
        hardware = st._load("hardware", kw.pop("hardware"))
        current = kw[self.x]
        vals = sorted(
            set(self.values or DEFAULT_VALUES[self.x]) | ({int(current)} if isinstance(current, int) else set())
        )
        kw[self.x] = vals
        return model, hardware, kw

    def compute(self):
        """Run ``lr.sweep`` for the State's current settings; returns the DataFrame (or None).

        Values the engine rejects for this configuration (e.g. a batch below the EP degree) are
        left out and named in the status line.
        """
        model, hardware, kw = self.sweep_inputs()
        df, kept, skipped = sweep_dropping_invalid(model, hardware, kw, self.x, kw[self.x])
        note = (f"left out {', '.join(f'{v:,}' for v, _ in skipped)}: {skipped[0][1]}") if skipped else ""
        return df, kept, note

    def refresh(self) -> None:
        """Recompute now (whatever ``active`` says) and update the plots."""
        st = self.state
        if st.result is None or st.error:
            self.stale = st.result is None
            self._show_status()
            return
        try:
            df, vals, note = self.compute()
        except Exception as e:
            self.message = f"sweep failed: {e}"
            self._show_status()
            return
        self.computations += 1
        self.data, self.x_values, self.message = df, list(vals), note
        self.stale = False
        self._draw(df)
        if not self.plots.children:
            self.plots.children = (self.time_figure, self.memory_figure)
        self._show_status()

    def _show_status(self) -> None:
        st = self.state
        parts = []
        if st.error:
            parts.append(
                "inputs invalid (see the error above)"
                + (": showing the last valid sweep" if self.data is not None else "")
            )
        if self.message:
            parts.append(self.message)
        if not parts and self.data is not None:
            r = st.result
            other = (
                "prompt " + f"{r.settings['prompt_len']:,}"
                if self.x == "batch_size"
                else "batch " + f"{r.settings['batch_size']:,}"
            )
            parts.append(
                f"{r.model.name} on {r.hardware.name} · lr.sweep over {len(self.x_values)} values · "
                f"{other}, generate {r.settings['gen_len']:,} · every other setting as the State's"
            )
        self.status.value = html.escape(" · ".join(parts))
        # nothing drawn yet (no valid result, or the sweep failed): a sentence instead of empty axes
        if self.data is None:
            self.plots.children = ()
            self.placeholder.value = html.escape(
                "No sweep to show: " + (self.message or "the inputs are invalid (see the error above).")
                if (st.error or self.message)
                else "The sweep appears here once the inputs give a result."
            )
        else:
            self.placeholder.value = ""

    # -- drawing -------------------------------------------------------------------------------
    def fit_limit(self, df=None) -> float | None:
        """Where memory stops fitting on the x axis (None when everything fits or nothing does)."""
        df = self.data if df is None else df
        if df is None or not len(df):
            return None
        fits = df["fits"].to_numpy(bool)
        if fits.all() or not fits.any():
            return None
        if self.x == "batch_size":
            return float(df["max_batch_size"].iloc[0])
        xs = df[self.x].to_numpy(float)
        tot = df["total_bytes"].to_numpy(float)
        cap = float(df["capacity_bytes"].iloc[0])
        i = int(np.flatnonzero(~fits)[0])
        if i == 0:
            return None
        x0, x1, y0, y1 = xs[i - 1], xs[i], tot[i - 1], tot[i]
        return float(x0 + (cap - y0) * (x1 - x0) / (y1 - y0)) if y1 != y0 else float(x0)

    def _draw(self, df) -> None:
        xs = df[self.x].to_numpy(np.float64)
        ttft = df["ttft_s"].to_numpy(np.float64) * 1e3
        tpot = df["tpot_s"].to_numpy(np.float64) * 1e3
        total = df["total_bytes"].to_numpy(np.float64) / 1e9
        kv = df["kv_cache_bytes"].to_numpy(np.float64) / 1e9
        w = df["weights_bytes"].to_numpy(np.float64) / 1e9
        cap = float(df["capacity_bytes"].iloc[0]) / 1e9
        fits = df["fits"].to_numpy(bool)
        cur = float(self.state.result.settings[self.x])
        limit = self.fit_limit(df)

        x_lo, x_hi = float(xs.min()) / 1.3, float(xs.max()) * 1.3
        t_lo = float(min(ttft.min(), tpot.min())) / 2
        t_hi = float(max(ttft.max(), tpot.max())) * 6  # headroom for the legend
        m_hi = max(cap, float(total.max())) * 1.6  # the legend (top 1/3) stays above every line and the capacity
        ticks = xs if len(xs) <= 7 else xs[::2]
        label = AXIS_LABEL[self.x]
        fmt = "d" if self.x == "batch_size" else ".3~s"
        for ax in (self.x_axis, self.m_axis_x):
            with ax.hold_sync():
                ax.label, ax.tick_values, ax.tick_format = label, ticks, fmt
        with self.x_scale.hold_sync():
            self.x_scale.min, self.x_scale.max = x_lo, x_hi
        with self.t_scale.hold_sync():
            self.t_scale.min, self.t_scale.max = t_lo, t_hi
        self.t_axis.tick_values = _log_ticks(t_lo, t_hi)
        with self.m_scale.hold_sync():
            self.m_scale.min, self.m_scale.max = 0.0, m_hi
        with self.ttft.hold_sync():
            self.ttft.x, self.ttft.y = xs, ttft
        with self.tpot.hold_sync():
            self.tpot.x, self.tpot.y = xs, tpot
        nf = ~fits
        with self.t_nofit.hold_sync():
            self.t_nofit.x = np.concatenate([xs[nf], xs[nf]])
            self.t_nofit.y = np.concatenate([ttft[nf], tpot[nf]])
        with self.total.hold_sync():
            self.total.x, self.total.y = xs, total
        with self.kv.hold_sync():
            self.kv.x, self.kv.y = xs, kv
        with self.weights.hold_sync():
            self.weights.x, self.weights.y = xs, w
        with self.m_nofit.hold_sync():
            self.m_nofit.x, self.m_nofit.y = xs[nf], total[nf]
        with self.capacity.hold_sync():
            self.capacity.x, self.capacity.y = np.array([x_lo, x_hi]), np.array([cap, cap])
        vert = np.array([0.0, 1.0])
        for m in (self.t_current, self.m_current):
            with m.hold_sync():
                m.x, m.y = np.array([cur, cur]), vert
        lim = limit is not None and x_lo <= limit <= x_hi
        for m in (self.t_limit, self.m_limit):
            with m.hold_sync():
                m.x, m.y = (np.array([limit, limit]), vert) if lim else (_EMPTY, _EMPTY)
        unit = "" if self.x == "batch_size" else " tokens"
        with self.t_labels.hold_sync():
            self.t_labels.x, self.t_labels.y, self.t_labels.text = (
                np.array([cur]),
                np.array([0.05]),
                [f"now: {int(cur):,}{unit}"],
            )
        with self.t_limit_label.hold_sync():
            if lim:
                approx = "" if self.x == "batch_size" else "≈ "
                # mid-height, between TTFT (above) and TPOT (below): clear of the legend in the top-left corner
                self.t_limit_label.x, self.t_limit_label.y = np.array([limit]), np.array([0.45])
                self.t_limit_label.text = [f"fits up to {approx}{int(limit):,}{unit}"]
            else:
                self.t_limit_label.x, self.t_limit_label.y, self.t_limit_label.text = _EMPTY, _EMPTY, []
        self.time_figure.title = "Time"
        if fits.all():
            fit_text = "everything fits"
        elif not fits.any():
            fit_text = "nothing fits"
        else:
            fit_text = (
                f"fits up to {'' if self.x == 'batch_size' else '≈ '}{int(limit):,}{unit}" if limit is not None else ""
            )
        self.memory_figure.title = f"Memory · capacity {fmt_si(cap * 1e9, 'B')} · {fit_text}"
        i = int(np.argmin(np.abs(xs - cur)))
        self.time_figure.title += f" · now: TTFT {fmt_time(ttft[i] / 1e3)}, TPOT {fmt_time(tpot[i] / 1e3)}"

    def close(self):
        self._detach()
        super().close()
