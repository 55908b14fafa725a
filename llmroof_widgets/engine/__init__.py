"""The physics: pure Python + numpy, no widget imports."""

from .analysis import Result, analyze
from .explore import Comparison, choose_hardware, compare, sweep
from .generation import Speculative
from .hardware import Hardware, hardware_catalog, list_hardware, load_hardware
from .models import ModelConfig, list_models, load_model, parse_config
from .serving import ServingResult, plan, serve

__all__ = [
    "Comparison",
    "choose_hardware",
    "compare",
    "sweep",
    "Speculative",
    "Hardware",
    "ModelConfig",
    "Result",
    "analyze",
    "hardware_catalog",
    "list_hardware",
    "list_models",
    "load_hardware",
    "load_model",
    "parse_config",
    "plan",
    "serve",
    "ServingResult",
]
