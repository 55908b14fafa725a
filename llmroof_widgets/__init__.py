"""llmroof_widgets: Jupyter widgets that explain and predict LLM inference performance with the roofline model."""
from .engine import (Comparison, choose_hardware, compare, sweep, Speculative, Hardware, ModelConfig, Result, analyze, hardware_catalog, list_hardware, list_models,
                     load_hardware, load_model, parse_config)

__version__ = "0.1.0"

__all__ = ["Comparison", "choose_hardware", "compare", "sweep", "Speculative", "Hardware", "ModelConfig", "Result", "analyze", "hardware_catalog", "list_hardware", "list_models",
           "load_hardware", "load_model", "parse_config"]


def __getattr__(name):
    # widgets are imported lazily so the engine and the CLI load without ipywidgets/anywidget start-up cost
    from . import widgets

    try:
        return getattr(widgets, name)
    except AttributeError:
        raise AttributeError(f"module 'llmroof_widgets' has no attribute {name!r}") from None
