"""Course helpers: check a student's hand calculation against the engine.

A teacher pins one scenario in one line; students then compute figures by hand and check them::

    import llmroof_widgets as lr
    lr.Scenario(model="llama-2-7b", hardware="a100-80gb-sxm", batch_size=1, prompt_len=512, gen_len=64).pin()

    lr.check(33_554_432, quantity="flops", op="q_proj", phase="decode")        # ✓ correct
    lr.check(5e9, quantity="kv_cache_bytes")                                     # ✗ off by … % (too high)
    lr.check(None, quantity="bytes", op="lm_head")                               # … no answer yet
    lr.check(x, quantity="arithmetic_intensity", op="attn_score", phase="decode", show_formula=True)

Every expected value is read from the engine (``lr.analyze(...).to_dict()``); nothing is recomputed
here. Operator figures are for ONE execution of the operator (one layer), as in the layer table; the
phase and model figures are totals.
"""

from __future__ import annotations

import html
import json
import math
import numbers
from typing import Any

__all__ = ["Scenario", "Check", "check", "pinned_scenario", "unpin", "QUANTITIES"]

# quantity → (unit, what it is) — the allowed values of ``quantity``
QUANTITIES: dict[str, tuple[str, str]] = {
    "flops": ("FLOP", "floating-point operations (multiply and add counted separately)"),
    "matmul_flops": ("FLOP", "FLOPs of the matrix products only"),
    "bytes": ("B", "bytes moved to and from device memory (weights + activations + KV cache)"),
    "arithmetic_intensity": ("FLOP/B", "arithmetic intensity = FLOPs / bytes"),
    "time_s": ("s", "roofline time = max(FLOPs / peak, bytes / bandwidth)"),
    "kv_cache_bytes": ("B", "KV-cache bytes"),
    "weights_bytes": ("B", "bytes of the weights"),
    "params_total": ("", "number of parameters"),
    "ttft_s": ("s", "time to first token (the prefill)"),
    "tpot_s": ("s", "time per output token (mean decode step after the first token)"),
    "kv_bytes_per_token": ("B", "KV-cache bytes one token of one sequence adds (all layers)"),
}
OP_QUANTITIES = (
    "flops",
    "matmul_flops",
    "bytes",
    "arithmetic_intensity",
    "time_s",
    "kv_cache_bytes",
    "weights_bytes",
    "params_total",
)
PHASE_QUANTITIES = ("flops", "matmul_flops", "bytes", "arithmetic_intensity", "time_s")
MODEL_QUANTITIES = ("kv_cache_bytes", "weights_bytes", "params_total", "ttft_s", "tpot_s", "kv_bytes_per_token")
PHASES = ("prefill", "decode")
# an operator row's field for a quantity
_OP_FIELD = {"kv_cache_bytes": "kv_bytes", "weights_bytes": "weight_bytes", "params_total": "params"}

_pinned: Scenario | None = None


# -- scenarios ------------------------------------------------------------------------------------
class Scenario:
    """The settings of one exercise: the arguments of :func:`llmroof_widgets.analyze`.

    ``Scenario(model="llama-2-7b", hardware="a100-80gb-sxm", batch_size=1, prompt_len=512, gen_len=64)``.
    ``.pin()`` makes it the default of :func:`check`; ``.result`` is the engine's Result and
    ``.data`` its ``to_dict()`` (computed once).
    """

    def __init__(self, model: Any = None, hardware: Any = None, **settings):
        if model is None or hardware is None:
            raise TypeError(
                "Scenario: model= and hardware= are required, e.g. "
                "lr.Scenario(model='llama-2-7b', hardware='a100-80gb-sxm', prompt_len=512, gen_len=64)"
            )
        self.settings = {"model": model, "hardware": hardware, **settings}
        self._result = None
        self._data = None

    @classmethod
    def coerce(cls, scenario) -> Scenario:
        if isinstance(scenario, Scenario):
            return scenario
        if isinstance(scenario, dict):
            return cls(**scenario)
        raise TypeError(
            f"scenario must be an lr.Scenario or a dict of analyze() arguments, got {type(scenario).__name__}"
        )

    @property
    def result(self):
        if self._result is None:
            from .engine import analyze

            s = dict(self.settings)
            self._result = analyze(s.pop("model"), s.pop("hardware"), **s)
        return self._result

    @property
    def data(self) -> dict:
        if self._data is None:
            self._data = self.result.to_dict()
        return self._data

    def pin(self) -> Scenario:
        """Make this the scenario :func:`check` uses when none is given. Returns the scenario.

        The analysis runs now, so a bad setting fails at the teacher's line, not at a student's.
        """
        global _pinned
        _ = self.data
        _pinned = self
        return self

    def check(self, value, quantity: str, op: str | None = None, **kwargs) -> Check:
        """:func:`check` against this scenario."""
        return check(value, quantity=quantity, op=op, scenario=self, **kwargs)

    def describe(self) -> str:
        """One line: model, device, batch, prompt, generated tokens and bit widths."""
        d = self.data
        s = d["settings"]
        return (
            f"{s['model']} on {d['hardware']['name']}: batch {s['batch_size']}, prompt {s['prompt_len']}, "
            f"generate {s['gen_len']}, W{s.get('w_bits')}A{s.get('a_bits')}KV{s.get('kv_bits')}"
        )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        return f"Scenario({args}){' [pinned]' if _pinned is self else ''}"


def pinned_scenario() -> Scenario | None:
    """The scenario pinned with ``Scenario(...).pin()``, or None."""
    return _pinned


def unpin() -> None:
    global _pinned
    _pinned = None


# -- the answer ----------------------------------------------------------------------------------
def _fmt(x: float, unit: str) -> str:
    if x is None:
        return "—"
    if unit == "":
        return f"{x:,.0f}" if float(x).is_integer() else f"{x:.4g}"
    if unit == "FLOP/B":
        return f"{x:.4g} FLOP/B"
    ax = abs(x)
    if unit == "s":
        for scale, name in ((1, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")):
            if ax >= scale:
                return f"{x / scale:.4g} {name}"
        return f"{x * 1e9:.4g} ns"
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if ax >= scale:
            return f"{x / scale:.4g} {prefix}{unit}"
    return f"{x:.4g} {unit}"


def _find_op(ops: list[dict], op: str, phase: str) -> dict:
    if not isinstance(op, str) or not op.strip():
        raise ValueError(f"op must be an operator name such as 'q_proj', got {op!r}")
    op = op.strip()
    layer_type, _, name = op.rpartition(".")
    hits = [o for o in ops if o["name"] == name and (not layer_type or o["layer_type"] == layer_type)]
    if len(hits) == 1:
        return hits[0]
    names = sorted({o["name"] for o in ops})
    qualified = sorted({f"{o['layer_type']}.{o['name']}" for o in ops})
    if not hits:
        raise ValueError(
            f"unknown op {op!r} in the {phase} of this model; allowed: {', '.join(names)} "
            f"(or layer_type.name: {', '.join(qualified)})"
        )
    where = ", ".join(o["layer_type"] for o in hits)
    options = ", ".join(o["layer_type"] + "." + o["name"] for o in hits)
    raise ValueError(f"op {op!r} occurs in several layer types ({where}); qualify it as layer_type.name: {options}")


def _kv_terms(result, which: str, batch=None, context=None):
    """The memory engine's KV terms for this analysis (the figure is their sum; MLA caches its latent).

    Precision and options are rebuilt from the result's settings, as ``analyze`` built them."""
    import inspect

    from .engine import memory
    from .engine.options import make_options
    from .engine.precision import Precision

    s = result.settings
    prec = Precision(s["w_bits"], s["a_bits"], s["kv_bits"], s.get("group_size"))
    knobs = inspect.signature(make_options).parameters
    opts = make_options(**{k: v for k, v in s.items() if k in knobs})
    if which == "token":
        return memory.kv_bytes_per_token_terms(result.model, prec, opts)
    return memory.kv_cache_terms(result.model, prec, batch, context, opts)


def _expected(data: dict, quantity: str, op: str | None, phase: str, result=None) -> tuple[float, str, str]:
    """(engine value, what it is, formula) for one question; ``result`` (the Result) for model-level formulas."""
    if op is not None:
        if quantity not in OP_QUANTITIES:
            raise ValueError(
                f"quantity {quantity!r} is not defined for a single operator; with op= use one of "
                f"{', '.join(OP_QUANTITIES)}; without op= use one of {', '.join(MODEL_QUANTITIES)}"
            )
        row = _find_op(data[phase]["ops"], op, phase)
        value = float(row[_OP_FIELD.get(quantity, quantity)])
        what = (
            f"{QUANTITIES[quantity][1]} of {row['layer_type']}.{row['name']} in the {phase}, ONE execution "
            f"(the pass runs it {row['count']}×)"
        )
        terms = None
        if result is not None:  # the engine's Row behind this dict (same order), for a part of its terms
            i = next(i for i, o in enumerate(data[phase]["ops"]) if o is row)
            terms = getattr(getattr(result, phase).rows[i], "terms", None)
        return value, what, _op_formula(data, row, quantity, terms)
    if quantity in PHASE_QUANTITIES:
        ph = data[phase]
        value = float(ph[quantity])
        what = f"{QUANTITIES[quantity][1]} of the whole {phase} pass (all layers, Σ count × operator)"
        n = len(ph["ops"])
        if quantity == "arithmetic_intensity":
            formula = f"total FLOPs / total bytes = {_fmt(ph['flops'], 'FLOP')} / {_fmt(ph['bytes'], 'B')}"
        else:
            formula = f"Σ over the {n} operators of count × {quantity} of one execution"
        return value, what, formula
    if quantity not in MODEL_QUANTITIES:  # pragma: no cover - guarded by check()
        raise ValueError(quantity)
    s, mem, gen, model = data["settings"], data["memory"], data["generation"], data["model"]
    if quantity == "kv_cache_bytes":
        ctx = mem["kv_context_tokens"]
        formula = (
            f"KV cache after the last step ({ctx} = prompt_len + gen_len − 1 tokens per sequence), Σ over layer "
            "types of layers × cached elements per token × tokens × batch × bytes per element: "
            + _kv_terms(result, "cache", s["batch_size"], ctx).render("bytes")
        )
        return float(mem["kv_cache_bytes"]), f"KV cache after the last step ({ctx} tokens per sequence)", formula
    if quantity == "kv_bytes_per_token":
        formula = "Σ over layer types of layers × cached elements per token × bytes per element: " + _kv_terms(
            result, "token"
        ).render("bytes")
        return float(mem["kv_bytes_per_token"]), QUANTITIES[quantity][1], formula
    if quantity == "weights_bytes":
        formula = (
            f"Σ parameters × bytes per parameter = {_fmt(model['params_total'], '')} parameters; linear layers "
            f"at w_bits = {s['w_bits']}, embeddings, lm_head, norms and biases at 16 bit (tied embeddings once)"
        )
        return float(mem["weights_bytes"]), "bytes of all weights in device memory", formula
    if quantity == "params_total":
        formula = (
            "Σ over layers of the weight matrices (in × out) + biases + norm weights, plus embeddings "
            "and lm_head (once when tied)"
        )
        return float(model["params_total"]), "parameters of the model", formula
    if quantity == "ttft_s":
        formula = "the prefill time: Σ over the prefill's operators of count × max(FLOPs / peak, bytes / bandwidth)"
        return float(gen["ttft_s"]), QUANTITIES[quantity][1], formula
    # tpot_s
    steps = max(s["gen_len"] - 1, 1)
    formula = (
        f"(end-to-end − TTFT) / (gen_len − 1): the mean of the {steps} decode steps after the first token, "
        "each Σ over its operators of count × max(FLOPs / peak, bytes / bandwidth) (the KV cache grows by "
        "one token per step)"
    )
    return float(gen["tpot_s"]), QUANTITIES[quantity][1], formula


def _op_formula(data: dict, row: dict, quantity: str, terms=None) -> str:
    """The formula of one operator's quantity; ``terms`` (its Row's) give the parts (matmul, weights, KV)."""
    bw = data["hardware"]["memory_bandwidth"]
    part = {"matmul_flops": "matmul_flops", "weights_bytes": "weight_bytes", "kv_cache_bytes": "kv_bytes"}
    if terms is not None and quantity in part:
        return terms.render(part[quantity])
    if quantity in ("flops", "matmul_flops"):
        f = row.get("flops_formula") or ""
        return f + (
            ""
            if quantity == "flops" or row["flops"] == row["matmul_flops"]
            else "  (matmul_flops counts only the matrix product)"
        )
    if quantity == "bytes":
        return row.get("bytes_formula") or ""
    if quantity == "arithmetic_intensity":
        return f"FLOPs / bytes, with FLOPs: {row.get('flops_formula')}; bytes: {row.get('bytes_formula')}"
    if quantity == "time_s":
        if row["kind"] == "communication" and row.get("time_formula"):
            return row["time_formula"]
        return (
            f"max(FLOPs / peak, bytes / bandwidth) = max({_fmt(row['flops'], 'FLOP')} / "
            f"{_fmt(row['peak_flops'], 'FLOP/s')} ({row['peak_dtype']}), {_fmt(row['bytes'], 'B')} / "
            f"{_fmt(bw, 'B/s')}) → {row['bound']}-bound"
        )
    if quantity == "kv_cache_bytes":
        return "the KV-cache part of the bytes: " + (row.get("bytes_formula") or "")
    if quantity == "weights_bytes":
        return "the weights part of the bytes: " + (row.get("bytes_formula") or "")
    return "weight matrix in × out (+ bias out), per layer"


class Check:
    """The verdict on one answer. ``ok`` is True (correct), False (off) or None (no answer yet).

    Its repr says "correct", "off by +x % (too high)" / "off by −x % (too low)" or "no answer yet";
    the formula is shown only with ``show_formula=True`` (or read ``.formula``). The expected value is
    in ``.expected`` (not printed unless the answer is correct).
    """

    def __init__(
        self,
        *,
        value,
        expected: float,
        quantity: str,
        op: str | None,
        phase: str,
        what: str,
        formula: str,
        tolerance: float,
        show_formula: bool,
        scenario: Scenario,
    ):
        self.value = value
        self.expected = expected
        self.quantity = quantity
        self.op = op
        self.phase = phase
        self.what = what
        self.formula = formula
        self.tolerance = tolerance
        self.show_formula = show_formula
        self.scenario = scenario
        self.unit = QUANTITIES[quantity][0]
        if value is None or value is Ellipsis:
            self.ok, self.rel_error, self.status = None, None, "no answer yet"
        else:
            v = float(value)
            if expected == 0:
                self.rel_error = 0.0 if v == 0 else math.copysign(math.inf, v)
                self.ok = abs(v) <= tolerance
            else:
                self.rel_error = (v - expected) / abs(expected)
                self.ok = abs(self.rel_error) <= tolerance
            if self.ok:
                self.status = "correct"
            else:
                self.status = "too high" if self.rel_error > 0 else "too low"

    def __bool__(self) -> bool:
        return bool(self.ok)

    @property
    def label(self) -> str:
        where = (
            f"{self.op} ({self.phase})"
            if self.op
            else (f"{self.phase}" if self.quantity in PHASE_QUANTITIES else "model")
        )
        return f"{self.quantity} · {where}"

    def verdict(self) -> str:
        if self.ok is None:
            return "no answer yet — replace None with your number"
        if self.ok:
            return f"correct: {_fmt(self.expected, self.unit)} (within {self.tolerance * 100:.3g} %)"
        if math.isinf(self.rel_error):
            return f"off (the answer is 0; yours is {self.status})"
        pct = self.rel_error * 100
        sign = "+" if pct > 0 else "−"
        size = f"{abs(pct):,.0f}" if abs(pct) >= 1000 else f"{abs(pct):.3g}"
        ratio = float(self.value) / self.expected
        factor = ""
        if ratio >= 2:
            factor = f", {ratio:,.0f}× the answer" if ratio >= 100 else f", {ratio:.3g}× the answer"
        elif 0 < ratio <= 0.5:
            factor = f", 1/{1 / ratio:,.0f} of the answer" if ratio <= 0.01 else f", 1/{1 / ratio:.3g} of the answer"
        return f"off by {sign}{size} % ({self.status}{factor})"

    def _lines(self) -> list[tuple[str, str]]:
        lines = [("what", self.what)]
        if self.ok is not None:
            lines.insert(0, ("yours", _fmt(float(self.value), self.unit)))
        if self.show_formula:
            lines.append(("formula", self.formula))
        return lines

    def __repr__(self) -> str:
        mark = {True: "✓", False: "✗", None: "…"}[self.ok]
        out = [f"{mark} {self.label}: {self.verdict()}"]
        out += [f"  {k}: {v}" for k, v in self._lines()]
        return "\n".join(out)

    __str__ = __repr__

    def _repr_html_(self) -> str:
        color = {True: "#1a7f37", False: "#cf222e", None: "#9a6700"}[self.ok]
        mark = {True: "✓", False: "✗", None: "…"}[self.ok]
        rows = "".join(
            f'<div><span style="color:var(--jp-content-font-color2,#555)">{html.escape(k)}:</span> '
            f'<code style="white-space:pre-wrap">{html.escape(v)}</code></div>'
            for k, v in self._lines()
        )
        return (
            f'<div class="lr-check lr-check-{html.escape(self.status.replace(" ", "-"))}" '
            f'style="border-left:4px solid {color};padding:4px 10px;margin:4px 0;'
            f'font-family:var(--jp-ui-font-family,system-ui,sans-serif);font-size:13px">'
            f'<div style="color:{color};font-weight:600">{mark} {html.escape(self.label)}: '
            f'{html.escape(self.verdict())}</div>{rows}</div>'
        )

    def to_dict(self) -> dict:
        return {
            "quantity": self.quantity,
            "op": self.op,
            "phase": self.phase,
            "value": self.value,
            "expected": self.expected,
            "rel_error": self.rel_error,
            "ok": self.ok,
            "status": self.status,
        }


def check(
    value,
    quantity: str,
    op: str | None = None,
    scenario=None,
    phase: str | None = None,
    tolerance: float = 0.01,
    show_formula: bool = False,
) -> Check:
    """Check a hand-computed ``value`` against the engine.

    Parameters
    ----------
    value : the student's number; ``None`` (or ``...``) means "no answer yet"
    quantity : one of ``QUANTITIES``: "flops", "matmul_flops", "bytes", "arithmetic_intensity",
        "time_s", "kv_cache_bytes", "weights_bytes", "params_total", "ttft_s", "tpot_s",
        "kv_bytes_per_token"
    op : an operator name ("q_proj", "attn_score", "lm_head", ...) or "layer_type.name"; its figures
        are for ONE execution (one layer). Without ``op``: the whole phase (flops, bytes, intensity,
        time) or the whole model (KV cache, weights, parameters, TTFT, TPOT)
    scenario : an :class:`Scenario` or a dict of ``analyze()`` arguments; default: the pinned one
    phase : "prefill" (default) or "decode" (the first decode step, ``prompt_len`` cached tokens)
    tolerance : relative tolerance (0.01 = 1 %)
    show_formula : include the engine's formula, numbers substituted (a hint)
    """
    if quantity not in QUANTITIES:
        raise ValueError(f"unknown quantity {quantity!r}; allowed: {', '.join(QUANTITIES)}")
    if phase is None:
        phase = "prefill"
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {', '.join(map(repr, PHASES))}, got {phase!r}")
    if op is None and quantity not in PHASE_QUANTITIES and quantity not in MODEL_QUANTITIES:  # pragma: no cover
        raise ValueError(quantity)
    if value is not None and value is not Ellipsis:
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or (not isinstance(value, numbers.Integral) and not math.isfinite(float(value)))
            or (isinstance(value, numbers.Integral) and abs(int(value)) > 10**300)  # beyond a float: no OverflowError
        ):
            raise TypeError(f"value must be a finite number (or None while unanswered), got {value!r}")
    if not isinstance(tolerance, numbers.Real) or not tolerance >= 0:
        raise ValueError(f"tolerance must be a number ≥ 0, got {tolerance!r}")
    if scenario is None:
        if _pinned is None:
            raise ValueError(
                "no scenario: pass scenario={...} or pin one first with "
                "lr.Scenario(model=..., hardware=..., prompt_len=..., gen_len=...).pin()"
            )
        sc = _pinned
    else:
        sc = _scenario_cached(scenario)
    expected, what, formula = _expected(sc.data, quantity, op, phase, sc.result)
    return Check(
        value=value,
        expected=expected,
        quantity=quantity,
        op=op,
        phase=phase,
        what=what,
        formula=formula,
        tolerance=float(tolerance),
        show_formula=bool(show_formula),
        scenario=sc,
    )


_dict_cache: dict[str, Scenario] = {}


def _scenario_cached(scenario) -> Scenario:
    """A dict scenario is analysed once per distinct dict of plain values."""
    if isinstance(scenario, Scenario):
        return scenario
    if isinstance(scenario, dict):
        try:
            key = json.dumps(scenario, sort_keys=True)
        except TypeError:  # a ModelConfig, Hardware or other object: no caching
            return Scenario.coerce(scenario)
        sc = _dict_cache.get(key)
        if sc is None:
            if len(_dict_cache) > 32:
                _dict_cache.clear()
            sc = _dict_cache[key] = Scenario.coerce(scenario)
        return sc
    return Scenario.coerce(scenario)
