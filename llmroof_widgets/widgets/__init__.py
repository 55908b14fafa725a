"""Jupyter widgets over the engine: a State, the views, and the Dashboard.

    import llmroof_widgets as lr
    ui = lr.Dashboard(model="meta-llama/Llama-3.1-8B", hardware="h100-sxm", prompt_len=2048, gen_len=256)
    ui.state.batch_size = 32

    ui.state.update(tp=2, flash_attention="tiled")   # technique knobs (stored in ui.state.extra)

Views (each usable alone on a State): LayerTable, FormulaPanel, RooflinePlot, MemoryBreakdown,
StepTimeline, SweepView, ServingView, Controls (with TechniqueControls); CompareView for two States. The
anywidget front ends are built from ``js/`` with ``npm install && npm run build``.
"""

from ._static import MissingBundleError
from .anywidgets import FormulaPanel, LayerTable, MemoryShare
from .compare import CompareTable, CompareView
from .controls import Controls
from .dashboard import Dashboard, compare_dashboards
from .plots import MemoryBreakdown, RooflinePlot, StepTimeline
from .serving import ServingView
from .state import KNOBS, State
from .sweep import SweepView
from .techniques import TechniqueControls

__all__ = [
    "CompareTable",
    "CompareView",
    "Controls",
    "Dashboard",
    "FormulaPanel",
    "KNOBS",
    "LayerTable",
    "MemoryBreakdown",
    "MemoryShare",
    "MissingBundleError",
    "RooflinePlot",
    "ServingView",
    "State",
    "StepTimeline",
    "SweepView",
    "TechniqueControls",
    "compare_dashboards",
]
