"""The anywidget views: the layer table (with the headline and the selection hub), the formula
panel and the memory-share caption. Their front ends are the esbuild bundles of ``js/``."""

from __future__ import annotations

import anywidget
import ipywidgets as W
import traitlets

from ._base import StateView, selection_trait
from ._data import SLOTS
from ._static import BundleESM


class _Closing:
    def close(self):
        self._detach()
        super().close()


class LayerTable(_Closing, StateView, anywidget.AnyWidget):
    """One row per operator per layer type and phase, sortable, with phase totals, the headline
    figures (TTFT, TPOT, tokens/s, memory, fits) and the error / does-not-fit messages.

    It is also the selection hub of a dashboard: :meth:`link` gives it the roofline's dot marks
    and the peer panels, and its front end keeps their selections in step (no kernel round trip,
    so the links work in an exported HTML page). ``selected`` is the selected row index (a list of
    at most one) and is synced back to the kernel.
    """

    _esm = BundleESM("layer_table")

    rows = traitlets.List(traitlets.Dict()).tag(sync=True)
    totals = traitlets.Dict().tag(sync=True)
    headline = traitlets.Dict().tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    warning = traitlets.Unicode("").tag(sync=True)
    selected = selection_trait()
    # bqplot marks whose `selected` mirrors the table's; mark j holds the dots of slot j % mark_slots
    marks = traitlets.List(traitlets.Instance(W.Widget)).tag(sync=True, **W.widget_serialization)
    mark_slots = traitlets.Int(len(SLOTS)).tag(sync=True)
    # anywidgets with a `selected` trait in the table's row index space
    peers = traitlets.List(traitlets.Instance(W.Widget)).tag(sync=True, **W.widget_serialization)
    # bqplot Labels that say "no dot" when the selected operator has none (the roofline's selection_note)
    dot_notes = traitlets.List(traitlets.Instance(W.Widget)).tag(sync=True, **W.widget_serialization)

    def __init__(self, state, **kwargs):
        super().__init__(**kwargs)
        self.add_class("lr-layer-table")
        self._attach(state, error=True)
        self._on_revision()
        self._on_error()

    def _on_error(self, change=None):
        self.error = self.state.error

    def _refresh(self, old, new):
        cur = self.selected[0] if self.selected else None
        sel = (
            self.remap(old, new, cur) if old is not None else (cur if cur is not None and cur < len(new.rows) else None)
        )
        with self.hold_sync():
            self.rows = new.rows
            self.totals = new.totals
            self.headline = new.headline
            self.warning = new.warning()
            self.selected = [] if sel is None else [sel]
        # the linked roofline shows this selection's dot (a dot may stand for several operators, so
        # its own remapping could pick another of them)
        for v in getattr(self, "_shows", ()):
            v.show_row(sel)

    def link(self, *views) -> LayerTable:
        """Link the selection of these views with this table, on the front end.

        Views with ``selection_marks`` (the roofline's dot marks, one per slot), ``selection_note``
        (the roofline's "no dot" label) and ``selection_peers`` (the formula panel, the memory
        breakdown's share caption) are accepted. Clicking a dot that stands for several operators
        selects all of them.
        """
        marks, peers, notes = list(self.marks), list(self.peers), list(self.dot_notes)
        for v in views:
            for m in getattr(v, "selection_marks", ()):
                if m not in marks:
                    marks.append(m)
            note = getattr(v, "selection_note", None)
            if note is not None and note not in notes:
                notes.append(note)
            for p in getattr(v, "selection_peers", ()):
                if p not in peers and p is not self:
                    peers.append(p)
        if len(marks) % len(SLOTS):
            raise ValueError(
                f"LayerTable.link: roofline marks come in groups of {len(SLOTS)} (one per phase and bound)"
            )
        with self.hold_sync():
            self.marks = marks
            self.peers = peers
            self.dot_notes = notes
        # bring the new partners in line with the current selection (the front end does the same)
        for p in peers:
            p.selected = list(self.selected)
        shows = getattr(self, "_shows", [])
        for v in views:
            if hasattr(v, "show_row"):
                if v not in shows:
                    shows.append(v)
                v.show_row(self.selected[0] if self.selected else None)
        self._shows = shows
        return self

    @property
    def selected_row(self) -> dict | None:
        """The selected operator's row (plain data), or None."""
        if not self.selected or self.selected[0] >= len(self.rows):
            return None
        return self.rows[self.selected[0]]


class FormulaPanel(_Closing, StateView, anywidget.AnyWidget):
    """The selected operator's FLOPs and bytes formulas with the numbers substituted (strings from
    the engine) and the resulting values, intensity and roofline time. ``picker=True`` adds a
    drop-down to choose the operator in the panel itself (useful when it is shown alone).

    Offloaded operators show their host-link term (host bytes / host-link bandwidth); collectives
    (bound "communication") their message and α–β time; in calibrated mode the time is
    max(FLOPs / effective rate, bytes / achievable bandwidth) + launch overhead."""

    _esm = BundleESM("formula_panel")

    rows = traitlets.List(traitlets.Dict()).tag(sync=True)
    bandwidth = traitlets.Float(0.0, help="device-memory bandwidth after efficiency factors (roofs)").tag(sync=True)
    host_bandwidth = traitlets.Float(0.0, help="host-link bandwidth after efficiency factors (offloading)").tag(
        sync=True
    )
    mode = traitlets.Unicode("roofline", help="roofline | calibrated | custom (efficiency factors)").tag(sync=True)
    selected = selection_trait()
    picker = traitlets.Bool(True).tag(sync=True)

    def __init__(self, state, **kwargs):
        super().__init__(**kwargs)
        self.add_class("lr-formula-panel")
        self._attach(state)
        self._on_revision()

    @property
    def selection_peers(self):
        return (self,)

    def _refresh(self, old, new):
        cur = self.selected[0] if self.selected else None
        sel = (
            self.remap(old, new, cur) if old is not None else (cur if cur is not None and cur < len(new.rows) else None)
        )
        with self.hold_sync():
            self.rows = new.formula_rows()
            rf = new.roofs
            self.bandwidth = float(
                rf.get("memory_bandwidth") or new.d.get("hardware", {}).get("memory_bandwidth", 0.0) or 0.0
            )
            self.host_bandwidth = float(rf.get("host_bandwidth") or 0.0)
            self.mode = new.headline.get("efficiency_mode", "roofline") if new.headline else "roofline"
            self.selected = [] if sel is None else [sel]


class MemoryShare(_Closing, StateView, anywidget.AnyWidget):
    """Caption of the memory breakdown: the selected operator's weights (bytes × count) as a share
    of all weights."""

    _esm = BundleESM("memory_share")

    rows = traitlets.List(traitlets.Dict()).tag(sync=True)
    weights_bytes = traitlets.Float(0.0).tag(sync=True)
    selected = selection_trait()

    def __init__(self, state, **kwargs):
        super().__init__(**kwargs)
        self.add_class("lr-memory-share")
        self._attach(state)
        self._on_revision()

    def _refresh(self, old, new):
        cur = self.selected[0] if self.selected else None
        sel = (
            self.remap(old, new, cur) if old is not None else (cur if cur is not None and cur < len(new.rows) else None)
        )
        with self.hold_sync():
            self.rows = new.share_rows()
            self.weights_bytes = float(new.d.get("memory", {}).get("weights_bytes", 0.0) or 0.0)
            self.selected = [] if sel is None else [sel]
