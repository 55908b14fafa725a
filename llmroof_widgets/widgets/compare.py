"""``CompareView``: two analyses side by side with their deltas, built on the engine's ``lr.compare``.

Knowledge distillation, for one: the teacher and the student on one device::

    teacher = lr.State(model="meta-llama/Llama-3.1-70B", hardware="h100-sxm", batch_size=8)
    student = lr.State(model="meta-llama/Llama-3.1-8B", hardware="h100-sxm", batch_size=8)
    lr.CompareView(teacher, student, labels=("teacher", "student"))
"""

from __future__ import annotations

import math

import anywidget
import bqplot as bq
import ipywidgets as W
import numpy as np
import traitlets

from ..engine import compare
from ._data import _plain, technique_labels
from ._static import BundleESM
from .plots import SERIES_COLORS, _figure_kwargs
from .state import State

# which way is better for each total of lr.compare (None: neither)
HIGHER_BETTER = ("tokens_per_s", "decode_tokens_per_s", "throughput_tokens_per_s", "throughput_per_device_tokens_per_s")
TOP_OPERATORS = 12


def _better(quantity: str) -> str | None:
    if quantity == "fits":
        return None
    return "higher" if quantity in HIGHER_BETTER else "lower"


class CompareTable(anywidget.AnyWidget):
    """Front end of :class:`CompareView`: the two analyses' headers, the totals with Δ and ratio,
    and the per-operator times with Δ (text only, rendered with ``textContent``)."""

    _esm = BundleESM("compare_table")

    labels = traitlets.List(traitlets.Unicode(), ["a", "b"]).tag(sync=True)
    headers = traitlets.List(traitlets.Dict()).tag(sync=True)
    totals = traitlets.List(traitlets.Dict()).tag(sync=True)
    operators = traitlets.List(traitlets.Dict()).tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_class("lr-compare-table")


def _state_of(x) -> State:
    st = getattr(x, "state", x)
    if not isinstance(st, State):
        raise TypeError(f"CompareView: expected an lr.State or an lr.Dashboard, got {type(x).__name__}")
    return st


class CompareView(W.VBox):
    """Two States compared: totals (TTFT, TPOT, throughput, memory, FLOPs, bytes) with deltas and
    ratios, per-operator times with deltas, and a bar chart of the operators that take the most
    time in the chosen phase. Every figure is the engine's :func:`llmroof_widgets.compare` of the
    two States' results (``view.comparison``), recomputed when either State changes.

    ``a`` and ``b`` are States or Dashboards (their State is used). Deltas are ``b − a`` and ratios
    ``b / a``. If either State's inputs are invalid its error shows here and the last valid
    comparison stays.
    """

    def __init__(self, a, b, labels=("a", "b"), *, phase: str = "decode", **kwargs):
        self.state_a, self.state_b = _state_of(a), _state_of(b)
        labels = tuple(str(x) for x in labels)
        if len(labels) != 2 or labels[0] == labels[1]:
            raise ValueError("CompareView: labels must be two different names, e.g. ('teacher', 'student')")
        self.labels = labels
        self.comparison = None
        self.table = CompareTable(labels=list(labels))
        self.phase = W.ToggleButtons(
            options=["prefill", "decode"],
            value=phase,
            style={"button_width": "72px"},
            tooltips=["operators of the prefill pass", "operators of one decode step"],
        )
        self.x_scale = bq.OrdinalScale()
        self.y_scale = bq.LinearScale(min=0.0, max=1.0)
        self.bars = bq.Bars(
            x=[],
            y=np.zeros((2, 0)),
            scales={"x": self.x_scale, "y": self.y_scale},
            type="grouped",
            colors=list(SERIES_COLORS),
            labels=list(labels),
            display_legend=True,
            padding=0.25,
            stroke="#ffffff",
            tooltip=bq.Tooltip(fields=["x", "y"], formats=["", ".4~g"], labels=["operator", "ms"]),
        )
        self.x_axis = bq.Axis(scale=self.x_scale, tick_rotate=-30, tick_style={"font-size": "11px"})
        self.y_axis = bq.Axis(
            scale=self.y_scale, side="left", label="time per pass (ms)", tick_format="~g", grid_lines="dashed"
        )
        self.figure = bq.Figure(
            marks=[self.bars],
            axes=[self.x_axis, self.y_axis],
            title="Operators",
            legend_location="top-right",
            fig_margin={"top": 40, "bottom": 90, "left": 64, "right": 16},
            **_figure_kwargs("360px"),
        )
        kwargs.setdefault("layout", W.Layout(width="100%"))
        bar_head = W.HBox([W.Label("operators of:"), self.phase], layout=W.Layout(align_items="center", grid_gap="8px"))
        super().__init__(children=[self.table, bar_head, self.figure], **kwargs)
        self.add_class("lr-compare-view")
        for st in (self.state_a, self.state_b):
            st.observe(self._on_change, names=["revision"])
            st.observe(self._on_error, names=["error"])
        self.phase.observe(lambda _c: self._draw_bars(), names="value")
        self.refresh()

    def _on_change(self, change=None):
        self.refresh()

    def _on_error(self, change=None):
        self.table.error = self._errors()

    def _errors(self) -> str:
        out = []
        for label, st in zip(self.labels, (self.state_a, self.state_b)):
            if st.error:
                out.append(f"{label}: {st.error}")
        return "\n".join(out)

    def refresh(self) -> None:
        """Compare the two States' current results (``lr.compare``) and update the views."""
        ra, rb = self.state_a.result, self.state_b.result
        if ra is None or rb is None:
            self.table.error = self._errors() or "nothing to compare yet"
            return
        cmp = compare(ra, rb, labels=self.labels)
        self.comparison = cmp
        la, lb = self.labels
        totals = []
        for rec in cmp.totals.to_dict("records"):
            q = str(rec["quantity"])
            totals.append(
                {
                    "quantity": q,
                    "a": _plain(rec[la]),
                    "b": _plain(rec[lb]),
                    "delta": _plain(rec["delta"]),
                    "ratio": _plain(rec["ratio"]),
                    "better": _better(q.split(".")[-1]),
                }
            )
        ops = []
        for rec in cmp.operators.to_dict("records"):
            ops.append(
                {
                    "phase": rec["phase"],
                    "layer_type": rec["layer_type"],
                    "name": rec["name"],
                    "time_a": _plain(rec[f"time_s_{la}"]),
                    "time_b": _plain(rec[f"time_s_{lb}"]),
                    "delta_s": _plain(rec["delta_s"]),
                    "bytes_a": _plain(rec[f"bytes_{la}"]),
                    "bytes_b": _plain(rec[f"bytes_{lb}"]),
                    "bound_a": rec[f"bound_{la}"],
                    "bound_b": rec[f"bound_{lb}"],
                }
            )
        headers = []
        for label, r in zip(self.labels, (ra, rb)):
            s = r.settings
            headers.append(
                {
                    "label": label,
                    "model": str(r.model.name),
                    "hardware": str(r.hardware.name),
                    "settings": f"batch {s['batch_size']:,} · prompt {s['prompt_len']:,} · "
                    f"generate {s['gen_len']:,} · W{s['w_bits']} A{s['a_bits']} KV{s['kv_bits']}",
                    "techniques": technique_labels(s),
                }
            )
        with self.table.hold_sync():
            self.table.headers = headers
            self.table.totals = totals
            self.table.operators = ops
            self.table.error = self._errors()
        self._draw_bars()

    def _draw_bars(self) -> None:
        cmp = self.comparison
        if cmp is None:
            return
        la, lb = self.labels
        ph = self.phase.value
        df = cmp.operators[cmp.operators["phase"] == ph]
        # operator names, with the layer type where a name occurs in several layer types
        counts = df["name"].value_counts()
        names = [f"{lt} · {n}" if counts[n] > 1 else str(n) for lt, n in zip(df["layer_type"], df["name"])]
        ta = df[f"time_s_{la}"].to_numpy(np.float64) * 1e3
        tb = df[f"time_s_{lb}"].to_numpy(np.float64) * 1e3
        # the operators that take the most time in either analysis; the rest summed as "other"
        order = np.argsort(-np.maximum(ta, tb), kind="stable")
        top = sorted(order[:TOP_OPERATORS])
        rest = order[TOP_OPERATORS:]
        x = [names[i] for i in top]
        ya, yb = list(ta[top]), list(tb[top])
        if len(rest):
            x.append(f"other ({len(rest)})")
            ya.append(float(ta[rest].sum()))
            yb.append(float(tb[rest].sum()))
        y = np.array([ya, yb], dtype=np.float64)
        top_y = float(y.max()) if y.size else 1.0
        with self.y_scale.hold_sync():
            self.y_scale.min, self.y_scale.max = 0.0, (top_y or 1.0) * 1.2
        with self.bars.hold_sync():
            self.bars.x, self.bars.y = x, y
        total_a, total_b = float(ta.sum()), float(tb.sum())
        ratio = f"{total_b / total_a:.3g}×" if total_a > 0 and math.isfinite(total_b / total_a) else "–"
        self.figure.title = (
            f"{ph}: time per pass by operator · {la} {total_a:.4g} ms, {lb} {total_b:.4g} ms ({lb}/{la} = {ratio})"
        )

    def close(self):
        for st in (getattr(self, "state_a", None), getattr(self, "state_b", None)):
            if st is None:
                continue
            try:
                st.unobserve(self._on_change, names=["revision"])
                st.unobserve(self._on_error, names=["error"])
            except ValueError:
                pass
        if getattr(self, "table", None) is not None:
            self.table.close()
        super().close()
