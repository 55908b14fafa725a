"""Precomputed states for the exported page: its controls switch between settings with no kernel.

``lr.export_html(ui, path)`` (a :class:`~llmroof_widgets.Dashboard`) evaluates the dashboard over a
grid around its current setting (:func:`default_grid`; ``grid=`` chooses another) and stores, for
every grid point, what a live kernel would have sent to the browser: the synced traits of every
model the recomputation changed (table rows and headline, roofline dots, memory bars, timeline,
formula panel, control states). The page's :class:`ExportStates` widget reads the controls' values,
finds the matching grid point and puts its traits into the models, exactly as the kernel's update
messages would.

Storage (:func:`encode`): each trait value is split into a *template* (its JSON with every number
replaced by 0, stored once however many states share it) and its numbers (bqplot's binary arrays
become numbers too); identical values are stored once; a state is a list of value indices. The
JSON is gzip-compressed and base64-encoded; the page decompresses it with the browser's own
``DecompressionStream('gzip')``.

A control value outside the grid is never silently stale: drop-downs and toggle buttons offer only
the grid's values, controls that are not part of the grid are disabled, and a value typed or slid
outside the grid brings up a notice (with the figures dimmed) saying that it needs a live kernel.
The dashboard's lazy sections (sweep, serving) are not recomputed per state: their figures, if
opened before the export, are those of the exported setting, and the page says so.
"""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import math
import time
from typing import Any

import anywidget
import ipywidgets as W
import numpy as np
import traitlets

from .widgets._static import BundleESM

__all__ = ["ExportStates", "default_grid", "capture_states", "GRID_AXES", "MAX_STATES"]

# the axes a grid may have: the State's inputs the controls edit, the phase filter, every technique knob
_INPUT_AXES = ("hardware", "batch_size", "prompt_len", "gen_len", "w_bits", "a_bits", "kv_bits", "logits", "attention")
MAX_STATES = 4096  # a larger grid is refused (it would take minutes and tens of MB)
DEFAULT_MAX_STATES = 324  # the default grid stays within this (export ≈ 4 s and < 15 MB for an 8B model)
STALE_NOTE = "needs a live kernel (this page is an offline export)"


def grid_axes() -> tuple[str, ...]:
    from .widgets.state import KNOBS

    return (*_INPUT_AXES, "phase", *KNOBS)


GRID_AXES = grid_axes()


class ExportStates(anywidget.AnyWidget):
    """The exported page's state switcher (front end: ``js/export_states.js``); also its notice bar."""

    _esm = BundleESM("export_states")
    payload = traitlets.Unicode("").tag(sync=True)  # base64 of the gzip-compressed states (see encode)
    summary = traitlets.Unicode("").tag(sync=True)  # one line: what the page can switch offline


# -- the grid ----------------------------------------------------------------------------------------
def _pow2_upto(limit: int) -> list[int]:
    out, b = [], 1
    while b <= limit:
        out.append(b)
        b *= 2
    return out


def default_grid(ui) -> dict[str, list]:
    """The default grid around a dashboard's current setting.

    - ``batch_size``: 1, 2, 4, … up to the largest batch that fits in memory at the current setting
      (``Result.memory.max_batch_size``; at most the slider's maximum), and the current one;
    - ``prompt_len``: a quarter, the current and four times the current length (at most the model's
      context), ``gen_len``: the current and four times it;
    - ``w_bits``: 16, 8 and 4 bits and the current format; ``kv_bits``: 16 and 8 bits and the current;
    - ``hardware``: the current device (add others with ``grid=``);
    - each technique knob the author enabled (``state.extra``): off (the engine's default) and on.

    It stays within ``DEFAULT_MAX_STATES`` settings: beyond that (several knobs enabled), the
    generation lengths, then the KV formats, then the prompt lengths keep only the current value.
    """
    from .widgets.state import KNOBS

    st = ui.state
    r = st.result
    grid: dict[str, list] = {}
    b = st.batch_size
    limit = 1
    if r is not None:
        limit = int(r.memory.get("max_batch_size") or 0)
    slider = getattr(getattr(ui, "controls", None), "batch_size", None)
    slider_max = int(slider.max) if slider is not None else 256
    grid["batch_size"] = sorted(set(_pow2_upto(max(1, min(limit, slider_max)))) | {b})
    p, g = int(st.prompt_len), int(st.gen_len)
    max_ctx = int(getattr(r.model, "max_positions", 0) or 0) if r is not None else 0

    def ok(n):
        return n >= 1 and (not max_ctx or n + g <= max_ctx)

    grid["prompt_len"] = sorted({n for n in (p // 4, p, 4 * p) if ok(n)} | {p})
    grid["gen_len"] = sorted({n for n in (g, 4 * g) if n >= 1 and (not max_ctx or p + n <= max_ctx)} | {g})
    grid["w_bits"] = _ordered([16, 8, 4], st.w_bits)
    grid["kv_bits"] = _ordered([16, 8], st.kv_bits)
    for name, value in st.extra.items():
        if name in KNOBS:
            grid[name] = [KNOBS[name], value]
    current = {"gen_len": g, "kv_bits": st.kv_bits, "prompt_len": p}
    for name in ("gen_len", "kv_bits", "prompt_len"):
        if math.prod(len(v) for v in grid.values()) <= DEFAULT_MAX_STATES:
            break
        grid[name] = [current[name]]
    return grid


def _ordered(values: list, current) -> list:
    return values if current in values else [*values, current]


def check_grid(ui, grid: dict) -> dict[str, list]:
    """Validate ``grid`` (axis name → list of values); axes left out stay at the current value."""
    if not isinstance(grid, dict):
        raise ValueError(f"export_html: grid must be a dict of axis name → list of values, got {type(grid).__name__}")
    out: dict[str, list] = {}
    for name, values in grid.items():
        if name not in GRID_AXES:
            raise ValueError(f"export_html: grid axis {name!r} is not allowed; allowed: {', '.join(GRID_AXES)}")
        if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
            values = [values]
        vals = []
        for v in values:
            v = v.item() if hasattr(v, "item") else v
            if v not in vals:
                vals.append(v)
        if not vals:
            raise ValueError(f"export_html: grid axis {name!r} has no values")
        out[name] = vals
    n = math.prod(len(v) for v in out.values())
    if n > MAX_STATES:
        raise ValueError(
            f"export_html: the grid has {n} states ({' × '.join(f'{k} {len(v)}' for k, v in out.items())}); "
            f"at most {MAX_STATES} are allowed: give fewer values per axis"
        )
    return out


# -- the controls the page reads ---------------------------------------------------------------------
_VALUE_TYPES = (
    W.widgets.widget_int._Int,
    W.widgets.widget_float._Float,
    W.Checkbox,
    W.ToggleButton,
    W.Text,
)
_NOT_EDITABLE = (W.IntProgress, W.FloatProgress)


def _walk(widget, seen=None):
    seen = set() if seen is None else seen
    if id(widget) in seen or not isinstance(widget, W.Widget):
        return
    seen.add(id(widget))
    yield widget
    for child in getattr(widget, "children", ()) or ():
        yield from _walk(child, seen)


def control_traits(ui) -> list[tuple[W.Widget, str]]:
    """Every editable control of the dashboard's control panel and the trait the browser edits."""
    root = getattr(ui, "controls", ui)
    out = []
    for w in _walk(root):
        if isinstance(w, W.widgets.widget_selection._Selection):
            out.append((w, "index"))
        elif isinstance(w, _VALUE_TYPES) and not isinstance(w, _NOT_EDITABLE):
            out.append((w, "value"))
    return out


# -- capture -----------------------------------------------------------------------------------------
def _value_json(widget, key):
    return widget.get_state(key)[key]


class _Encoder:
    """Trait values → (template index, numbers), deduplicated (see the module docstring)."""

    def __init__(self):
        self.templates: list[Any] = []
        self._tid: dict[str, int] = {}
        self.values: list[list] = []
        self._vid: dict[tuple, int] = {}

    def value(self, v) -> int:
        nums: list = []
        tpl = _template(v, nums)
        key = json.dumps(tpl, separators=(",", ":"))
        tid = self._tid.get(key)
        if tid is None:
            tid = self._tid[key] = len(self.templates)
            self.templates.append(tpl)
        vkey = (tid, tuple(nums))
        vid = self._vid.get(vkey)
        if vid is None:
            vid = self._vid[vkey] = len(self.values)
            if not all(map(math.isfinite, nums)):
                nums = [_num(x) for x in nums]
            self.values.append([tid, nums])
        return vid


def _num(x):
    # JSON has no NaN or infinities: they travel as strings the page turns back into numbers
    if math.isfinite(x):
        return x
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def _template(v, nums: list):
    """``v`` with every number moved to ``nums`` (0 left in its place); binary buffers (bqplot's
    arrays: a dict with ``dtype`` and ``value``) become ``{"__lr_nd__": [0, 0, …]}``."""
    t = type(v)
    if t is float or t is int:
        nums.append(v)
        return 0
    if t is str or t is bool or v is None:
        return v
    if t is dict:
        out = {}
        for k, x in v.items():
            tx = type(x)
            if tx is memoryview or tx is bytes or tx is bytearray:
                dtype = v.get("dtype")
                if not isinstance(dtype, str):
                    out[k] = {"__lr_b64__": base64.b64encode(bytes(x)).decode("ascii")}
                    continue
                arr = np.frombuffer(bytes(x), dtype=np.dtype(dtype))
                nums.extend(arr.tolist())
                out[k] = {"__lr_nd__": [0] * arr.size}
            else:
                out[k] = _template(x, nums)
        return out
    if t is list or t is tuple:
        return [_template(x, nums) for x in v]
    if isinstance(v, (np.integer, np.floating)):
        nums.append(v.item())
        return 0
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"__lr_b64__": base64.b64encode(bytes(v)).decode("ascii")}
    if isinstance(v, (int, float)):  # bool is handled above
        nums.append(float(v) if isinstance(v, float) else int(v))
        return 0
    raise TypeError(f"export_html: cannot store a trait value of type {type(v).__name__}")


def capture_states(ui, grid: dict[str, list]) -> dict:
    """Evaluate the dashboard at every point of ``grid`` (through its State, as a control would)
    and record what each recomputation sends to the browser; the setting is restored afterwards.

    Returns ``{"payload": dict (see encode), "manager_patch": {model_id: {trait: value}},
    "figures": [model ids of the views that change], "seconds": float, "states": int}``.
    """
    from ipywidgets.embed import dependency_state

    st = ui.state
    names = list(grid)
    # only the models the page holds (another view of the same State recomputes too: not recorded)
    reachable = set(dependency_state(ui, drop_defaults=False))
    points = list(itertools.product(*(grid[n] for n in names)))
    controls = control_traits(ui)
    control_ids = {(w.model_id, t) for w, t in controls}
    # the lazy sections (sweep, serving) stay as they are: not recomputed per state
    lazy = [v for v in (getattr(ui, "sweep", None), getattr(ui, "serving", None)) if v is not None]
    was_active = [getattr(v, "active", False) for v in lazy]
    original = {k: getattr(st, k) for k in ("model", *_INPUT_AXES, "phase")}
    original["extra"] = dict(st.extra)
    sent: dict[str, tuple[W.Widget, set]] = {}
    seen_widgets: dict[str, W.Widget] = {}
    orig_send = W.Widget.send_state

    def record(self, key=None):
        keys = self.keys if key is None else ([key] if isinstance(key, str) else list(key))
        entry = sent.setdefault(self.model_id, (self, set()))
        entry[1].update(keys)
        seen_widgets[self.model_id] = self

    enc = _Encoder()
    current: dict[tuple[str, str], int] = {}  # (model id, trait) → value index, at the latest point
    first_seen: dict[tuple[str, str], int] = {}
    rows: list[dict] = []
    sigs: list[list] = []
    errors: list[str] = []
    t0 = time.perf_counter()
    W.Widget.send_state = record
    try:
        for v in lazy:
            v.active = False
        for i, point in enumerate(points):
            sent.clear()
            st.update(**dict(zip(names, point)))
            errors.append(st.error)
            for mid, (w, keys) in sent.items():
                if mid not in reachable:
                    continue
                for k in keys:
                    if (mid, k) in control_ids or k in ("_property_lock",):
                        continue
                    current[(mid, k)] = enc.value(_value_json(w, k))
                    first_seen.setdefault((mid, k), i)
            rows.append(dict(current))
            sigs.append([_value_json(w, t) for w, t in controls])
    finally:
        W.Widget.send_state = orig_send
        try:
            st.update(**original)
        finally:
            for v, a in zip(lazy, was_active):
                v.active = a
    seconds = time.perf_counter() - t0
    # the base values (before a key's first change): the widgets now hold them again
    keys = sorted(first_seen)
    base_vid = {(mid, k): enc.value(_value_json(seen_widgets[mid], k)) for mid, k in keys}
    states = [[row.get(key, base_vid[key]) for key in keys] for row in rows]

    # controls: the ones whose value differs between states are the page's live controls; the
    # selection ones offer only the grid's options; the others are disabled
    n_ctl = len(controls)
    live = [j for j in range(n_ctl) if len({json.dumps(s[j]) for s in sigs}) > 1]
    patch: dict[str, dict] = {}
    sig_traits = []
    for j in live:
        w, t = controls[j]
        label = str(getattr(w, "description", "") or type(w).__name__)
        if t == "index":
            used = sorted({s[j] for s in sigs if s[j] is not None})
            remap = {old: new for new, old in enumerate(used)}
            labels = [w._options_labels[i] for i in used]
            patch.setdefault(w.model_id, {}).update({"_options_labels": labels, "index": remap.get(w.index, 0)})
            for s in sigs:
                s[j] = remap.get(s[j])
            shown = {str(new): str(w._options_labels[old]) for old, new in remap.items()}
        else:
            shown = {json.dumps(s[j]): str(s[j]) for s in sigs}
        sig_traits.append({"model": w.model_id, "trait": t, "label": label, "shown": shown})
    for j in range(n_ctl):
        if j in live:
            continue
        w, _ = controls[j]
        patch.setdefault(w.model_id, {}).update({"disabled": True, "tooltip": STALE_NOTE})
    for w in _walk(ui):
        if isinstance(w, (W.Button, W.FileUpload)):
            patch.setdefault(w.model_id, {}).update({"disabled": True, "tooltip": STALE_NOTE})
    # frozen controls keep disabled=True whatever a recomputation said
    frozen = {controls[j][0].model_id for j in range(n_ctl) if j not in live}
    keep = [i for i, (mid, k) in enumerate(keys) if not (mid in frozen and k in ("disabled", "tooltip"))]
    keys = [keys[i] for i in keep]
    states = [[s[i] for i in keep] for s in states]
    sig_values = [[s[j] for j in live] for s in sigs]
    seen: dict[str, int] = {}
    for i, s in enumerate(sig_values):
        k = json.dumps(s)
        if k in seen:
            a, b = points[seen[k]], points[i]
            diff = [f"{n}={x!r} / {y!r}" for n, x, y in zip(names, a, b) if x != y]
            raise ValueError(
                "export_html: two grid points show the same control values "
                f"({', '.join(diff)}): a value the controls cannot show; drop it from the grid"
            )
        seen[k] = i
    base_point = tuple(original[n] if n in original else st.extra.get(n, _knob_default(n)) for n in names)
    base = points.index(base_point) if base_point in points else -1
    payload = {
        "version": 1,
        "axes": [{"name": n, "values": [_short(v) for v in grid[n]]} for n in names],
        "keys": [list(k) for k in keys],
        "templates": enc.templates,
        "values": enc.values,
        "states": states,
        "sig": {"traits": sig_traits, "values": sig_values},
        "errors": errors,
        "base": base,
    }
    changed_models = {mid for mid, _ in keys}
    return {
        "payload": payload,
        "manager_patch": patch,
        "figures": sorted(changed_models),
        "seconds": seconds,
        "states": len(points),
    }


def _knob_default(name):
    from .widgets.state import KNOBS

    return KNOBS.get(name)


def _short(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def encode(payload: dict) -> str:
    """The payload as base64 of gzip-compressed JSON (what :class:`ExportStates` carries)."""
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    return base64.b64encode(gzip.compress(text.encode("utf-8"), compresslevel=6, mtime=0)).decode("ascii")


def decode(data: str) -> dict:
    """Inverse of :func:`encode` (for tests)."""
    return json.loads(gzip.decompress(base64.b64decode(data)).decode("utf-8"))


def rebuild(payload: dict, vid: int):
    """A stored value back as the JSON the kernel sends (buffers as lists; for tests)."""
    tid, nums = payload["values"][vid]
    it = iter(nums)

    def walk(t):
        if isinstance(t, dict):
            if "__lr_nd__" in t:
                return [_back(next(it)) for _ in t["__lr_nd__"]]
            return {k: walk(x) for k, x in t.items()}
        if isinstance(t, list):
            return [walk(x) for x in t]
        if isinstance(t, (int, float)) and not isinstance(t, bool):
            return _back(next(it))
        return t

    return walk(payload["templates"][tid])


def _back(x):
    return float(x) if isinstance(x, str) else x


def summary(grid: dict[str, list], n: int) -> str:
    parts = []
    for name, values in grid.items():
        if len(values) > 1:
            shown = ", ".join(str(v) for v in values[:8]) + (" …" if len(values) > 8 else "")
            parts.append(f"{name.replace('_', ' ')} {shown}")
    what = "; ".join(parts) if parts else "the exported setting only"
    return (
        f"Offline page: {n} precomputed settings ({what}). Controls switch between them with no kernel; "
        "greyed-out controls need a live kernel. The sweep and serving sections are not recomputed here: "
        "their figures (if opened before the export) are those of the exported setting."
    )
