"""Terms: one source for an operator's figures and for the formula shown beside them.

Every figure of an operator (FLOPs, bytes of weights, activations and KV cache, a collective's
message and time) is a **sum of terms**; a term is a **product of factors**; a factor is a
``(symbol, value)`` pair (symbol None: the number is shown on both sides), ``Div((symbol, value))`` for a
divisor, or a bare scalar (arrays — a figure over many decode steps — always go in a pair). The figure is
Σ over terms of Π factors, and the formula displayed is rendered from the very same terms::

    "<label> <symbols> + … = <numbers> + …"      e.g.
    "2·N·in·out + bias N·out = 2·4 096·4 096·4 096 + 4 096·4 096"

so the numbers substituted on the right always multiply and add to the figure (``tests/test_formulas.py``
checks it for every operator of every catalog model, by evaluating the terms and by parsing the string).

Categories (the :class:`~llmroof_widgets.engine.ops.Row` field each one adds to):

========== =========================== ===================
category   Row field(s)                shown in
========== =========================== ===================
matmul     flops and matmul_flops      ``flops_formula``
flops      flops                       ``flops_formula``
weight     weight_bytes                ``bytes_formula``
activation activation_bytes            ``bytes_formula``
kv         kv_bytes                    ``bytes_formula``
message    comm_bytes (collectives)    ``bytes_formula`` of a communication row
time       comm_s (collectives)        ``time_formula``
========== =========================== ===================

How an operator is written with terms (see ``PassBuilder.linear`` in ``ops.py``)::

    t = Terms()
    t.add("matmul", "", ("2", 2), ("N", n_tok), ("in", fin), ("out", fout))   # 2·N·in·out
    t.add("weight", "weights", ("in", fin), ("out", fout), (f"{wb:g} B", wb))
    t.add("activation", "input", ("N", n_tok), ("in", fin), (f"{ab:g} B", ab))
    t.note("flops", "per device: out / TP 2")      # shown before the " = "
    row = self._push(name, "matmul", t, dtype, params=..., wclass=...)   # the Row's figures ARE the sums

and a term added after the row exists keeps both in step: ``row.add_term("flops", "softmax", (None, 5), ("N·E", n))``.
Set a row's figures only through its terms (``add_term``, ``Terms.scale`` + re-summing): a field changed
directly no longer matches its formula, and ``tests/test_formulas.py`` fails.
Rows built the older way (``Row(..., formula=closure)``) still work: their closure's strings are shown,
but nothing then guarantees they match the figures (the formula test reports them).
"""

from __future__ import annotations

import numpy as np

# category → the Row attributes its terms add to
FIELDS: dict[str, tuple[str, ...]] = {
    "matmul": ("flops", "matmul_flops"),
    "flops": ("flops",),
    "weight": ("weight_bytes",),
    "activation": ("activation_bytes",),
    "kv": ("kv_bytes",),
    "message": ("comm_bytes",),
    "time": ("comm_s",),
}
_ZERO = dict.fromkeys(FIELDS, 0.0)
# displayed quantity → the categories it sums
QUANTITIES: dict[str, tuple[str, ...]] = {
    "flops": ("matmul", "flops"),
    "bytes": ("weight", "activation", "kv"),
    "message": ("message",),
    "time": ("time",),
    # one part of a figure (lr.check asks for them one by one)
    "matmul_flops": ("matmul",),
    "weight_bytes": ("weight",),
    "activation_bytes": ("activation",),
    "kv_bytes": ("kv",),
}


def num(x) -> str:
    """A number as the formulas show it: integers exactly (groups of three), others to 6 significant digits."""
    if isinstance(x, np.ndarray) and x.ndim:
        return "…"  # a figure over many decode steps: formulas are shown for one step
    x = float(x)
    if x == int(x) and abs(x) < 1e15:
        return f"{int(x):,}".replace(",", " ")
    s = f"{x:.6g}"
    return repr(x) if float(s).is_integer() else s  # never show a fraction as a whole number


class Div(tuple):
    """A divisor factor: ``Div(("TP", 2))`` divides by 2 and is shown as "/TP", "/2".

    Stored as (symbol, 1/value, value): a term's value is then always Π of the factors' second items.
    """

    __slots__ = ()

    def __new__(cls, pair):
        sym, value = pair
        return super().__new__(cls, (sym, 1.0 / value, value))


def product(factors) -> float:
    """Π of the factors' values (a :class:`Div` divides), left to right; a factor may be a bare number."""
    v = 1.0
    for f in factors:
        v = v * (f[1] if isinstance(f, tuple) else f)
    return v


def _render(factors, numbers: bool) -> str:
    out = ""
    for f in factors:
        c = f.__class__
        if c is tuple:
            s = num(f[1]) if numbers or f[0] is None else f[0]
            div = False
        elif c is Div:
            s = num(f[2]) if numbers or f[0] is None else f[0]
            div = True
        else:
            s, div = num(f), False
        if div:
            out += ("/" if out else "1/") + s
        else:
            out += ("·" if out else "") + s
    return out or "1"


class Terms:
    """The terms of one operator. ``add`` returns the term's value; ``total`` / ``render`` read them."""

    __slots__ = ("items", "notes", "sums")

    def __init__(self) -> None:
        self.items: list[tuple] = []  # (category, label, factors, value)
        self.notes: dict[str, str] = {}
        self.sums: dict[str, float] = _ZERO.copy()  # Σ per category, kept as terms are added

    def add(self, cat: str, label: str, *factors) -> float:
        """Append ``label`` = Π ``factors`` to category ``cat`` (one of :data:`FIELDS`); returns its value."""
        sums = self.sums
        try:
            s = sums[cat]
        except KeyError:
            raise ValueError(f"term category must be one of {', '.join(FIELDS)}, got {cat!r}") from None
        v = 1.0
        try:  # product(factors), inlined: this runs for every term of every pass
            for f in factors:
                v = v * f[1]
        except (TypeError, IndexError):  # a bare number among the factors
            v = product(factors)
        self.items.append((cat, label, factors, v))
        sums[cat] = s + v
        return v

    def note(self, quantity: str, text: str) -> None:
        """A remark shown with ``quantity``'s formula (before its ``=``)."""
        self.notes[quantity] = f"{self.notes[quantity]}; {text}" if quantity in self.notes else text

    def scale(self, cat: str, factor) -> None:
        """Multiply every term of ``cat`` by one more factor (e.g. sparse weight storage)."""
        self.items = [
            (c, lab, fs + (factor,), product((v, factor))) if c == cat else (c, lab, fs, v)
            for c, lab, fs, v in self.items
        ]
        self.sums[cat] = self.total(cat)

    def copy(self) -> Terms:
        t = Terms()
        t.items, t.notes, t.sums = list(self.items), dict(self.notes), dict(self.sums)
        return t

    def total(self, *cats: str):
        """Σ of the terms of the given categories, in the order they were added."""
        s = 0.0
        for c, _, _, v in self.items:
            if c in cats:
                s = s + v
        return s

    def totals(self) -> dict:
        """Σ per category (every category; 0.0 when it has no term)."""
        return self.sums

    def render(self, quantity: str) -> str:
        """``quantity``'s formula: symbols, then " = ", then the substituted numbers (nothing after them)."""
        cats = QUANTITIES[quantity]
        items = [(lab, fs) for c, lab, fs, _ in self.items if c in cats]
        note = self.notes.get(quantity, "")
        if not items:
            return f"{note or 'none'} = 0"
        lhs = " + ".join(f"{lab} {_render(fs, False)}" if lab else _render(fs, False) for lab, fs in items)
        rhs = " + ".join(_render(fs, True) for _, fs in items)
        return f"{lhs}{f'  ({note})' if note else ''} = {rhs}"


def rhs(formula: str) -> str:
    """The substituted right-hand side of a rendered formula (the text after its last " = ")."""
    return formula.rpartition(" = ")[2]
