"""Sweeps, comparisons and hardware choice on top of :func:`analyze`.

``sweep`` evaluates a cartesian product of settings at once: a decode step's time depends only on
the batch and the cached length, so for each batch (and setting of the other knobs) the step times
over every needed context are computed in one vectorized pass and summed with a cumulative sum;
the prefill is vectorized over the prompt lengths, the memory footprint over (prompt, generation).
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from . import calibration, generation, memory
from .analysis import ATTENTION, LOGITS, MLA, Result, _check_choice, _check_count, analyze
from .catalog import _short
from .hardware import list_hardware, load_hardware
from .models import _is_number, load_model
from .ops import PassBuilder
from .options import make_options, validate_for
from .precision import Precision
from .roofline import Roof, pass_time

GRID_KEYS = ("batch_size", "prompt_len", "gen_len")
METRICS = (
    "ttft_s",
    "tpot_s",
    "e2e_s",
    "tokens_per_s",
    "decode_tokens_per_s",
    "throughput_tokens_per_s",
    "throughput_per_device_tokens_per_s",
)
MEMORY = (
    "weights_bytes",
    "kv_cache_bytes",
    "recurrent_state_bytes",
    "activations_bytes",
    "total_bytes",
    "capacity_bytes",
    "fits",
    "max_batch_size",
    "kv_token_capacity",
)
DEFAULTS = dict(
    batch_size=1,
    prompt_len=1024,
    gen_len=256,
    w_bits=16,
    a_bits=16,
    kv_bits=16,
    logits="last",
    attention="causal",
    mla="absorbed",
    group_size=None,
    flash_attention="off",
    fused=False,
    kv_keep_ratio=1.0,
    kv_budget=None,
    speculative=None,
    early_exit_fraction=1.0,
    sparsity=None,
    offload=None,
    tp=1,
    pp=1,
    ep=1,
    efficiency=None,
    framework="generic",
    images=0,
    image_size=None,
)


def _as_list(v) -> list:
    if isinstance(v, (list, tuple, np.ndarray, range)):
        return list(v)
    return [v]


def _freeze(v):
    return tuple(sorted(v.items())) if isinstance(v, dict) else v


SWEEP_IN_MEMORY_ROWS = 2_000_000  # rows one in-memory DataFrame may hold (≈ 0.5 GB); beyond: stream it
DEFAULT_CHUNK_ROWS = 1 << 18  # rows evaluated together when streaming or building the in-memory frame


def sweep(
    model: Any, hardware: Any, *, chunk_size: int | None = None, path: Any = None, client: Any = None, **settings
):
    """Evaluate every combination of the given settings; one DataFrame row per configuration.

    Each keyword is an :func:`analyze` argument, given as one value or a list of values
    (``batch_size=[1, 8, 64], prompt_len=[512, 2048], w_bits=[16, 8, 4]``). Columns are named like
    the inputs and like the ``generation`` and ``memory`` keys of ``Result.to_dict()``; each row
    equals what ``analyze`` gives for that configuration. Speculative decoding falls back to one
    ``analyze`` call per configuration.

    The work is done in chunks of at most ``chunk_size`` rows with a bounded working set (each decode
    sum in closed form, never one entry per context length). Without ``chunk_size``/``path``/``client``
    the whole product comes back as one DataFrame, refused above :data:`SWEEP_IN_MEMORY_ROWS` rows;
    bigger products stream:

    - ``chunk_size=n``: an iterator of DataFrames of at most n rows, in the in-memory order;
    - ``path="dir"``: Parquet files ``dir/part-00000.parquet`` … (needs the ``scale`` extra), written
      one chunk at a time; returns their paths;
    - ``client=distributed.Client(...)`` with ``path``: the same chunks run on Dask workers, each
      writing its Parquet partition (the ``scale`` extra: ``pip install llmroof_widgets[scale]``).
    """
    plan = _SweepPlan(model, hardware, settings, chunk_size)
    if client is not None:
        if path is None:
            raise ValueError("sweep(client=...) writes Parquet partitions: give path='folder' for them")
        return _sweep_dask(plan, client, path)
    if path is not None:
        return _write_parquet(plan, path)
    if chunk_size is not None:
        return plan.frames()
    if plan.rows > SWEEP_IN_MEMORY_ROWS:
        raise ValueError(
            f"sweep: {plan.rows:,} configurations exceed the in-memory limit of {SWEEP_IN_MEMORY_ROWS:,} rows; "
            "stream them: lr.sweep(..., chunk_size=100_000) iterates over DataFrames, lr.sweep(..., path='folder') "
            "writes Parquet files, lr.sweep(..., client=distributed.Client(...), path='folder') runs on Dask"
        )
    import pandas as pd

    frames = list(plan.frames())
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _check_chunk_size(v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= 10**9:
        raise ValueError(f"sweep: chunk_size must be a whole number of rows in [1, 1e9], got {v!r}")
    return int(v)


_KNOBS = (
    "flash_attention",
    "fused",
    "kv_keep_ratio",
    "kv_budget",
    "early_exit_fraction",
    "sparsity",
    "offload",
    "tp",
    "pp",
    "ep",
    "efficiency",
)


class _SweepPlan:
    """The product of a sweep cut into units (one knob combination, one batch, a block of prompts × gens).

    Chunks are ranges of unit numbers, so a chunk is described by one integer (what a Dask task gets)
    and the units are never listed.
    """

    def __init__(self, model, hardware, settings: dict, chunk_size):
        unknown = set(settings) - set(DEFAULTS)
        if unknown:
            raise ValueError(
                f"sweep: unknown setting(s) {', '.join(sorted(map(str, unknown)))}; allowed: {', '.join(DEFAULTS)}"
            )
        self.chunk = DEFAULT_CHUNK_ROWS if chunk_size is None else _check_chunk_size(chunk_size)
        self.m = load_model(model)
        self.hw = load_hardware(hardware)
        values = {k: _as_list(settings.get(k, DEFAULTS[k])) for k in DEFAULTS}
        for k in GRID_KEYS:
            values[k] = sorted({_check_count(k, v) for v in values[k]})
        for k in DEFAULTS:
            if not values[k]:
                raise ValueError(f"sweep: {k} has no values")
        self.other_keys = [k for k in DEFAULTS if k not in GRID_KEYS]
        self.values = values
        self.inputs = list(GRID_KEYS) + [k for k in self.other_keys if len(values[k]) > 1 or k in settings]
        self.columns = self.inputs + [c for c in (*METRICS, *MEMORY, *self.other_keys) if c not in self.inputs]
        self.B, self.P, self.G = values["batch_size"], values["prompt_len"], values["gen_len"]
        self.radix = [len(values[k]) for k in self.other_keys]
        self.combos = math.prod(self.radix)
        nP, nG = len(self.P), len(self.G)
        if nG >= self.chunk:  # one prompt per unit, the generations cut into chunks
            self.p_blk, self.g_blk = 1, self.chunk
        else:  # whole generation lists, as many prompts as fit
            self.p_blk, self.g_blk = min(nP, max(1, self.chunk // nG)), nG
        self.g_blocks = -(-nG // self.g_blk)
        self.blocks = -(-nP // self.p_blk) * self.g_blocks
        self.units = self.combos * len(self.B) * self.blocks
        self.rows = self.combos * len(self.B) * nP * nG
        self.per_chunk = max(1, self.chunk // (self.p_blk * self.g_blk))
        self.n_chunks = -(-self.units // self.per_chunk)
        self._prepared: dict = {}
        self._series_key: Any = None  # (combination, batch) of the cached closed-form series
        self._series: Any = None
        self.prepare(0)  # the first combination's knobs are checked now, not at the first chunk

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_prepared"], d["_series_key"], d["_series"] = {}, None, None
        return d

    def combo(self, i: int) -> dict:
        """The i-th combination of the other knobs, in ``itertools.product`` order."""
        kw = {}
        for k, r in zip(reversed(self.other_keys), reversed(self.radix)):
            i, j = divmod(i, r)
            kw[k] = self.values[k][j]
        return {k: kw[k] for k in self.other_keys}

    def prepare(self, i: int):
        """(knobs, precision, options, roof) of combination i; precision None for speculative decoding."""
        if i not in self._prepared:
            if len(self._prepared) > 64:
                self._prepared.clear()
            kw = self.combo(i)
            # speculative decoding and vision-language models: one analyze per configuration
            if kw["speculative"] is not None or self.m.vision is not None or kw["images"]:
                self._prepared[i] = (kw, None, None, None)
            else:
                prec = Precision(kw["w_bits"], kw["a_bits"], kw["kv_bits"], kw["group_size"])
                _check_choice("logits", kw["logits"], LOGITS)
                _check_choice("attention", kw["attention"], ATTENTION)
                _check_choice("mla", kw["mla"], MLA)
                opts = make_options(**{k: kw[k] for k in _KNOBS})
                roof = Roof(
                    self.hw,
                    opts.efficiency,
                    quantized_weights=prec.w_bits < 16,
                    framework=calibration.framework(kw["framework"]).label,  # with its version, as analyze()
                )
                self._prepared[i] = (kw, prec, opts, roof)
        return self._prepared[i]

    def unit(self, u: int):
        """(combination, batch, prompts, gens) of unit number u."""
        blk = u % self.blocks
        b = (u // self.blocks) % len(self.B)
        c = u // (self.blocks * len(self.B))
        pb, gb = divmod(blk, self.g_blocks)
        P = self.P[pb * self.p_blk : (pb + 1) * self.p_blk]
        G = self.G[gb * self.g_blk : (gb + 1) * self.g_blk]
        return c, self.B[b], P, G

    def chunk_frame(self, k: int):
        """DataFrame of chunk k (units k·per_chunk …), at most ``chunk_size`` rows."""
        import pandas as pd

        cols: dict = {}
        frozen: list = []
        for u in range(k * self.per_chunk, min((k + 1) * self.per_chunk, self.units)):
            c, B, P, G = self.unit(u)
            part = self._unit_columns(c, B, P, G)
            for key, v in part.items():
                cols.setdefault(key, []).append(v)
            frozen.append((_frozen_inputs(self.prepare(c)[0]), len(part["batch_size"])))
        data = {key: np.concatenate(v) for key, v in cols.items()}
        counts = [n for _, n in frozen]
        for key in self.other_keys:
            vals = [f[key] for f, _ in frozen]
            kinds = {type(v) for v in vals}
            if len(kinds) == 1 and kinds <= {int, float, bool, str}:
                data[key] = pd.Series(np.repeat(np.asarray(vals), counts))  # one plain type: a typed column
            else:
                arr = np.empty(len(vals), dtype=object)
                arr[:] = vals
                data[key] = pd.Series(np.repeat(arr, counts), dtype=object)
        df = pd.DataFrame({key: data[key] for key in self.columns})
        df["fits"] = df["fits"].astype(bool)
        df["max_batch_size"] = df["max_batch_size"].astype(int)
        df["kv_token_capacity"] = df["kv_token_capacity"].astype(int)
        return df

    def frames(self):
        for k in range(self.n_chunks):
            yield self.chunk_frame(k)

    def _unit_columns(self, c: int, B: int, prompts, gens) -> dict:
        kw, prec, opts, roof = self.prepare(c)
        m, hw = self.m, self.hw
        if prec is None:  # speculative decoding: one analyze per configuration
            rows = []
            for p_, g_ in itertools.product(prompts, gens):
                d = analyze(m, hw, batch_size=B, prompt_len=p_, gen_len=g_, **kw).to_dict()
                rows.append([B, p_, g_] + [d["generation"][k] for k in METRICS] + [d["memory"][k] for k in MEMORY])
            return {k: np.asarray(v) for k, v in zip((*GRID_KEYS, *METRICS, *MEMORY), zip(*rows))}
        validate_for(opts, m, hw, B)
        P = np.asarray(prompts, dtype=np.float64)
        Gi = np.asarray(gens, dtype=np.int64)[None, :]
        pre_rows = PassBuilder(
            m,
            prec,
            batch=B,
            tokens=P,
            cached=0,
            logits_tokens=P if kw["logits"] == "all" else 1,
            attention=kw["attention"],
            mla=kw["mla"],
            options=opts,
            hardware=hw,
        ).build()
        ttft = np.broadcast_to(pass_time(pre_rows, roof, request=True), P.shape)
        # decode step j attends c_lo + j cached tokens (j = 0 … n − 1): one closed-form series per
        # (knobs, batch) serves every prompt and generation length
        c_lo = self.P[0]
        if self._series_key != (c, B):
            n = self.P[-1] + max(self.G[-1] - 1, 1) - c_lo
            self._series, _ = generation.plain_series(
                m, prec, roof, opts, batch=B, first_cached=c_lo, n=n, mla=kw["mla"]
            )
            self._series_key = (c, B)
        series = self._series
        Pi = (P.astype(np.int64) - c_lo)[:, None]
        decode_total = series.range_sum(Pi, Pi + Gi - 1)  # Σ steps with cached P … P + G − 2
        first = series.values(Pi[:, 0])[:, None]
        ttft2 = ttft[:, None]
        e2e = ttft2 + decode_total
        tpot = np.where(Gi > 1, decode_total / np.maximum(Gi - 1, 1), first)
        thr = B * Gi / e2e
        gen = {
            "ttft_s": np.broadcast_to(ttft2, e2e.shape),
            "tpot_s": tpot,
            "e2e_s": e2e,
            "tokens_per_s": Gi / e2e,
            "decode_tokens_per_s": 1.0 / tpot,
            "throughput_tokens_per_s": thr,
            "throughput_per_device_tokens_per_s": thr / opts.devices,
        }
        first_rows = PassBuilder(
            m,
            prec,
            batch=B,
            tokens=1,
            cached=P,
            logits_tokens=1,
            attention="causal",
            mla=kw["mla"],
            options=opts,
            hardware=hw,
        ).build(opts.early_exit_fraction)
        mem = memory.footprint(
            m,
            prec,
            hw.memory_bytes,
            opts,
            batch=B,
            prompt_len=P[:, None],
            gen_len=Gi,
            prefill_rows=_column(pre_rows),
            decode_rows=_column(first_rows),
        )
        shape = e2e.shape
        cols = {
            "batch_size": np.full(shape, B),
            "prompt_len": np.broadcast_to(P[:, None], shape).astype(int),
            "gen_len": np.broadcast_to(Gi, shape).astype(int),
        }
        cols.update({k: np.broadcast_to(v, shape) for k, v in gen.items()})
        cols.update({k: np.broadcast_to(np.asarray(mem[k]), shape) for k in MEMORY})
        return {k: np.asarray(v).ravel() for k, v in cols.items()}


def _need_extra(what: str, *modules: str):
    """Import the optional ``scale`` extra's modules, or say which extra to install."""
    import importlib

    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise ImportError(
                f"{what} needs the optional extra 'scale' ({mod} is missing): pip install 'llmroof_widgets[scale]'"
            ) from e


def _parquet_text_columns(plan: _SweepPlan) -> list:
    """Input columns whose values mix types (16 and "int4"): written as text in every partition (one schema)."""
    out = []
    for k in plan.other_keys:
        kinds = {type(v) for v in plan.values[k] if v is not None}
        if len(kinds) > 1 or not kinds <= {int, float, str, bool}:
            out.append(k)
    return out


def _chunk_to_parquet(plan: _SweepPlan, k: int, folder: str, as_text: list) -> str:
    import os

    df = plan.chunk_frame(k)
    for c in as_text:
        df[c] = pd_text(df[c])
    target = os.path.join(folder, f"part-{k:05d}.parquet")
    tmp = f"{target}.{os.getpid()}.tmp"
    df.to_parquet(tmp, index=False)
    os.replace(tmp, target)  # a partition appears whole or not at all
    return target


def pd_text(col) -> list:
    return [None if v is None else str(v) for v in col]


def _write_parquet(plan: _SweepPlan, path) -> list:
    import os

    _need_extra("sweep(path=...)", "pyarrow")
    folder = os.fspath(path)
    os.makedirs(folder, exist_ok=True)
    as_text = _parquet_text_columns(plan)
    return [_chunk_to_parquet(plan, k, folder, as_text) for k in range(plan.n_chunks)]


def _sweep_dask(plan: _SweepPlan, client, path) -> list:
    import os

    _need_extra("sweep(client=...)", "pyarrow", "distributed")
    folder = os.path.abspath(os.fspath(path))
    os.makedirs(folder, exist_ok=True)
    as_text = _parquet_text_columns(plan)
    [shared] = client.scatter([plan], broadcast=True)
    futures = client.map(
        _chunk_to_parquet,
        [shared] * plan.n_chunks,
        range(plan.n_chunks),
        folder=folder,
        as_text=as_text,
        pure=False,
    )
    return client.gather(futures)


class _ColumnRow:
    """A view of a row whose array-valued activation bytes become a column (for broadcasting over G)."""

    __slots__ = ("activation_bytes", "count", "resident", "layer_type", "host_resident")

    def __init__(self, r):
        a = np.asarray(r.activation_bytes, dtype=np.float64)
        self.activation_bytes = a[:, None] if a.ndim == 1 else a
        self.count, self.resident, self.layer_type, self.host_resident = (
            r.count,
            r.resident,
            r.layer_type,
            r.host_resident,
        )


def _column(rows):
    return [_ColumnRow(r) for r in rows]


def _frozen_inputs(kw: dict) -> dict:
    out = {}
    for k, v in kw.items():
        if k == "speculative" and v is not None:
            v = f"γ={v.gamma}, α={v.acceptance}, draft={v.draft if isinstance(v.draft, str) else 'custom'}"
        elif isinstance(v, dict):
            v = str(v) if v else None
        out[k] = v
    return out


# ---- comparison ---------------------------------------------------------------------------------


class Comparison:
    """Two analyses side by side: totals and per-operator deltas (``b`` relative to ``a``)."""

    def __init__(self, a: Result, b: Result, labels=("a", "b")):
        self.a, self.b = a, b
        self.labels = labels
        self.totals = self._totals()
        self.operators = self._operators()

    def _totals(self):
        import pandas as pd

        da, db = self.a.to_dict(), self.b.to_dict()
        rows = []
        for sec, keys in (
            ("model", ("params_total", "params_active")),
            ("generation", METRICS),
            ("memory", ("weights_bytes", "kv_cache_bytes", "activations_bytes", "total_bytes", "fits")),
        ):
            for k in keys:
                va, vb = da[sec][k], db[sec][k]
                num = isinstance(va, (int, float)) and not isinstance(va, bool)
                rows.append(
                    {
                        "quantity": k,
                        self.labels[0]: va,
                        self.labels[1]: vb,
                        "delta": (vb - va) if num else None,
                        "ratio": (vb / va if num and va else None),
                    }
                )
        for ph in ("prefill", "decode"):
            for k in ("flops", "bytes", "time_s"):
                va, vb = da[ph][k], db[ph][k]
                rows.append(
                    {
                        "quantity": f"{ph}.{k}",
                        self.labels[0]: va,
                        self.labels[1]: vb,
                        "delta": vb - va,
                        "ratio": vb / va if va else None,
                    }
                )
        return pd.DataFrame(rows)

    def _operators(self):
        import pandas as pd

        rows = []
        for ph in ("prefill", "decode"):
            oa = {(o["layer_type"], o["name"]): o for o in getattr(self.a, ph).ops}
            ob = {(o["layer_type"], o["name"]): o for o in getattr(self.b, ph).ops}
            for key in list(oa) + [k for k in ob if k not in oa]:
                ra, rb = oa.get(key), ob.get(key)
                ta = ra["count"] * ra["time_s"] if ra else 0.0
                tb = rb["count"] * rb["time_s"] if rb else 0.0
                rows.append(
                    {
                        "phase": ph,
                        "layer_type": key[0],
                        "name": key[1],
                        f"time_s_{self.labels[0]}": ta,
                        f"time_s_{self.labels[1]}": tb,
                        "delta_s": tb - ta,
                        f"bytes_{self.labels[0]}": ra["count"] * ra["bytes"] if ra else 0.0,
                        f"bytes_{self.labels[1]}": rb["count"] * rb["bytes"] if rb else 0.0,
                        f"bound_{self.labels[0]}": ra["bound"] if ra else "",
                        f"bound_{self.labels[1]}": rb["bound"] if rb else "",
                    }
                )
        return pd.DataFrame(rows)

    def _repr_html_(self):
        a, b = (html.escape(str(x)) for x in self.labels)
        head = (
            f"<p><b>{a}</b>: {html.escape(self.a.model.name)} on {html.escape(self.a.hardware.name)} — "
            f"<b>{b}</b>: {html.escape(self.b.model.name)} on {html.escape(self.b.hardware.name)} "
            "(roofline times are lower bounds)</p>"
        )
        return head + self.totals.to_html(index=False) + self.operators.to_html(index=False)

    def __repr__(self):
        return f"Comparison({self.labels[0]} vs {self.labels[1]})\n{self.totals.to_string(index=False)}"


def compare(a: Any, b: Any, *, labels=("a", "b"), **common) -> Comparison:
    """Compare two analyses (``Result`` objects, or dicts of ``analyze`` arguments merged over ``common``).

    Knowledge distillation shows here: ``compare({"model": teacher}, {"model": student}, hardware=...)``.
    """

    def res(x):
        if isinstance(x, Result):
            return x
        if isinstance(x, dict):
            kw = {**common, **x}
            return analyze(kw.pop("model"), kw.pop("hardware"), **kw)
        raise ValueError("compare: pass two lr.analyze(...) results or two dicts of analyze arguments")

    return Comparison(res(a), res(b), labels)


# ---- hardware choice ----------------------------------------------------------------------------


def choose_hardware(
    model: Any,
    workload: dict | None = None,
    devices: Iterable | None = None,
    objective: str = "tpot",
    counts: Iterable[int] = (1, 2, 4, 8),
    prices: dict | None = None,
):
    """Rank devices (and how many of them, as tensor-parallel groups) for a workload, best first.

    ``workload``: ``analyze`` arguments (batch_size, prompt_len, gen_len, bits, knobs). For each device
    the smallest count in ``counts`` whose per-device memory fits is used (count 1 is tried first; a
    count needs a device interconnect and a TP degree that divides the heads). Objectives: ``"tpot"``,
    ``"ttft"`` (lower is better), ``"throughput"`` (tokens/s for the batch, higher is better), ``"cost"``
    (device-seconds per generated token, or dollars per million tokens when ``prices`` maps device id →
    $/hour). Rows that fit nowhere stay in the table, marked ``fits=False``, after the ones that fit.
    """
    import pandas as pd

    objectives = ("tpot", "ttft", "throughput", "cost")
    if objective not in objectives:
        raise ValueError(f"objective must be one of {', '.join(map(repr, objectives))}, got {objective!r}")
    if workload is not None and not isinstance(workload, dict):
        raise ValueError(f"workload must be a dict of analyze arguments or None, got {type(workload).__name__}")
    workload = dict(workload or {})
    for k in GRID_KEYS:  # a bad workload is an error, not a device that "fits nowhere"
        if k in workload:
            workload[k] = _check_count(k, workload[k])
    if isinstance(counts, (str, bytes)) or not isinstance(counts, Iterable):
        raise ValueError(f"counts must be a list of device counts such as (1, 2, 4, 8), got {counts!r}")
    counts = [_check_count("counts[]", n, 1, 4096) for n in list(counts)[:64]]
    if not counts:
        raise ValueError("counts must hold at least one device count, such as (1, 2, 4, 8)")
    if prices is not None:
        if not isinstance(prices, dict):
            raise ValueError("prices must map a device id to its price in $/hour, e.g. {'h100-sxm': 3.0}")
        for k, v in prices.items():
            if not isinstance(k, str) or isinstance(v, bool) or not _is_number(v) or not (0 <= v < 1e9):
                raise ValueError(f"prices[{_short(k)}] must be a finite price ≥ 0 in $/hour, got {_short(v)}")
    m = load_model(model)
    if devices is not None and (isinstance(devices, (str, bytes)) or not isinstance(devices, Iterable)):
        raise ValueError(f"devices must be a list of device ids or lr.Hardware, got {_short(devices)}")
    devs = list(devices) if devices is not None else list_hardware()
    rows = []
    for dev in devs:
        hw = load_hardware(dev)
        chosen = None
        last_err = None
        for n in counts:
            try:
                r = (
                    analyze(m, hw, **{**workload, "tp": n * workload.get("tp", 1)})
                    if n > 1
                    else analyze(m, hw, **workload)
                )
            except ValueError as e:
                last_err = str(e)
                continue
            chosen = (n, r)
            if r.memory["fits"]:
                break
        if chosen is None:
            rows.append(
                {
                    "device": hw.id or hw.name,
                    "name": hw.name,
                    "count": None,
                    "fits": False,
                    "ttft_s": np.nan,
                    "tpot_s": np.nan,
                    "throughput_tokens_per_s": np.nan,
                    "memory_per_device_bytes": np.nan,
                    "cost": np.nan,
                    "note": last_err,
                }
            )
            continue
        n, r = chosen
        g = r.generation
        dev_s_per_tok = n / g["throughput_tokens_per_s"]
        cost = dev_s_per_tok
        if prices is not None and (hw.id in prices or hw.name in prices):
            cost = (
                float(prices[hw.id] if hw.id in prices else prices[hw.name]) / 3600 * dev_s_per_tok * 1e6
            )  # $ per million tokens
        rows.append(
            {
                "device": hw.id or hw.name,
                "name": hw.name,
                "count": n,
                "fits": r.memory["fits"],
                "ttft_s": g["ttft_s"],
                "tpot_s": g["tpot_s"],
                "throughput_tokens_per_s": g["throughput_tokens_per_s"],
                "memory_per_device_bytes": r.memory["total_bytes"],
                "cost": cost,
                "note": "" if r.memory["fits"] else f"needs {r.memory['total_bytes'] / 1e9:.1f} GB per device",
            }
        )
    df = pd.DataFrame(rows)
    key = {"tpot": "tpot_s", "ttft": "ttft_s", "throughput": "throughput_tokens_per_s", "cost": "cost"}[objective]
    df = df.sort_values(
        by=["fits", key], ascending=[False, objective != "throughput"], na_position="last", kind="stable"
    ).reset_index(drop=True)
    df.attrs["objective"] = objective
    df.attrs["note"] = (
        "roofline times are lower bounds; cost = device-seconds per generated token unless prices are given"
    )
    return df
