"""llmroof_widgets: Jupyter widgets that explain and predict LLM inference performance with the roofline model.

The engine (``analyze``, ``sweep``, catalogs) loads eagerly; the widgets, the HTML export, the course
helpers and the validation load on first use, so the CLI starts without ipywidgets.
"""

import importlib

from .engine import (
    Comparison,
    Hardware,
    ModelConfig,
    Result,
    ServingResult,
    Speculative,
    analyze,
    choose_hardware,
    compare,
    hardware_catalog,
    list_hardware,
    list_models,
    load_hardware,
    load_model,
    parse_config,
    plan,
    serve,
    sweep,
)

__version__ = "0.2.0"

# public name → submodule that defines it (loaded on first access)
_LAZY = {
    "validate": "validation",
    "export_html": "export",
    "check": "course",
    "Scenario": "course",
}
_SUBMODULES = {"widgets", "validation", "export", "export_states", "app", "course", "engine", "cli", "format"}

__all__ = [
    "Comparison",
    "Hardware",
    "ModelConfig",
    "Result",
    "Speculative",
    "analyze",
    "choose_hardware",
    "compare",
    "hardware_catalog",
    "list_hardware",
    "list_models",
    "load_hardware",
    "load_model",
    "parse_config",
    "plan",
    "serve",
    "ServingResult",
    "sweep",
    "validate",
    "export_html",
    "check",
    "Scenario",
]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name.startswith("_"):
        raise AttributeError(name)
    widgets = importlib.import_module(".widgets", __name__)
    try:
        return getattr(widgets, name)
    except AttributeError:
        raise AttributeError(f"module 'llmroof_widgets' has no attribute {name!r}") from None
