"""``State``: the inputs of one analysis and its current result, shared by every view.

``State`` is a plain :class:`traitlets.HasTraits` (not a widget). Changing any input recomputes the
analysis on the kernel with the engine; views observe ``revision`` and read plain data from
``result.to_dict()`` (through :meth:`State.view_data`, computed once per revision and shared by all
views). A bad input never raises out of the State: the engine's message goes to ``error`` and the
last valid ``result`` stays, so the views keep showing it.
"""

from __future__ import annotations

import inspect
from typing import Any

import traitlets

from ..engine import analyze, load_hardware, load_model

INPUTS = (
    "model",
    "hardware",
    "batch_size",
    "prompt_len",
    "gen_len",
    "w_bits",
    "a_bits",
    "kv_bits",
    "logits",
    "attention",
    "extra",
)
PHASES = ("prefill", "decode", "both")
BITS = (4, 8, 16, 32)

# Technique knobs: every further keyword argument of analyze(), with the engine's own default (the
# plain analysis). They live in ``State.extra`` (only those that differ from the default).
KNOBS: dict[str, Any] = {
    name: p.default
    for name, p in inspect.signature(analyze).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in INPUTS
}


def is_default(name: str, value: Any) -> bool:
    """True when ``value`` is the engine's default for knob ``name`` (same type, same value)."""
    d = KNOBS[name]
    if value is d:
        return True
    if name == "efficiency" and value in ("roofline", {}):
        return True  # the engine reads None, "roofline" and {} alike: every factor 1
    if name == "offload" and (value == {} or (isinstance(value, dict) and not any(value.values()))):
        return True
    num = (int, float)
    if isinstance(value, num) and isinstance(d, num) and not isinstance(value, bool) and not isinstance(d, bool):
        return value == d
    return type(value) is type(d) and value == d


class _Knob:
    """``state.<knob>``: reads ``state.extra`` (the engine's default when absent); setting it is
    ``state.update(<knob>=value)``: one recomputation, and ``extra`` keeps only non-defaults."""

    def __init__(self, name: str):
        self.name = name
        self.__doc__ = f"technique knob {name!r} of analyze() (stored in State.extra; default {KNOBS[name]!r})"

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        return obj.extra.get(self.name, KNOBS[self.name])

    def __set__(self, obj, value):
        obj.update(**{self.name: value})


class State(traitlets.HasTraits):
    """Inputs, result and error of one roofline analysis.

    >>> s = State(model="meta-llama/Llama-3.1-8B", hardware="h100-sxm", prompt_len=2048, gen_len=256)
    >>> s.batch_size = 32          # recomputes; s.result is the engine's Result
    >>> s.update(w_bits=4, kv_bits=8)   # several inputs, one recomputation

    Inputs are passed to :func:`llmroof_widgets.analyze` as they are (the engine validates them).
    ``phase`` only filters what the views show and does not recompute.

    **Technique knobs** (every other keyword argument of ``analyze``: ``group_size``, ``flash_attention``,
    ``fused``, ``kv_keep_ratio``, ``kv_budget``, ``speculative``, ``early_exit_fraction``, ``sparsity``,
    ``offload``, ``tp``, ``pp``, ``ep``, ``efficiency``, ``mla``; see ``KNOBS``) have one home:
    ``extra``, a dict holding the knobs that differ from the engine's defaults (so ``extra == {}``
    is the plain analysis). Three equivalent spellings, each one recomputation:

    >>> s.update(tp=2, flash_attention="tiled")    # several knobs (and inputs) at once
    >>> s.tp = 2                                     # attribute sugar for s.update(tp=2)
    >>> s.extra = {"tp": 2}                          # the whole dict (replaces every knob)

    Reading ``s.tp`` gives ``extra.get("tp", 1)``. Observe ``"extra"`` to follow knob changes.
    ``State(model, hardware, tp=2, ...)`` accepts knobs too. ``s.knobs()`` lists every knob's value.
    """

    model = traitlets.Any("meta-llama/Llama-3.1-8B", help="catalog name / hf id, config path, dict or ModelConfig")
    hardware = traitlets.Any("h100-sxm", help="device id of lr.list_hardware(), dict or lr.Hardware")
    batch_size = traitlets.Any(1)
    prompt_len = traitlets.Any(1024)
    gen_len = traitlets.Any(256)
    w_bits = traitlets.Any(16)
    a_bits = traitlets.Any(16)
    kv_bits = traitlets.Any(16)
    logits = traitlets.Any("last")
    attention = traitlets.Any("causal")
    extra = traitlets.Dict(help="further keyword arguments for analyze()")
    phase = traitlets.Enum(PHASES, "both", help="which phases the views show")

    result = traitlets.Any(None, allow_none=True, help="the engine's Result of the last valid inputs")
    error = traitlets.Unicode("", help="message of the last failed recomputation ('' when the inputs are valid)")
    revision = traitlets.Int(0, help="incremented whenever what the views show changes (result or phase)")

    def __init__(self, model: Any = None, hardware: Any = None, **kwargs):
        if model is not None:
            kwargs["model"] = model
        if hardware is not None:
            kwargs["hardware"] = hardware
        knobs = {k: kwargs.pop(k) for k in list(kwargs) if k in KNOBS}
        if knobs:
            kwargs["extra"] = {**kwargs.get("extra", {}), **knobs}
        if "extra" in kwargs:
            kwargs["extra"] = _clean(kwargs["extra"])
        self._batching = False
        self._loaded: dict[str, tuple[Any, Any]] = {}
        self._view_cache: tuple[int, Any] | None = None
        super().__init__(**kwargs)
        self.observe(self._on_input, names=list(INPUTS))
        self.observe(self._on_phase, names=["phase"])
        self.recompute()

    # -- inputs --------------------------------------------------------------------------------
    def inputs(self) -> dict:
        """The current inputs as keyword arguments of ``analyze`` (plus ``extra``)."""
        kw = {k: getattr(self, k) for k in INPUTS if k != "extra"}
        kw.update(self.extra)
        return kw

    def knobs(self) -> dict:
        """Every technique knob's current value (the engine's default where ``extra`` has none)."""
        return {k: self.extra.get(k, d) for k, d in KNOBS.items()}

    def update(self, **changes) -> None:
        """Set several inputs, technique knobs and ``phase`` at once with a single recomputation.

        A knob set to its default is dropped from ``extra``; ``extra=`` given too is the base the
        knobs are merged into.
        """
        unknown = set(changes) - set(INPUTS) - set(KNOBS) - {"phase"}
        if unknown:
            raise TypeError(
                f"State.update: unknown input(s) {', '.join(sorted(unknown))}; "
                f"inputs: {', '.join(INPUTS)}; knobs: {', '.join(KNOBS)}"
            )
        knobs = {k: changes.pop(k) for k in list(changes) if k in KNOBS}
        if knobs:
            extra = dict(changes.get("extra", self.extra))
            extra.update(knobs)
            changes["extra"] = _clean(extra)
        elif "extra" in changes:
            changes["extra"] = _clean(changes["extra"])
        self._batching = True
        try:
            with self.hold_trait_notifications():
                for k, v in changes.items():
                    setattr(self, k, v)
        finally:
            self._batching = False
        if any(k in INPUTS for k in changes):
            self.recompute()
        elif "phase" in changes:
            self.revision += 1

    @traitlets.validate("extra")
    def _valid_extra(self, proposal):
        return _clean(proposal["value"])

    def _on_input(self, change) -> None:
        if not self._batching:
            self.recompute()

    def _on_phase(self, change) -> None:
        if not self._batching:
            self.revision += 1

    # -- computation -------------------------------------------------------------------------------
    def _load(self, kind: str, value: Any):
        """ModelConfig / Hardware for an input, cached while the input stays the same object."""
        hit = self._loaded.get(kind)
        if hit is not None and (hit[0] is value or (isinstance(value, str) and hit[0] == value)):
            obj = hit[1]
        else:
            try:
                obj = (load_model if kind == "model" else load_hardware)(value)
            except Exception as e:
                obj = e
            self._loaded[kind] = (value, obj)
        if isinstance(obj, Exception):
            raise obj
        return obj

    def recompute(self) -> bool:
        """Run the engine on the current inputs. Returns True on success.

        On failure (the engine's ``ValueError``, or anything else a bad input causes) the message
        goes to ``error`` and ``result`` keeps the last valid analysis.
        """
        try:
            kw = self.inputs()
            model = self._load("model", kw.pop("model"))
            hardware = self._load("hardware", kw.pop("hardware"))
            result = analyze(model, hardware, **kw)
        except ValueError as e:
            self.error = str(e) or type(e).__name__
            return False
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"
            return False
        with self.hold_trait_notifications():
            self.result = result
            self.error = ""
            self._view_cache = None
            self.revision += 1
        return True

    # -- what the views read -----------------------------------------------------------------------
    def view_data(self):
        """Plain data for the views (rows, totals, headline, ...), computed once per revision."""
        from ._data import ViewData  # local: keeps State importable on its own

        cache = self._view_cache
        if cache is not None and cache[0] == self.revision:
            return cache[1]
        data = ViewData.build(self.result, self.phase)
        self._view_cache = (self.revision, data)
        return data

    @property
    def ok(self) -> bool:
        """True when the current inputs are valid (no error)."""
        return not self.error

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={getattr(self, k)!r}" for k in INPUTS if k != "extra")
        extra = f", extra={self.extra!r}" if self.extra else ""
        err = f", error={self.error!r}" if self.error else ""
        return f"State({shown}{extra}, phase={self.phase!r}{err})"


def _clean(extra) -> dict:
    """``extra`` without knobs at their defaults (other keys are kept as given)."""
    if not isinstance(extra, dict):
        raise traitlets.TraitError(
            f"State.extra must be a dict of analyze() keyword arguments, got {type(extra).__name__}"
        )
    return {k: v for k, v in extra.items() if not (k in KNOBS and is_default(k, v))}


for _name in KNOBS:
    setattr(State, _name, _Knob(_name))
del _name
