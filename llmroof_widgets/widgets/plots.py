"""The bqplot views: roofline (log–log), memory breakdown, decode step timeline.

Every update sends only the arrays the marks need, one ``hold_sync`` per widget, with animations
off so nothing flickers. The views never compute physics: points, bars and lines are the engine's
figures, scaled to display units.
"""

from __future__ import annotations

import html
import math

import bqplot as bq
import ipywidgets as W
import numpy as np

from ._base import StateView
from ._data import SLOTS, dot_point, fmt_si, fmt_time, sweep_dropping_invalid
from .anywidgets import MemoryShare

# One colour meaning across the views (and js/format.js BOUND_COLORS, the Lab viewer): blue and orange are
# the bound of an operator, nothing else. Time series and compared runs take colours of their own.
MEMORY_COLOR = "#1f77b4"
COMPUTE_COLOR = "#d95f02"
TTFT_COLOR = "#8c564b"  # prefill / time to first token (brown)
TPOT_COLOR = "#17becf"  # decode steps / time per output token (cyan)
SERIES_COLORS = ("#17becf", "#8c564b")  # run a, run b of a comparison
SELECT_COLOR = "#e6007e"
ROOF_COLORS = ("#7f7f7f", "#9a9a9a", "#b0b0b0", "#c4c4c4")
LABEL_COLOR = "#8a8a8a"  # readable on JupyterLab's light and dark backgrounds
COMM_COLOR = "#7b4fa0"  # communication operators (as the table's badge)
HOST_COLOR = "#2a9d8f"  # the host link (offloading)
PHASE_MARKER = {"prefill": "circle", "decode": "triangle-up", "both": "square"}
PHASE_LEGEND = {"prefill": "prefill", "decode": "decode", "both": "prefill + decode"}
# the roofline's key (top left): shape = phase, colour = bound
KEY_TEXT = ("● prefill   ▲ decode   ■ both at one point", "memory-bound", "compute-bound")
KEY_Y = (0.955, 0.895, 0.835)
KEY_TOP = 0.68  # the top roof is at most this share of the plot's height up (the key and the note above it)
DTYPE_LABEL = {"vector": "vector (non-matrix)"}
_EMPTY = np.zeros(0)


AXIS_LIMIT = 1e300  # log axes stay within [1/AXIS_LIMIT, AXIS_LIMIT]: finite logarithms for any value
MAX_TICKS = 12  # decades labelled at most (every k-th decade beyond)


def _decades(lo: float, hi: float) -> tuple[float, float]:
    """A range of whole decades around [lo, hi] (log axes read best that way; pitfall P15), within finite limits."""
    lo = min(max(lo, 1e-30), AXIS_LIMIT / 100) if math.isfinite(lo) else 1e-30
    hi = min(max(hi, lo * 10), AXIS_LIMIT) if not math.isnan(hi) else lo * 100
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    if b - a < 2:
        b = a + 2
    return 10.0**a, 10.0**b


def _decade_ticks(lo: float, hi: float) -> np.ndarray:
    a, b = round(math.log10(lo)), round(math.log10(hi))
    step = 1 if b - a <= 9 else max(2, math.ceil((b - a + 1) / MAX_TICKS))
    return np.array([10.0**k for k in range(a, b + 1, step)])


def _figure_kwargs(height: str) -> dict:
    return dict(
        animation_duration=0,
        min_aspect_ratio=0.01,
        max_aspect_ratio=100,
        layout=W.Layout(width="100%", height=height, min_width="300px"),
    )


def dot_name(rows: list[dict], members: list[int]) -> str:
    """A dot's tooltip: its operator, or every operator at that point joined by " + "."""
    r0 = rows[members[0]]
    if len(members) == 1:
        return (
            f"{r0['phase']} · {r0['layer_type']} · {r0['name']} ×{r0['count']} — "
            f"{r0['bound']}-bound, {fmt_time(r0['time_s'])} per run"
        )
    ops = " + ".join(
        f"{rows[i]['phase']} · {rows[i]['layer_type']} · {rows[i]['name']} ×{rows[i]['count']} "
        f"({fmt_time(rows[i]['time_s'])})"
        for i in members
    )
    return f"{ops} — {r0['bound']}-bound, {len(members)} operators at this point (per run)"


def _key_lines(n_notes: int) -> list[float]:
    """Heights (0–1) of the roofline's top-left lines: the key, the "no dot" line, then ``n_notes`` notes."""
    step = KEY_Y[0] - KEY_Y[1]
    return [KEY_Y[0] - step * i for i in range(len(KEY_Y) + 1 + n_notes)]


class _Closing:
    def close(self):
        self._detach()
        super().close()


class RooflinePlot(_Closing, StateView, bq.Figure):
    """Log–log roofline: the device's bandwidth slope and one flat roof per peak the plotted
    operators use, the ridge points, and one dot per operator (colour = bound: blue when
    memory-bound, orange when compute-bound; shape = phase: prefill ●, decode ▲). Hover for the
    operator's figures, click to select.

    Operators at the same point (q_proj and o_proj of a decode step, say) share one dot, whose
    tooltip lists them all and whose click selects them all; a dot shared by prefill and decode
    operators is a square ■. ``dots`` holds six Scatter marks, one per (phase, bound) in ``SLOTS``
    order; a table row's ``dot`` is ``[slot, index]``. Operators without FLOPs (an embedding lookup)
    have no dot: selecting one says so in the plot (``selection_note``, set in the browser).
    """

    def __init__(self, state, **kwargs):
        self.x_scale = bq.LogScale(min=0.1, max=1e4)
        self.y_scale = bq.LogScale(min=1e9, max=1e16)
        sc = {"x": self.x_scale, "y": self.y_scale}
        self.roofs = bq.Lines(x=_EMPTY, y=_EMPTY, scales=sc, colors=list(ROOF_COLORS), stroke_width=2, interactions={})
        # the top roof's label sits above its line, the lower roofs' labels below theirs (no overlap
        # when two peaks are close)
        self.roof_labels = bq.Label(
            x=_EMPTY,
            y=_EMPTY,
            text=[],
            scales=sc,
            colors=[LABEL_COLOR],
            default_size=11,
            align="end",
            y_offset=-10,
            interactions={},
        )
        self.lower_roof_labels = bq.Label(
            x=_EMPTY,
            y=_EMPTY,
            text=[],
            scales=sc,
            colors=[LABEL_COLOR],
            default_size=11,
            align="end",
            y_offset=16,
            interactions={},
        )
        self.bandwidth_label = bq.Label(
            x=_EMPTY,
            y=_EMPTY,
            text=[],
            scales=sc,
            colors=[LABEL_COLOR],
            default_size=11,
            align="start",
            x_offset=8,
            y_offset=4,
            interactions={},
        )
        # offloading: the host link's slope (offloaded bytes stream over it), dashed
        self.host_roof = bq.Lines(
            x=_EMPTY, y=_EMPTY, scales=sc, colors=[HOST_COLOR], stroke_width=2, line_style="dashed", interactions={}
        )
        self.host_label = bq.Label(
            x=_EMPTY,
            y=_EMPTY,
            text=[],
            scales=sc,
            colors=[HOST_COLOR],
            default_size=11,
            align="start",
            x_offset=8,
            y_offset=14,
            interactions={},
        )
        # notes in the plot's own coordinates (0–1), under the key: collectives listed in the table only,
        # calibrated mode
        self.unit_x, self.unit_y = bq.LinearScale(min=0.0, max=1.0), bq.LinearScale(min=0.0, max=1.0)
        self.notes = bq.Label(
            x=_EMPTY,
            y=_EMPTY,
            text=[],
            scales={"x": self.unit_x, "y": self.unit_y},
            colors=[COMM_COLOR, LABEL_COLOR],
            default_size=11,
            align="start",
            interactions={},
        )
        # the key, in the top-left corner (above the bandwidth slope nothing is drawn, and the roofs stay
        # below KEY_TOP of the height): shape = phase, colour = bound; three short lines, no box
        self.key = bq.Label(
            x=np.full(len(KEY_TEXT), 0.015),
            y=np.array(KEY_Y),
            text=list(KEY_TEXT),
            scales={"x": self.unit_x, "y": self.unit_y},
            colors=[LABEL_COLOR, MEMORY_COLOR, COMPUTE_COLOR],
            default_size=11,
            align="start",
            interactions={},
        )
        self.ridges = bq.Scatter(
            x=_EMPTY,
            y=_EMPTY,
            scales=sc,
            marker="diamond",
            colors=[LABEL_COLOR],
            default_size=36,
            stroke="#ffffff",
            display_names=False,
            interactions={"hover": "tooltip"},
            tooltip=bq.Tooltip(fields=["name"], labels=["ridge point"]),
        )
        # "no dot" for a selected operator without one (written by the table's front end, so it also
        # works in an exported page); it sits in the empty top-left triangle above the bandwidth slope
        self.selection_note = bq.Label(
            x=np.array([0.015]),
            y=np.array([KEY_Y[-1] - (KEY_Y[0] - KEY_Y[1])]),
            text=[""],
            scales={"x": self.unit_x, "y": self.unit_y},
            colors=[SELECT_COLOR],
            default_size=11,
            font_weight="bolder",
            align="start",
            interactions={},
        )
        self.dots = []
        for phase, bound in SLOTS:
            tip = bq.Tooltip(
                fields=["name", "x", "y"],
                formats=["", ".3~g", ".3~s"],
                labels=["operator(s)", "FLOP/byte", "FLOP/s"],
            )
            self.dots.append(
                bq.Scatter(
                    x=_EMPTY,
                    y=_EMPTY,
                    names=[],
                    scales=sc,
                    marker=PHASE_MARKER[phase],
                    colors=[COMPUTE_COLOR if bound == "compute" else MEMORY_COLOR],
                    default_size=70,
                    stroke="#ffffff",
                    stroke_width=1,
                    display_names=False,
                    interactions={"click": "select", "hover": "tooltip"},
                    tooltip=tip,
                    selected_style={"stroke": SELECT_COLOR, "stroke-width": "4px", "opacity": "1"},
                    unselected_style={},
                    display_legend=False,  # the key (self.key) says what shapes and colours mean
                    labels=[f"{PHASE_LEGEND[phase]} · {bound}-bound"],
                )
            )
        self.x_axis = bq.Axis(
            scale=self.x_scale,
            label="arithmetic intensity (FLOP / byte)",
            tick_format="~g",
            tick_values=_decade_ticks(0.1, 1e4),
            grid_lines="dashed",
        )
        self.y_axis = bq.Axis(
            scale=self.y_scale,
            side="left",
            label="attainable performance (FLOP/s)",
            tick_format="~s",
            tick_values=_decade_ticks(1e9, 1e16),
            grid_lines="dashed",
            label_offset="52px",
        )
        kw = _figure_kwargs("380px")
        kw.update(kwargs)
        super().__init__(
            marks=[
                self.roofs,
                self.host_roof,
                self.roof_labels,
                self.lower_roof_labels,
                self.bandwidth_label,
                self.host_label,
                self.notes,
                self.ridges,
                *self.dots,
                self.key,
                self.selection_note,
            ],
            axes=[self.x_axis, self.y_axis],
            title="Roofline",
            fig_margin={"top": 40, "bottom": 52, "left": 72, "right": 40},
            **kw,
        )
        self.add_class("lr-roofline")
        self._attach(state)
        self._on_revision()

    @property
    def selection_marks(self):
        return tuple(self.dots)

    # -- selection on the kernel side ----------------------------------------------------------
    def selected_rows(self) -> list[int]:
        """The table row indices of the selected dot (every operator it stands for), or []."""
        data = self._data
        if data is None:
            return []
        for slot, mark in enumerate(self.dots):
            sel = mark.selected
            if sel is not None and len(sel):
                return data.rows_of_dot(slot, int(sel[-1]))
        return []

    def selected_row(self) -> int | None:
        """The first table row index of the selected dot (kernel's view of the marks), or None."""
        rows = self.selected_rows()
        return rows[0] if rows else None

    def show_row(self, index: int | None) -> None:
        """Select the dot of table row ``index`` (None clears) on every mark."""
        data = self._data
        dot = (
            data.rows[index].get("dot")
            if data is not None and index is not None and 0 <= index < len(data.rows)
            else None
        )
        for slot, mark in enumerate(self.dots):
            want = [dot[1]] if dot is not None and dot[0] == slot else None
            have = mark.selected
            if want is None and (have is None or len(have) == 0):
                continue
            if want is not None and have is not None and list(np.asarray(have).ravel()) == want:
                continue
            mark.selected = None if want is None else np.array(want, dtype=np.uint32)

    # -- refresh -----------------------------------------------------------------------------
    def _refresh(self, old, new):
        prev_rows = self.selected_rows() if old is not None else []
        self._data = new
        d = new.d
        if new.empty:
            for m in (self.roofs, self.ridges, self.host_roof):
                with m.hold_sync():
                    m.x, m.y = _EMPTY, _EMPTY
            for m in self.dots:
                with m.hold_sync():
                    m.x, m.y, m.names, m.selected = _EMPTY, _EMPTY, [], None
            return
        hw = d["hardware"]
        rf = new.roofs
        # the engine's roofs, after efficiency factors (calibrated mode: achievable bandwidth and peaks)
        bw = float(rf.get("memory_bandwidth") or hw["memory_bandwidth"])
        engine_peaks = {k: float(v) for k, v in (rf.get("peaks") or {}).items()}
        engine_ridge = rf.get("ridge") or {}
        rows = new.rows
        # one flat roof per peak the plotted operators use, highest first; an operator whose own peak
        # is above its dtype's roof (2:4 sparse tensor cores) gets a roof of its own
        peaks: dict[str, float] = {}
        for r in rows:
            if r.get("dot") is None or not r.get("peak_flops"):
                continue
            dt = r["peak_dtype"]
            base = engine_peaks.get(dt, float(r["peak_flops"]))
            peaks.setdefault(dt, base)
            if float(r["peak_flops"]) > base * (1 + 1e-9):
                peaks.setdefault(f"{dt} 2:4 sparse", float(r["peak_flops"]))
        if not peaks:  # nothing plotted: show the device's top matrix peak
            if engine_peaks:
                dt, pk = max(engine_peaks.items(), key=lambda kv: kv[1])
            else:
                dt, pk = max(hw["peak_flops"].items(), key=lambda kv: kv[1])
            peaks[dt] = float(pk)
        roofs = sorted(peaks.items(), key=lambda kv: -kv[1])
        ridges = [float(engine_ridge[dt]) if dt in engine_ridge else pk / bw for dt, pk in roofs]

        # notes, in the top-left corner under the key and the "no dot" line (above the bandwidth slope
        # nothing is drawn): collectives and fused operators listed in the table only, calibrated mode
        notes = []
        if new.communication:
            n = len(new.communication)
            notes.append(f"{n} collective{'s' if n > 1 else ''} (communication, 0 FLOPs): in the table, no dot")
        fused = sum(
            1
            for r in rows
            if r.get("dot") is None
            and r["bound"] != "communication"
            and (r.get("flops") or 0) > 0
            and not (r.get("bytes") or 0) > 0
        )
        if fused:
            notes.append(
                f"{fused} fused operator{'s' if fused > 1 else ''} (no bytes, intensity ∞): in the table, no dot"
            )
        if new.headline.get("efficiency_mode", "roofline") == "calibrated":
            notes.append("calibrated: dots sit below the roofs by small-M efficiency and launch overheads")
        xs, ys = [], []
        per_slot = []
        for groups in new.dots:
            # a dot at its first operator's point: (intensity, the engine's attained rate FLOPs / time)
            pts = [dot_point(rows[g[0]]) for g in groups]
            x = np.array([p[0] for p in pts], dtype=np.float64)
            y = np.array([p[1] for p in pts], dtype=np.float64)
            per_slot.append((x, y, [dot_name(rows, g) for g in groups]))
            xs.extend(x)
            ys.extend(y)
        x_lo, x_hi = _decades(min(xs + ridges) / 2, max(xs + ridges) * 3)
        y_top = roofs[0][1]
        # whole decades, with the top roof at most KEY_TOP of the height up: the key and the "no dot"
        # note fit above the roofs and their labels
        y_lo, y_hi = _decades(min(ys + [y_top]) / 3, y_top * 4)
        lo, top = math.log10(y_lo), math.log10(y_top)
        lines_y = _key_lines(len(notes))
        key_top = min(KEY_TOP, lines_y[-1] - 0.1)  # the top roof's label (~0.08 high) stays under the last line
        y_hi = max(y_hi, 10.0 ** math.ceil(lo + (top - lo) / key_top))
        x0 = max(x_lo, y_lo / bw)  # where the bandwidth slope enters the plot

        rx = np.array([[x0, rd, x_hi] for rd in ridges], dtype=np.float64)
        ry = np.array([[bw * x0, pk, pk] for _, pk in roofs], dtype=np.float64)
        labels = [
            f"{DTYPE_LABEL.get(dt, dt)} peak {fmt_si(pk, 'FLOP/s')} · ridge {rd:.3g} FLOP/B"
            for (dt, pk), rd in zip(roofs, ridges)
        ]
        peaks_y = np.array([pk for _, pk in roofs], dtype=np.float64)

        with self.x_scale.hold_sync():
            self.x_scale.min, self.x_scale.max = x_lo, x_hi
        with self.y_scale.hold_sync():
            self.y_scale.min, self.y_scale.max = y_lo, y_hi
        self.x_axis.tick_values = _decade_ticks(x_lo, x_hi)
        self.y_axis.tick_values = _decade_ticks(y_lo, y_hi)
        with self.roofs.hold_sync():
            self.roofs.x, self.roofs.y = rx, ry
        with self.roof_labels.hold_sync():
            self.roof_labels.x, self.roof_labels.y, self.roof_labels.text = np.array([x_hi]), peaks_y[:1], labels[:1]
        with self.lower_roof_labels.hold_sync():
            n = len(roofs) - 1
            self.lower_roof_labels.x, self.lower_roof_labels.y = np.full(n, x_hi), peaks_y[1:]
            self.lower_roof_labels.text = labels[1:]
        mode = new.headline.get("efficiency_mode", "roofline")
        bw_word = "achievable bandwidth" if mode != "roofline" else "memory bandwidth"
        with self.bandwidth_label.hold_sync():
            self.bandwidth_label.x = np.array([x0], dtype=np.float64)
            self.bandwidth_label.y = np.array([bw * x0], dtype=np.float64)
            self.bandwidth_label.text = [f"{bw_word} {fmt_si(bw, 'B/s')}"]
        # offloading: the host link's slope, when some shown operator streams bytes over it
        host_bw = float(rf.get("host_bandwidth") or 0.0)
        offloaded = host_bw > 0 and any((r.get("host_time_s") or 0) > 0 for r in rows)
        if offloaded:
            hx0 = max(x_lo, y_lo / host_bw)
            hx1 = min(x_hi, y_top / host_bw)
            hx, hy = np.array([hx0, hx1]), np.array([host_bw * hx0, host_bw * hx1])
            htext = [f"host link {fmt_si(host_bw, 'B/s')} (offloaded bytes)"]
        else:
            hx = hy = _EMPTY
            htext = []
        with self.host_roof.hold_sync():
            self.host_roof.x, self.host_roof.y = hx, hy
        with self.host_label.hold_sync():
            self.host_label.x, self.host_label.y, self.host_label.text = hx[:1], hy[:1], htext
        with self.ridges.hold_sync():
            self.ridges.x = np.array(ridges, dtype=np.float64)
            self.ridges.y = peaks_y
            self.ridges.names = [
                f"{DTYPE_LABEL.get(dt, dt)}: {rd:.3g} FLOP/B (peak / bandwidth)" for (dt, _), rd in zip(roofs, ridges)
            ]
        with self.notes.hold_sync():
            self.notes.x = np.full(len(notes), 0.015)
            self.notes.y = np.array(lines_y[len(KEY_Y) + 1 :])
            self.notes.text = notes
            self.notes.colors = ([COMM_COLOR] if new.communication else []) + [LABEL_COLOR]

        # the selected dot's operators in the new rows: the first that still has a dot keeps it selected
        remapped = [self.remap(old, new, i) for i in prev_rows]
        dot = next((rows[i]["dot"] for i in remapped if i is not None and rows[i]["dot"] is not None), None)
        for slot, (mark, (x, y, names)) in enumerate(zip(self.dots, per_slot)):
            want = np.array([dot[1]], dtype=np.uint32) if dot is not None and dot[0] == slot else None
            with mark.hold_sync():
                mark.x, mark.y, mark.names = x, y, names
                mark.selected = want
        suffix = {"calibrated": " · calibrated", "custom": " · efficiency factors"}.get(mode, "")
        self.title = f"Roofline · {hw.get('name', '')}{suffix}"


# The memory chart's parts, bottom to top: (label, colour, key of result.memory at the prefill peak,
# at the end of decode, in the fits check). A part missing from the engine's dict counts 0 and a part
# that is 0 in every bar is left out, so a new part (e.g. a recurrent state) is one line here.
MEMORY_PARTS = (
    ("weights", "#4c78a8", "weights_bytes", "weights_bytes", "weights_bytes"),
    ("KV cache", "#f58518", "kv_cache_prompt_bytes", "kv_cache_bytes", "kv_cache_bytes"),
    ("activations", "#54a24b", "activations_prefill_bytes", "activations_decode_bytes", "activations_bytes"),
    ("draft model", "#b279a2", "draft_bytes", "draft_bytes", "draft_bytes"),
    # recurrent layers' per-sequence state (Mamba, Gated DeltaNet, conv): fixed, whatever the context
    ("recurrent state", "#e45756", "recurrent_state_bytes", "recurrent_state_bytes", "recurrent_state_bytes"),
)
# the bars of the "per phase" mode: (x label, index of the key in a MEMORY_PARTS row, total's key)
MEMORY_BARS = (
    ("prefill", 2, "prefill_total_bytes"),
    ("end of decode", 3, "decode_total_bytes"),
    ("fits check", 4, "total_bytes"),
)
FITS_CHECK_SHORT = "fits check: weights + the last step's KV cache + the larger activations (what “fits” uses)"
FITS_CHECK_NOTE = (
    "fits check = weights + the KV cache of the last step + the larger of the prefill and decode "
    "activations: the figure the headline, 'fits' and 'max batch' use"
)


def memory_parts(m: dict, bars=MEMORY_BARS) -> tuple[list[str], list[str], np.ndarray]:
    """``(labels, colours, bytes[part, bar])`` of the per-phase bars from ``result.memory``."""
    labels, colors, values = [], [], []
    for label, color, *keys in MEMORY_PARTS:
        v = [float(m.get(keys[i - 2], m.get(keys[-1], 0.0)) or 0.0) for _, i, _ in bars]
        if label != "weights" and not any(x > 0 for x in v):
            continue
        labels.append(label)
        colors.append(color)
        values.append(v)
    return labels, colors, np.array(values, dtype=np.float64)


def _memory_table(labels, colors, xs, values, totals, capacity, current=None) -> str:
    """The exact figures of the bars, as an HTML table (every segment readable however thin it is
    drawn); its colour swatches are the chart's legend. ``values``: bytes[part, bar]."""
    esc = html.escape
    head = "".join(
        f'<th><span class="lr-swatch" style="background:{c}"></span>{esc(lab)}</th>' for lab, c in zip(labels, colors)
    )
    body = []
    for j, x in enumerate(xs):
        cur = ' class="lr-mem-current"' if current is not None and x == current else ""
        cells = "".join(f'<td class="lr-num">{esc(fmt_si(values[i, j], "B"))}</td>' for i in range(len(labels)))
        over = totals[j] > capacity
        total = f'<td class="lr-num lr-mem-total{" lr-mem-over" if over else ""}">{esc(fmt_si(totals[j], "B"))}</td>'
        body.append(f"<tr{cur}><th>{esc(str(x))}</th>{cells}{total}</tr>")
    return (
        f'<table class="lr-mem-table" title="{esc(FITS_CHECK_NOTE)}"><thead><tr><th></th>'
        + head
        + "<th>total</th></tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table>"
        + f'<div class="lr-mem-note">{esc(FITS_CHECK_SHORT)}</div>'
    )


class MemoryBreakdown(_Closing, StateView, W.VBox):
    """Weights, KV cache and activations as stacked bars against the device's capacity (dashed line),
    with a table of the exact figures under the chart (a thin segment stays readable; the table's
    colour swatches are the legend).

    Per phase (``by="phase"``): the prefill peak, the end of decode, and the *fits check* (weights +
    the last step's KV cache + the larger activations: the total the headline, "fits" and "max batch"
    use). Per batch size (``by="batch"``): the fits check for batch 1, 2, 4, … around the current one
    and the largest that fits, from ``lr.sweep`` (computed only while that mode is shown). Below, a
    caption shows the selected operator's weights as a share of all weights (linked on the front end).
    The parts come from :data:`MEMORY_PARTS`."""

    BY = (("by phase", "phase"), ("by batch size", "batch"))
    MAX_BARS = 10

    CATEGORIES = tuple(p[0] for p in MEMORY_PARTS[:3])
    COLORS = tuple(p[1] for p in MEMORY_PARTS[:3])
    DRAFT_COLOR = MEMORY_PARTS[3][1]

    def __init__(self, state, by: str = "phase", **kwargs):
        if by not in ("phase", "batch"):
            raise ValueError(f"MemoryBreakdown: by must be 'phase' or 'batch', got {by!r}")
        self.by = W.ToggleButtons(
            options=self.BY,
            value=by,
            style={"button_width": "auto"},
            tooltips=[
                "prefill peak, end of decode, and the fits check",
                "the fits check for several batch sizes (lr.sweep)",
            ],
        )
        self.by.add_class("lr-memory-by")
        self.batch_sizes: list[int] = []  # the batch sizes shown in "batch" mode
        self.x_scale = bq.OrdinalScale()
        self.y_scale = bq.LinearScale(min=0.0, max=1.0)
        self.unit_scale = bq.LinearScale(min=0.0, max=1.0)
        self.bars = bq.Bars(
            x=[b[0] for b in MEMORY_BARS],
            y=np.zeros((3, len(MEMORY_BARS))),
            scales={"x": self.x_scale, "y": self.y_scale},
            type="stacked",
            colors=list(self.COLORS),
            labels=list(self.CATEGORIES),
            display_legend=False,  # the table under the chart is the legend (never over the bars)
            padding=0.4,
            stroke="#ffffff",
            opacities=[1.0, 1.0, 1.0],
            tooltip=bq.Tooltip(fields=["x", "y"], formats=["", ".4~g"], labels=["bar", "GB"]),
        )
        self.capacity = bq.Lines(
            x=np.array([0.0, 1.0]),
            y=np.zeros(2),
            scales={"x": self.unit_scale, "y": self.y_scale},
            colors=["#d62728"],
            line_style="dashed",
            stroke_width=2,
            interactions={},
        )
        self.capacity_label = bq.Label(
            x=np.array([0.01]),
            y=np.zeros(1),
            text=[""],
            scales={"x": self.unit_scale, "y": self.y_scale},
            colors=["#d62728"],
            default_size=11,
            align="start",
            y_offset=-9,
            interactions={},
        )
        self.totals_label = bq.Label(
            x=[b[0] for b in MEMORY_BARS],
            y=np.zeros(len(MEMORY_BARS)),
            text=[""] * len(MEMORY_BARS),
            scales={"x": self.x_scale, "y": self.y_scale},
            colors=[LABEL_COLOR],
            default_size=11,
            align="middle",
            y_offset=-6,
            interactions={},
        )
        self.x_axis = bq.Axis(scale=self.x_scale, label="")
        self.y_axis = bq.Axis(scale=self.y_scale, side="left", label="GB", tick_format="~g", grid_lines="dashed")
        self.figure = bq.Figure(
            marks=[self.bars, self.capacity, self.capacity_label, self.totals_label],
            axes=[self.x_axis, self.y_axis],
            title="Memory",
            fig_margin={"top": 40, "bottom": 52, "left": 60, "right": 16},
            **_figure_kwargs("300px"),
        )
        self.table = W.HTML(value="", layout=W.Layout(width="100%"))
        self.table.add_class("lr-memory-table")
        self.share = MemoryShare(state)
        super().__init__(children=[self.by, self.figure, self.table, self.share], **kwargs)
        self.add_class("lr-memory")
        self._attach(state)
        self.by.observe(lambda change: self._on_revision(), names="value")
        self._on_revision()

    @property
    def selection_peers(self):
        return (self.share,)

    def close(self):
        self.share.close()
        super().close()

    def _refresh(self, old, new):
        m = new.d.get("memory")
        if not m:
            return
        if self.by.value == "batch" and self._refresh_by_batch(m):
            return
        self.batch_sizes = []
        self.x_axis.label = ""
        labels, colors, values = memory_parts(m)
        totals = np.array([float(m.get(key, values[:, j].sum())) for j, (_, _, key) in enumerate(MEMORY_BARS)])
        xs = [b[0] for b in MEMORY_BARS]
        self._draw(m, xs, labels, colors, values, totals, [fmt_si(t, "B") for t in totals], current="fits check")

    def _draw(self, m, xs, labels, colors, values, totals, totals_text, current=None):
        """Stacked bars of ``values`` (bytes[part, bar]) at ``xs``, their totals above them, against the
        capacity line, and the table of exact figures. Bytes in, GB drawn."""
        y = values / 1e9
        cap = m["capacity_bytes"] / 1e9
        top = max(cap, float(np.max(totals)) / 1e9) * 1.15  # headroom for the totals and the capacity label
        with self.y_scale.hold_sync():
            self.y_scale.min, self.y_scale.max = 0.0, top
        if list(self.totals_label.x) != list(xs):
            # the bars' new categories become the ordinal scale's domain: a label still at an old
            # category would be drawn at x = NaN, so it leaves first and comes back below
            with self.totals_label.hold_sync():
                self.totals_label.x, self.totals_label.y, self.totals_label.text = [], _EMPTY, []
        with self.bars.hold_sync():
            self.bars.x = xs
            self.bars.y = y
            if list(self.bars.labels) != labels or list(self.bars.colors) != colors:
                self.bars.labels, self.bars.colors = labels, colors
                self.bars.opacities = [1.0] * len(labels)
        with self.capacity.hold_sync():
            self.capacity.y = np.array([cap, cap])
        with self.capacity_label.hold_sync():
            self.capacity_label.y = np.array([cap])
            self.capacity_label.text = [f"capacity {fmt_si(m['capacity_bytes'], 'B')}"]
        with self.totals_label.hold_sync():
            self.totals_label.x = xs
            self.totals_label.y = np.asarray(totals, dtype=np.float64) / 1e9
            self.totals_label.text = list(totals_text)
        self.table.value = _memory_table(labels, colors, xs, values, totals, m["capacity_bytes"], current)
        self._title(m)

    def batch_values(self, m) -> list[int]:
        """Powers of two up to twice the larger of the current batch and the largest that fits, plus the current one."""
        current = int(self.state.batch_size)
        top = max(2 * current, 2 * int(m.get("max_batch_size", 0) or 0), 8)
        vals = sorted({2**k for k in range(int(math.log2(top)) + 1)} | {current})
        while len(vals) > self.MAX_BARS:  # thin out, keeping both ends and the current batch
            vals = sorted({v for i, v in enumerate(vals) if i % 2 == 0 or v in (current, vals[-1])})
        return vals

    def _refresh_by_batch(self, m) -> bool:
        """The fits-check memory for several batch sizes, from the engine's sweep; False if it cannot run."""
        st = self.state
        kw = st.inputs()
        try:
            model = st._load("model", kw.pop("model"))
            hardware = st._load("hardware", kw.pop("hardware"))
            df, _, _ = sweep_dropping_invalid(model, hardware, kw, "batch_size", self.batch_values(m))
        except ValueError:
            return False
        self.batch_sizes = [int(b) for b in df.batch_size]
        # the sweep's columns are the fits-check parts (a part the sweep lacks is 0)
        labels, colors, values = [], [], []
        for label, color, *keys in MEMORY_PARTS:
            col = keys[-1]
            v = df[col].to_numpy(np.float64) if col in df else np.zeros(len(df))
            if label != "weights" and not (v > 0).any():
                continue
            labels.append(label)
            colors.append(color)
            values.append(v)
        values = np.array(values, dtype=np.float64)
        totals = df.total_bytes.to_numpy(np.float64)
        rest = totals - values.sum(axis=0)
        if (rest > 1.0).any():  # a part the sweep has no column for (the draft model's, when there is one)
            draft = float(m.get("draft_bytes", 0.0) or 0.0) > 0 and "draft model" not in labels
            labels.append("draft model" if draft else "other")
            colors.append(MEMORY_PARTS[3][1] if draft else LABEL_COLOR)
            values = np.vstack([values, np.maximum(rest, 0.0)])
        current = int(st.batch_size)
        self.x_axis.label = f"batch size (▶ current; fits up to {int(m.get('max_batch_size', 0)):,})"
        xs = [f"{b:,}" for b in self.batch_sizes]
        self._draw(
            m,
            xs,
            labels,
            colors,
            values,
            totals,
            [("▶ " if b == current else "") + fmt_si(t, "B") for b, t in zip(self.batch_sizes, totals)],
            current=f"{current:,}",
        )
        return True

    def _title(self, m):
        fits = m.get("fits", True)
        # the total is the fits-check bar's (the headline's memory figure)
        title = (
            f"Memory · fits: {fmt_si(m['total_bytes'], 'B')} of {fmt_si(m['capacity_bytes'], 'B')}"
            if fits
            else f"Memory · DOES NOT FIT: {fmt_si(m['total_bytes'], 'B')} > {fmt_si(m['capacity_bytes'], 'B')}"
        )
        # per-device and host-memory facts go to the axis and the capacity label (the title stays short)
        devices = int(m.get("devices", 1) or 1)
        host = float(m.get("host_weights_bytes", 0.0) or 0.0) + float(m.get("host_kv_cache_bytes", 0.0) or 0.0)
        self.y_axis.label = f"GB per device ({devices} devices)" if devices > 1 else "GB"
        if host > 0:
            self.capacity_label.text = [f"capacity {fmt_si(m['capacity_bytes'], 'B')} · host holds {fmt_si(host, 'B')}"]
        self.figure.title = title


class StepTimeline(_Closing, StateView, bq.Figure):
    """Decode time per generated token as the KV cache grows (x: context length, y: step time),
    with the mean TPOT and the TTFT (the prefill, which produces the first token) marked."""

    def __init__(self, state, **kwargs):
        self.x_scale = bq.LinearScale(min=0.0, max=1.0)
        self.y_scale = bq.LinearScale(min=0.0, max=1.0)
        sc = {"x": self.x_scale, "y": self.y_scale}
        self.steps = bq.Lines(
            x=_EMPTY,
            y=_EMPTY,
            scales=sc,
            colors=[TPOT_COLOR],
            stroke_width=2,
            display_legend=True,
            labels=["decode step"],
            interactions={},
        )
        self.tpot = bq.Lines(
            x=_EMPTY,
            y=_EMPTY,
            scales=sc,
            colors=[LABEL_COLOR],
            line_style="dashed",
            display_legend=True,
            labels=["mean TPOT"],
            interactions={},
        )
        self.ttft = bq.Lines(
            x=_EMPTY,
            y=_EMPTY,
            scales=sc,
            colors=[TTFT_COLOR],
            line_style="dashed",
            stroke_width=2,
            display_legend=True,
            labels=["TTFT (prefill)"],
            interactions={},
        )
        self.labels = bq.Label(
            x=_EMPTY,
            y=_EMPTY,
            text=[],
            scales=sc,
            colors=[TTFT_COLOR, LABEL_COLOR],
            default_size=11,
            align="start",
            x_offset=6,
            y_offset=-6,
            interactions={},
        )
        self.x_axis = bq.Axis(scale=self.x_scale, label="context length (tokens in the KV cache)", tick_format="~s")
        self.y_axis = bq.Axis(
            scale=self.y_scale, side="left", label="time per token (ms)", tick_format="~g", grid_lines="dashed"
        )
        kw = _figure_kwargs("300px")
        kw.update(kwargs)
        super().__init__(
            marks=[self.steps, self.tpot, self.ttft, self.labels],
            axes=[self.x_axis, self.y_axis],
            title="Decode step time",
            fig_margin={"top": 40, "bottom": 52, "left": 60, "right": 16},
            legend_location="bottom-right",
            **kw,
        )
        self.add_class("lr-timeline")
        self._attach(state)
        self._on_revision()

    def _refresh(self, old, new):
        d = new.d
        if not d:
            return
        g = d["generation"]
        s = d["settings"]
        x = np.asarray(g.get("decode_contexts", []), dtype=np.float64)
        y = np.asarray(g.get("decode_step_times_s", []), dtype=np.float64) * 1e3
        tpot = float(g["tpot_s"]) * 1e3
        ttft = float(g["ttft_s"])
        p = float(s["prompt_len"])
        x_lo = p
        x_hi = float(x[-1]) if len(x) else p + 1
        if x_hi <= x_lo:
            x_hi = x_lo + 1
        pad = (x_hi - x_lo) * 0.02
        y_top = (max(float(y.max()) if len(y) else 0.0, tpot) or 1.0) * 1.25
        with self.x_scale.hold_sync():
            self.x_scale.min, self.x_scale.max = x_lo - pad, x_hi + pad
        with self.y_scale.hold_sync():
            self.y_scale.min, self.y_scale.max = 0.0, y_top
        with self.steps.hold_sync():
            self.steps.x, self.steps.y = x, y
        with self.tpot.hold_sync():
            self.tpot.x, self.tpot.y = np.array([x_lo, x_hi]), np.array([tpot, tpot])
        with self.ttft.hold_sync():
            self.ttft.x, self.ttft.y = np.array([p, p]), np.array([0.0, y_top])
        with self.labels.hold_sync():
            self.labels.x = np.array([p, x_lo + (x_hi - x_lo) * 0.45])
            self.labels.y = np.array([y_top * 0.9, tpot])
            self.labels.text = [
                f"TTFT {fmt_time(ttft)} (prefill of {int(p):,} tokens → first token)",
                f"mean TPOT {fmt_time(tpot / 1e3)}",
            ]
        n = int(g.get("decode_steps", len(x)))  # every step, though the timeline samples at most a few thousand
        tpr = g.get("speculative_tokens_per_round")
        if tpr and n:  # speculative decoding: each point is one draft-and-verify round
            self.title = f"Decode time per speculative round · {n:,} rounds, {tpr:.3g} tokens per round"
        else:
            self.title = (
                f"Decode step time · {n:,} steps after the first token"
                if n
                else "Decode step time · one generated token: no decode steps"
            )
