"""``Dashboard``: controls + layer table + roofline + memory + timeline + formulas on one State."""

from __future__ import annotations

import ipywidgets as W
import traitlets

from .anywidgets import FormulaPanel, LayerTable
from .compare import CompareView
from .controls import Controls
from .plots import MemoryBreakdown, RooflinePlot, StepTimeline
from .serving import ServingView
from .state import State
from .sweep import SweepView

SWEEP_TITLE = "Sweep: time and memory against batch size or context"
SERVING_TITLE = "Serving: latency percentiles against load, throughput per device and per user, energy, cost"


class Dashboard(W.VBox):
    """The whole explanation of one analysis, live on the kernel.

    >>> ui = Dashboard(model="meta-llama/Llama-3.1-8B", hardware="h100-sxm", prompt_len=2048, gen_len=256)
    >>> ui                          # renders inline (JupyterLab, Notebook 7, VS Code)
    >>> ui.state.batch_size = 32    # every view updates; ui.state.result is the engine's Result
    >>> ui.selected                 # the selected table row index, [] or [i] (set it to select)

    Pass ``state=`` to build a second dashboard on the same State (both follow every change).
    Changing a control recomputes on the kernel; the selection links (table row ↔ roofline dot ↔
    formula panel ↔ memory share) run in the browser, so they also work in an exported HTML page.

    Parts, each usable alone on a State: ``controls``, ``table`` (:class:`LayerTable`, with the
    headline and errors), ``formula`` (:class:`FormulaPanel`), ``roofline`` (:class:`RooflinePlot`),
    ``memory`` (:class:`MemoryBreakdown`), ``timeline`` (:class:`StepTimeline`), ``sweep``
    (:class:`SweepView`, in the collapsible ``sweep_section`` at the bottom).

    Technique knobs: ``ui.state.update(tp=2, flash_attention="tiled")`` or ``ui.state.tp = 2`` (see
    :class:`State`), or the controls' Techniques section.

    The sweep is computed lazily: only while its section is open (``ui.sweep.active``), so a
    control change does not pay for ``lr.sweep`` while nobody looks at it; opening the section
    brings it up to date. ``Dashboard(..., sweep_open=True)`` opens it from the start.
    """

    selected = traitlets.List(traitlets.Int(), help="selected table row: [] or [index]; mirrors the browser")

    def __init__(
        self,
        model=None,
        hardware=None,
        *,
        state: State | None = None,
        sweep_open: bool = False,
        serving_open: bool = False,
        **inputs,
    ):
        layout = inputs.pop("layout", None)
        if state is not None:
            if model is not None or hardware is not None or inputs:
                raise TypeError("Dashboard: pass either state= or the inputs (model=, hardware=, ...), not both")
            if not isinstance(state, State):
                raise TypeError(f"Dashboard: state must be an lr.State, got {type(state).__name__}")
        else:
            # arguments left out take the JupyterLab settings (Settings › LLM Roofline), if any
            from ..lab_settings import apply_lab_settings

            inputs.update(apply_lab_settings(model, hardware, inputs.pop("w_bits", None)))
            state = State(**inputs)
        self.state = state
        self._from_table = False
        # views are created (and so refreshed on every change) plots first: the roofline's marks are
        # the first message the browser receives after a control moves
        self.roofline = RooflinePlot(state)
        self.memory = MemoryBreakdown(state)
        self.timeline = StepTimeline(state)
        self.controls = Controls(state)
        self.table = LayerTable(state)
        self.formula = FormulaPanel(state, picker=False)
        self.table.link(self.roofline, self.memory, self.formula)

        # the table's column needs ~560 px to show every column without a horizontal scroll: below
        # that it wraps under the controls (and then has the dashboard's full width)
        right = W.VBox([self.table, self.formula], layout=W.Layout(flex="1 1 560px", min_width="0"))
        top = W.HBox(
            [self.controls, right], layout=W.Layout(width="100%", align_items="flex-start", flex_flow="row wrap")
        )
        self.roofline.layout.flex = "3 1 0"
        self.memory.layout = W.Layout(flex="2 1 0", min_width="280px")
        plots = W.HBox([self.roofline, self.memory], layout=W.Layout(width="100%", flex_flow="row wrap"))
        self.sweep = SweepView(state, active=False)
        # the sweep's figures are put in the section only while it is open: a bqplot figure drawn
        # inside a closed (zero-size) section lays itself out with negative sizes
        self._sweep_slot = W.VBox([], layout=W.Layout(width="100%"))
        self.sweep_section = W.Accordion(
            children=[self._sweep_slot], titles=(SWEEP_TITLE,), selected_index=None, layout=W.Layout(width="100%")
        )
        self.sweep_section.add_class("lr-sweep-section")
        self.sweep_section.observe(self._sweep_toggled, names="selected_index")
        # serving under load (lr.serve): computed only while its section is open, like the sweep
        self.serving = ServingView(state, active=False)
        self._serving_slot = W.VBox([], layout=W.Layout(width="100%"))
        self.serving_section = W.Accordion(
            children=[self._serving_slot], titles=(SERVING_TITLE,), selected_index=None, layout=W.Layout(width="100%")
        )
        self.serving_section.add_class("lr-serving-section")
        self.serving_section.observe(self._serving_toggled, names="selected_index")
        # share a view: one self-contained HTML file that works offline (lr.export_html)
        self.export_path = W.Text(
            value="llmroof-view.html",
            description="Export to",
            layout=W.Layout(width="320px"),
            style={"description_width": "70px"},
        )
        self.export_button = W.Button(
            description="Export HTML",
            icon="download",
            tooltip="Write one self-contained HTML file of this dashboard: it opens with no "
            "network; its controls switch between settings precomputed around this one",
        )
        self.export_status = W.Label(value="")
        self.export_button.on_click(self._export_clicked)
        export_bar = W.HBox(
            [self.export_path, self.export_button, self.export_status], layout=W.Layout(align_items="center")
        )
        export_bar.add_class("lr-export")
        super().__init__(
            children=[top, plots, self.timeline, self.sweep_section, self.serving_section, export_bar],
            layout=layout or W.Layout(width="100%"),
        )
        self.add_class("lr-dashboard")
        if sweep_open:
            self.sweep_section.selected_index = 0
        if serving_open:
            self.serving_section.selected_index = 0

        self.table.observe(self._table_selected, names="selected")
        self.observe(self._dashboard_selected, names="selected")
        self.selected = list(self.table.selected)

    # -- convenience -------------------------------------------------------------------------------
    @property
    def result(self):
        """The engine's Result of the last valid inputs (``state.result``)."""
        return self.state.result

    @property
    def error(self) -> str:
        return self.state.error

    @property
    def selected_row(self) -> dict | None:
        """The selected operator's table row (plain data), or None."""
        return self.table.selected_row

    def select(self, name: str | int | None, *, phase: str | None = None, layer_type: str | None = None) -> dict | None:
        """Select an operator by row index or by name (first match; narrow with phase / layer_type).

        ``None`` clears the selection. Returns the selected row.
        """
        if name is None:
            self.selected = []
            return None
        if isinstance(name, int):
            index = name
        else:
            index = next(
                (
                    r["index"]
                    for r in self.table.rows
                    if r["name"] == name
                    and (phase is None or r["phase"] == phase)
                    and (layer_type is None or r["layer_type"] == layer_type)
                ),
                None,
            )
            if index is None:
                raise ValueError(
                    f"select: no operator {name!r}"
                    f"{f' in phase {phase!r}' if phase else ''}{f' of layer {layer_type!r}' if layer_type else ''}"
                )
        if not 0 <= index < len(self.table.rows):
            raise ValueError(f"select: row index {index} out of range (0–{len(self.table.rows) - 1})")
        self.selected = [index]
        return self.selected_row

    def export_html(self, path: str = "llmroof-view.html", title: str | None = None, grid=None):
        """Write this dashboard as one self-contained, offline HTML file whose controls switch between
        precomputed settings (``grid``; see :func:`lr.export_html`)."""
        from ..export import export_html

        return export_html(self, path, title=title, grid=grid)

    def _export_clicked(self, _button):
        import os

        path = self.export_path.value.strip() or "llmroof-view.html"
        try:
            self.export_html(path)
            self.export_status.value = f"wrote {path} ({os.path.getsize(path) / 1e6:.1f} MB)"
        except Exception as e:
            self.export_status.value = f"export failed: {e}"

    def _sweep_toggled(self, change):
        # the browser opened or closed the sweep section: compute the sweep only while it is open
        is_open = change["new"] == 0
        self.sweep.active = is_open
        self._sweep_slot.children = (self.sweep,) if is_open else ()

    def _serving_toggled(self, change):
        is_open = change["new"] == 0
        self.serving.active = is_open
        self._serving_slot.children = (self.serving,) if is_open else ()

    # -- selection mirror --------------------------------------------------------------------------
    def _table_selected(self, change):
        # the browser (or a recomputation) changed the table's selection: mirror it only; the
        # front end has already moved the dot, formula and share
        self._from_table = True
        try:
            self.selected = list(change["new"])
        finally:
            self._from_table = False

    def _dashboard_selected(self, change):
        if self._from_table:
            return
        sel = list(change["new"])[-1:]
        # selected from the kernel: set every view here too (the front end then agrees with it)
        self.table.selected = sel
        for p in self.table.peers:
            p.selected = sel
        self.roofline.show_row(sel[0] if sel else None)

    def close(self):
        for name in ("controls", "table", "formula", "roofline", "memory", "timeline", "sweep", "serving"):
            w = getattr(self, name, None)
            if w is not None:
                w.close()
        super().close()


def compare_dashboards(*dashboards, deltas: bool | None = None, labels=None, **kwargs) -> W.HBox:
    """Two (or more) dashboards side by side, e.g. two devices, two precisions, teacher and student.

    Each argument is a :class:`Dashboard` or a :class:`State` (a Dashboard is made for it)::

        a = lr.Dashboard(model="meta-llama/Llama-3.1-8B", hardware="h100-sxm")
        b = lr.Dashboard(model="meta-llama/Llama-3.1-8B", hardware="a100-80gb-sxm")
        lr.compare_dashboards(a, b)

    The dashboards stay independent (each has its own State and selection); to show one State
    twice, use ``lr.Dashboard(state=a.state)``. Returns an ``ipywidgets.HBox`` whose children are
    the dashboards (they wrap onto new rows when the page is narrow). With exactly two dashboards
    (or ``deltas=True``), a :class:`CompareView` of the first two follows on a row of its own
    (``box.compare``: totals and per-operator deltas from ``lr.compare``, live as either changes);
    ``labels`` names the two (default ``("a", "b")``).
    """
    if not dashboards:
        raise TypeError("compare_dashboards: give at least one Dashboard or State")
    items = []
    for d in dashboards:
        if isinstance(d, State):
            d = Dashboard(state=d)
        if not isinstance(d, Dashboard):
            raise TypeError(f"compare_dashboards: expected Dashboard or State, got {type(d).__name__}")
        d.layout.flex = "1 1 0"
        d.layout.min_width = "720px"
        items.append(d)
    if deltas is None:
        deltas = len(items) == 2
    if deltas and len(items) < 2:
        raise TypeError("compare_dashboards: deltas need two dashboards")
    cmp = None
    if deltas:
        cmp = CompareView(
            items[0],
            items[1],
            labels=tuple(labels) if labels else ("a", "b"),
            layout=W.Layout(width="100%", flex="1 1 100%"),
        )
    kwargs.setdefault("layout", W.Layout(width="100%", flex_flow="row wrap", align_items="flex-start"))
    box = W.HBox(items + ([cmp] if cmp is not None else []), **kwargs)
    box.add_class("lr-compare")
    box.compare = cmp
    return box
