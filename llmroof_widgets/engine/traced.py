"""The traced path: operator rows of any model ``transformers`` can build, counted on the meta device.

For a ``model_type`` the analytic parser (:mod:`.models`) does not know — or when asked with
``lr.load_model(x, trace=True)`` — and when ``torch`` and ``transformers`` are installed (the extra
``trace``: ``pip install llmroof-widgets[trace]``), the model is built from its config on the ``meta``
device (no weights, no memory; never ``trust_remote_code``) and run a few times under
``torch.utils.flop_counter.FlopCounterMode`` with forward hooks:

- **parameters**: each module's own parameters (shared tensors, e.g. tied embeddings, once) — exact;
- **matmul FLOPs per module**: FlopCounterMode's per-module breakdown. A leaf module (``Linear``,
  ``Conv1D``, fused expert tensors …) is one row; what a module computes beyond its children (the
  attention score and value products inside an attention module) is a row of its own, ``<module>.core``;
- **activation bytes**: the element counts of each leaf module's traced inputs and outputs;
- **KV-cache geometry**: the cache tensors after a prefill: KV heads, key and value widths per layer,
  and the sliding window of window layers (the cache layer's own ``sliding_window``).

Prefills of 8, 16 and 24 tokens and one-token decodes after 8, 16 and 24 cached tokens are traced.
**Exact**: parameters, and every per-token count (projections, MLPs, lm_head: FLOPs proportional to
tokens). **Fitted**: how each row depends on length — prefill FLOPs c0 + a·T + k·T² (k: FLOPs per
query–key pair; the core rows then use the analytic engine's query–key pairs, so the causal half,
sliding windows, KV eviction and multi-token verify passes follow), decode FLOPs and activations
d0 + d1·cached from the three decodes (the third checks the fit). For standard attention these fits are
exact; the test module checks them against a direct count at 1,024 tokens.

What does not apply on the traced path (a ``ValueError`` names the knob): ``tp``, ``pp``, ``ep`` (the
trace is of one device; how a model shards is not in it) and the ``"mtp"`` speculative draft (the
trace has no MTP head shapes). Every other knob works on the traced rows: bits and formats, group
size, ``logits``, ``attention``, ``flash_attention`` (score traffic dropped), ``fused``, KV eviction,
early exit, sparsity, offloading, efficiency, speculative decoding with a separate draft model.
Element-wise operators count bytes but no FLOPs (FlopCounterMode counts matrix products only); MoE
expert tensors are read whole each pass (the trace cannot see routing).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np

from .models import AttentionSpec, LayerType, MLPSpec, ModelConfig
from .ops import Row
from .precision import compute_dtype
from .terms import Terms

PREFILL_T = (8, 16, 24)  # traced prefill lengths
DECODE_C = (8, 16, 24)  # cached lengths of the traced one-token decodes (below any realistic sliding window)
INSTALL_HINT = "pip install llmroof-widgets[trace]"


def _imports():
    try:
        import torch
        import transformers
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:
        return None
    return torch, transformers, FlopCounterMode


def available() -> bool:
    """Whether the ``trace`` extra (torch + transformers) is installed."""
    return _imports() is not None


@dataclass
class _Group:
    """Identical modules (same path pattern, shapes and counts): one operator row with a count."""

    name: str
    layer_type: str
    kind: str  # "matmul", "attention", "lookup", "elementwise"
    count: int
    params: int  # own parameters per instance (shared tensors counted once)
    params_read: int  # parameters a pass reads (shared tensors, e.g. a tied lm_head, included)
    weight_class: str | None  # "linear" (quantizable), "hp" (16-bit), None
    pre: np.ndarray  # prefill matmul FLOPs per sequence: c0 + a·T + k·T²
    dec: np.ndarray  # one-token decode matmul FLOPs per sequence: d0 + d1·cached
    act_pre: float  # activation elements read + written per prefill token
    out_pre: float  # of those, the elements written (a lookup's output row)
    act_dec: np.ndarray  # activation elements of a one-token decode: e0 + e1·cached
    lm_head: bool = False
    kv: tuple | None = None  # core rows: (kv heads, key width, value width, window or None)
    q_width: int = 0  # core rows: elements of one token's queries (= its attention output)


class TracedModel:
    """Per-module counts of one model, fitted over length; builds the engine's operator rows."""

    def __init__(self, groups: list[_Group], notes: list[str]):
        self.groups = groups
        self.notes = notes

    # -- the knobs that cannot apply -------------------------------------------------------
    def validate(self, opts, spec=None) -> None:
        for knob in ("tp", "pp", "ep"):
            if getattr(opts, knob) != 1:
                raise ValueError(
                    f"{knob} = {getattr(opts, knob)} is not available on the traced path: the trace is of one "
                    f"device and does not say how the model shards; use {knob}=1"
                )
        if spec is not None and spec.draft == "mtp":
            raise ValueError("speculative draft 'mtp' is not available on the traced path; pass a draft model")

    # -- rows ------------------------------------------------------------------------------
    def build_rows(self, b, layer_fraction: float = 1.0) -> list[Row]:
        """The rows of one pass for a :class:`~.ops.PassBuilder` ``b`` (its batch, tokens, cache and options)."""
        p, o = b.p, b.o
        B, T = b.B, b.T
        prefill = b.prefill
        c = b.c0
        rows: list[Row] = []
        fa, fkv, fhp = b._fa, b._fkv, b._fhp
        for g in self.groups:
            count = g.count * (layer_fraction if g.layer_type != "model" else 1.0)
            t = Terms()
            t.note("flops", "traced with FlopCounterMode on the meta device; length dependence fitted")
            if g.kind == "attention":
                assert g.kv is not None  # an attention group always has its cache geometry
                Hkv, dk, dv, win = g.kv
                pairs, keys = b._pairs(win)
                if prefill:
                    k = g.pre[2]  # FLOPs per query–key pair
                    lin = g.pre[0] / T + g.pre[1]  # per-token part (none for plain attention)
                else:
                    k = g.dec[1]
                    lin = g.dec[0] - g.dec[1]  # d0 = k·1 pair of the token with itself + per-token part
                t.add("matmul", "pairs", ("B", B), ("FLOPs per pair", k), ("pairs", pairs))
                t.add("matmul", "per token", ("B", B), ("FLOPs per token", lin), ("T", T))
                # queries read, outputs written
                t.add("activation", "q in, out", ("B", B), ("T", T), (None, 2), ("q width", g.q_width), fa)
                if o.flash_attention == "off":
                    # score elements (k = 2·H·(d_k + d_v) per pair): scores written, softmax read + written, read
                    s_elems = B * k * pairs / (2.0 * (dk + dv))
                    t.add("activation", "scores", (None, 4), ("score elements", s_elems), fa)
                # cached K/V read + the new ones written
                t.add("kv", "cached K, V", ("B", B), ("Hkv", Hkv), ("keys", keys), ("(d_k + d_v)", dk + dv), fkv)
                t.add("kv", "new K, V", ("B", B), ("Hkv", Hkv), ("T", T), ("(d_k + d_v)", dk + dv), fkv)
                dt = compute_dtype(p.kv_fmt, p.a_fmt)
            else:
                if g.lm_head:  # per position that gets logits
                    t.add("matmul", "", ("B", B), ("positions", b.logits_tokens), ("FLOPs per position", g.pre[1]))
                elif prefill:
                    for label, coef, tf in (
                        ("", g.pre[0], ()),
                        ("", g.pre[1], (("T", T),)),
                        ("", g.pre[2], (("T", T), ("T", T))),
                    ):
                        if coef:
                            t.add("matmul", label, ("B", B), (None, coef), *tf)
                else:
                    t.add("matmul", "", ("B", B), ("T", T), ("FLOPs per token", g.dec[0]))
                    if g.dec[1]:
                        t.add("matmul", "", ("B", B), ("T", T), ("FLOPs per cached token", g.dec[1]), ("cached", c))
                if not (g.kind == "elementwise" and o.fused):
                    if g.lm_head:
                        t.add(
                            "activation",
                            "in, out",
                            ("B", B),
                            ("positions", b.logits_tokens),
                            ("elements", g.act_pre),
                            fa,
                        )
                    elif prefill:
                        t.add("activation", "in, out", ("B", B), ("T", T), ("elements per token", g.act_pre), fa)
                    else:
                        t.add("activation", "in, out", ("B", B), ("T", T), ("elements per token", g.act_dec[0]), fa)
                        if g.act_dec[1]:
                            t.add(
                                "activation",
                                "",
                                ("B", B),
                                ("T", T),
                                ("per cached token", g.act_dec[1]),
                                ("cached", c),
                                fa,
                            )
                else:
                    t.note("bytes", "fused into the neighbouring operator")
                wb = b._b(p.w if g.weight_class == "linear" else p.hp)
                if g.kind == "lookup":
                    t.add("weight", "rows read", ("B", B), ("T", T), ("row", g.out_pre), fhp)  # one row per token
                else:
                    t.add("weight", "weights", ("parameters read", g.params_read), wb)
                dt = compute_dtype(p.w_fmt if g.weight_class == "linear" else p.hp_fmt, p.a_fmt)
                if g.kind in ("elementwise", "lookup"):
                    dt = "vector"
            resident = g.params * (p.w if g.weight_class == "linear" else p.hp)  # shared tensors once
            tot = t.totals()
            r = Row(
                g.name,
                g.layer_type,
                count,
                g.kind,
                tot["matmul"] + tot["flops"],
                tot["matmul"],
                tot["weight"],
                tot["activation"],
                tot["kv"],
                dt,
                params=g.params,
                resident=resident,
                wclass=g.weight_class,
                terms=t,
            )
            r.m_dim = B * T
            rows.append(r)
        b.rows = rows
        b._apply_storage()
        return rows


# ------------------------------------------------------------------------------------------
# tracing


class _NoCache(Exception):
    pass


_LAYER_INDEX = re.compile(r"\.(\d+)(?=\.|$)")


def _numel(x) -> int:
    torch = _imports()[0]
    if isinstance(x, torch.Tensor):
        return x.numel()
    if isinstance(x, (list, tuple)):
        return sum(_numel(y) for y in x)
    if isinstance(x, dict):
        return sum(_numel(y) for y in x.values())
    return 0


def _cache_layers(cache) -> list:
    layers = getattr(cache, "layers", None)
    return list(layers) if layers is not None else []


_CACHE: dict[str, ModelConfig] = {}


def trace_config(cfg: dict, *, name: str) -> ModelConfig:
    """Build ``cfg`` on the meta device, trace it, and return a :class:`ModelConfig` whose ``traced`` holds the rows.

    Traces are cached per config (a model is traced once per session).
    """
    import json
    from dataclasses import replace

    key = json.dumps(cfg, sort_keys=True, default=str)
    if key not in _CACHE:
        _CACHE[key] = _trace(cfg, name=name)
    return replace(_CACHE[key], name=str(name))


LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers")
PERIODS = (1, 2)  # layer periods tried when no per-layer list gives one (uniform; alternating, as gemma-2)


def _probe(cfg: dict, key: str, n: int, lists: list[str]) -> dict:
    small = {**cfg, key: n, **{k: cfg[k][:n] for k in lists}}
    return _trace_counts(small)


def _periodic(t: dict, n: int, P: int) -> bool:
    """A probe of n = k·P layers is periodic when every layer row occurs a multiple of k times (the same times
    in every period) and the cache geometry repeats with period P."""
    k = n // P
    geo = t["geo"]
    return (
        len(geo) == n
        and all(g.count % k == 0 for g in t["groups"] if g.layer_type != "model")
        and all(geo[i] == geo[i % P] for i in range(n))
    )


def _trace(cfg: dict, *, name: str) -> ModelConfig:
    """Trace small copies first: with a layer period P (1: uniform), copies of 2P and 3P layers whose layer
    rows each occur once per period (the 3P copy catches a different first layer or two) are scaled exactly
    to the full depth L (L a multiple of P). Otherwise the full model is traced.

    The period comes from per-layer list fields (``layer_types`` …, sliced for the copies) when the config
    has them, else 1 or 2 (alternating layers) are tried.
    """
    key = next((k for k in LAYER_KEYS if isinstance(cfg.get(k), int)), None)
    L = cfg.get(key) if key else None
    if not L or key is None:
        return _shell(cfg, _trace_counts(cfg), name)
    lists = [k for k, v in cfg.items() if isinstance(v, list) and len(v) == L]
    if lists:
        periods = [
            p
            for p in range(1, L // 3 + 1)
            if L % p == 0 and all(cfg[k][i] == cfg[k][i % p] for k in lists for i in range(L))
        ][:1]
    else:
        periods = [p for p in PERIODS if L % p == 0]
    for P in periods:
        if 3 * P >= L:
            break
        a = _probe(cfg, key, 2 * P, lists)
        if not _periodic(a, 2 * P, P):
            continue
        b = _probe(cfg, key, 3 * P, lists)
        if not _periodic(b, 3 * P, P):
            continue
        if sorted((g.name, g.count // 2) for g in a["groups"] if g.layer_type != "model") != sorted(
            (g.name, g.count // 3) for g in b["groups"] if g.layer_type != "model"
        ):
            continue
        for g in a["groups"]:
            if g.layer_type != "model":
                g.count = g.count // 2 * (L // P)  # occurrences per period × periods
        a["geo"] = a["geo"][:P] * (L // P)
        a["notes"].append(
            f"periodic layers (period {P}): traced copies of {2 * P} and {3 * P} of {L} layers; per-layer rows "
            f"scaled exactly to {L}"
        )
        a["num_layers"] = L
        return _shell(cfg, a, name)
    return _shell(cfg, _trace_counts(cfg), name)


def _trace_counts(cfg: dict) -> dict:
    mods = _imports()
    if mods is None:
        raise ValueError(
            f"config field 'model_type' = {cfg.get('model_type')!r} is not known to the analytic engine; the "
            f"traced path can analyse it with torch and transformers installed: {INSTALL_HINT}"
        )
    torch, transformers, FlopCounterMode = mods
    clean = {k: v for k, v in cfg.items() if k not in ("auto_map", "quantization_config", "_outer_model_type")}
    try:
        config = transformers.AutoConfig.for_model(**clean)
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    except Exception as e:  # an unknown model_type, or a config transformers cannot build
        raise ValueError(
            f"config field 'model_type' = {cfg.get('model_type')!r}: transformers could not build the model for the "
            f"traced path ({type(e).__name__}: {e}); trust_remote_code is never used"
        ) from None
    model.eval()
    root = type(model).__name__
    named = dict(model.named_modules())
    leaves = {n for n, m in named.items() if n and not any(True for _ in m.children())}
    head = model.get_output_embeddings()
    head_name = next((n for n, m in named.items() if m is head), None)

    # own parameters per module, shared tensors once
    seen: set[int] = set()
    own: dict[str, int] = {}
    for n, m in named.items():
        k = 0
        for prm in m.parameters(recurse=False):
            if id(prm) not in seen:
                seen.add(id(prm))
                k += prm.numel()
        own[n] = k

    acts: dict[str, int] = {}
    outs: dict[str, int] = {}

    def hook(mod_name):
        def f(_m, args, out):
            acts[mod_name] = acts.get(mod_name, 0) + _numel(args) + _numel(out)
            outs[mod_name] = outs.get(mod_name, 0) + _numel(out)

        return f

    handles = [named[n].register_forward_hook(hook(n)) for n in leaves]

    import inspect

    # transformers 5 takes the cache as `cache=` (older families: `past_key_values=`)
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def run(ids, cache=None):
        acts.clear()
        outs.clear()
        with torch.no_grad(), warnings.catch_warnings(), FlopCounterMode(display=False) as fc:
            warnings.simplefilter("ignore")
            kw = {cache_arg: cache} if cache is not None else {}
            out = model(input_ids=ids, use_cache=True, **kw)
        counts = {}
        for key, ops in fc.get_flop_counts().items():
            if key == root:
                counts[""] = sum(ops.values())
            elif key.startswith(root + "."):
                counts[key[len(root) + 1 :]] = sum(ops.values())
        return counts, dict(acts), out, dict(outs)

    try:
        pre, dec, pre_act, dec_act = [], [], [], []
        cache_geo: list[tuple | None] | None = None  # per cache layer: (kv heads, key width, value width, window)
        for T, C in zip(PREFILL_T, DECODE_C):
            ids = torch.zeros((1, T), dtype=torch.long, device="meta")
            counts, a, out, o_el = run(ids)
            pre.append(counts)
            pre_act.append(a)
            pre_out = o_el
            cache = out.get("cache") if hasattr(out, "get") else None
            if cache is None and hasattr(out, "get"):
                cache = out.get("past_key_values")  # transformers before the `cache` rename
            if cache is None or not _cache_layers(cache):
                raise _NoCache
            if C != T:
                raise AssertionError("decode lengths follow the prefill lengths")
            if cache_geo is None:
                cache_geo = []
                for layer in _cache_layers(cache):
                    kt, vt = getattr(layer, "keys", None), getattr(layer, "values", None)
                    if isinstance(kt, torch.Tensor) and kt.dim() == 4 and isinstance(vt, torch.Tensor):
                        cache_geo.append(
                            (kt.shape[1], kt.shape[3], vt.shape[3], getattr(layer, "sliding_window", None))
                        )
                    else:
                        cache_geo.append(None)
            nxt = torch.zeros((1, 1), dtype=torch.long, device="meta")
            counts, a, _, _ = run(nxt, cache)
            dec.append(counts)
            dec_act.append(a)
    except _NoCache:
        raise ValueError(
            f"config field 'model_type' = {cfg.get('model_type')!r}: the traced path found no key/value cache after a "
            "prefill (recurrent-state models are not traced yet)"
        ) from None
    except Exception as e:  # a forward transformers cannot run on the meta device
        raise ValueError(
            f"config field 'model_type' = {cfg.get('model_type')!r}: the traced path could not run the model on the "
            f"meta device ({type(e).__name__}: {e})"
        ) from None
    finally:
        for h in handles:
            h.remove()

    notes = [
        "traced: rows from FlopCounterMode and forward hooks on the meta device (transformers "
        f"{transformers.__version__}); parameters and per-token counts exact, length dependence fitted",
        "element-wise operators: bytes only (FlopCounterMode counts matrix products)",
    ]
    Tm = np.array(PREFILL_T, dtype=np.float64)
    Cm = np.array(DECODE_C, dtype=np.float64)
    V3 = np.stack([np.ones(3), Tm, Tm**2], axis=1)
    V2 = np.stack([np.ones(3), Cm], axis=1)

    def fit_pre(vals):
        return np.linalg.solve(V3, np.asarray(vals, dtype=np.float64))

    def fit_dec(vals):
        coef, *_ = np.linalg.lstsq(V2, np.asarray(vals, dtype=np.float64), rcond=None)
        if np.max(np.abs(V2 @ coef - vals)) > 1e-6 * max(1.0, np.max(np.abs(vals))):
            notes.append("a decode count is not linear in the cached length: fitted by least squares")
        return coef

    children = {n: [c for c in named if c.startswith(n + ".") and "." not in c[len(n) + 1 :]] for n in named if n}
    children[""] = [c for c in named if c and "." not in c]

    def total(counts, n):
        # a container never called (a ModuleList) has no entry of its own: the sum of its children
        if n in counts:
            return counts[n]
        return sum(total(counts, c) for c in children.get(n, []))

    def residual(counts, n):
        return total(counts, n) - sum(total(counts, c) for c in children.get(n, []))

    raw: list[dict] = []
    for n in sorted(named):
        if not n:
            continue
        m = named[n]
        is_leaf = n in leaves
        if is_leaf:
            pv = [total(c, n) for c in pre]
            dv = [total(c, n) for c in dec]
        else:
            pv = [residual(c, n) for c in pre]
            dv = [residual(c, n) for c in dec]
        has_flops = any(pv) or any(dv)
        if not is_leaf and not has_flops:
            continue
        if is_leaf and not has_flops and not own[n] and not pre_act[-1].get(n):
            continue
        cls = type(m).__name__
        if not is_leaf:
            kind = "attention" if "attention" in cls.lower() or "attn" in n.split(".")[-1].lower() else "matmul"
            rname = n + ".core"
        elif isinstance(m, torch.nn.Embedding):
            kind, rname = "lookup", n
        elif has_flops:
            kind, rname = "matmul", n
        else:
            kind, rname = "elementwise", n
        idx = [int(x) for x in _LAYER_INDEX.findall(n)]
        entry = dict(
            path=rname,
            pattern=_LAYER_INDEX.sub(".*", rname),
            kind=kind,
            params=own[n],
            params_read=sum(prm.numel() for prm in m.parameters(recurse=False)),
            out_pre=pre_out.get(n, 0) / PREFILL_T[-1],
            pre=fit_pre(pv),
            dec=fit_dec(np.array(dv, dtype=np.float64)),
            act_pre=pre_act[-1].get(n, 0) / PREFILL_T[-1],
            act_dec=fit_dec(np.array([a.get(n, 0) for a in dec_act], dtype=np.float64)),
            layer=idx[0] if idx else None,
            lm_head=(n == head_name),
            weight_class=("hp" if isinstance(m, torch.nn.Embedding) or n == head_name else "linear")
            if kind in ("matmul", "lookup") and own[n]
            else ("hp" if own[n] else None),
        )
        if kind == "attention":
            geo = None
            if entry["layer"] is not None and cache_geo and entry["layer"] < len(cache_geo):
                geo = cache_geo[entry["layer"]]
            if geo is None:
                entry["kind"] = "matmul"  # no K/V cache behind it: count it as plain products
            else:
                entry["kv"] = geo
                lin = [c for c in children.get(n, []) if c in leaves and isinstance(named[c], torch.nn.Linear)]
                entry["q_width"] = named[lin[-1]].in_features if lin else geo[0] * geo[2]
        raw.append(entry)

    # group identical modules across layers
    groups: dict[tuple, _Group] = {}
    for ent in raw:
        key: tuple = (
            ent["pattern"],
            ent["kind"],
            ent["params"],
            tuple(np.round(ent["pre"], 3)),
            tuple(np.round(ent["dec"], 3)),
            round(ent["act_pre"], 3),
            ent["params_read"],
            ent.get("kv"),
        )
        if key in groups:
            groups[key].count += 1
            continue
        groups[key] = _Group(
            name=ent["pattern"],
            layer_type="traced" if ent["layer"] is not None else "model",
            kind=ent["kind"],
            count=1,
            params=ent["params"],
            params_read=ent["params_read"],
            out_pre=ent["out_pre"],
            weight_class=ent["weight_class"],
            pre=ent["pre"],
            dec=ent["dec"],
            act_pre=ent["act_pre"],
            act_dec=ent["act_dec"],
            lm_head=ent["lm_head"],
            kv=ent.get("kv"),
            q_width=ent.get("q_width", 0),
        )
    # distinguish layer kinds that share a module pattern (e.g. window and full layers)
    by_name: dict[str, list[_Group]] = {}
    for g in groups.values():
        by_name.setdefault(g.name, []).append(g)
    for gs in by_name.values():
        if len(gs) > 1:
            for i, g in enumerate(gs):
                if g.layer_type == "traced":
                    g.layer_type = f"traced {i + 1}"

    hidden = int(getattr(config, "hidden_size", 0) or model.get_input_embeddings().embedding_dim)
    vocab = int(getattr(config, "vocab_size", 0) or model.get_input_embeddings().num_embeddings)
    return dict(
        groups=list(groups.values()),
        geo=[g for g in (cache_geo or []) if g is not None],
        notes=notes,
        hidden=hidden,
        vocab=vocab,
        num_layers=int(getattr(config, "num_hidden_layers", 0) or 0),
        n_heads=int(getattr(config, "num_attention_heads", 0) or 0),
        tie=bool(getattr(config, "tie_word_embeddings", False)),
        max_pos=int(getattr(config, "max_position_embeddings", 0) or 0),
    )


def _shell(cfg: dict, t: dict, name: str) -> ModelConfig:
    """A ModelConfig around the traced rows: KV geometry for the memory engine, sizes for the views."""
    geo = t["geo"]
    n_heads = t["n_heads"]
    lts: dict[tuple, int] = {}
    for gg in geo:
        lts[gg] = lts.get(gg, 0) + 1
    layer_types = []
    for i, ((Hkv, dk, dv, win), cnt) in enumerate(sorted(lts.items(), key=lambda kv: str(kv[0]))):
        H = n_heads if n_heads and n_heads % Hkv == 0 else Hkv
        layer_types.append(
            LayerType(
                name="traced" if len(lts) == 1 else f"traced kv {i + 1}",
                count=cnt,
                attention=AttentionSpec(
                    kind="mha", num_heads=H, num_kv_heads=Hkv, head_dim=dk, v_head_dim=dv, window=win
                ),
                mlp=MLPSpec(kind="dense", intermediate_size=1, gated=False, act="relu"),
                norms=0,
            )
        )
    if not layer_types:
        raise ValueError(
            f"model_type {cfg.get('model_type')!r}: the traced path found no key/value cache after a prefill "
            "(recurrent-state models are not traced yet)"
        )
    traced = TracedModel(t["groups"], t["notes"])
    return ModelConfig(
        name=str(name),
        model_type=str(cfg.get("model_type")),
        hidden_size=t["hidden"],
        num_layers=t["num_layers"] or len(geo),
        vocab_size=t["vocab"],
        layer_types=tuple(layer_types),
        norm="ln",
        tie_embeddings=t["tie"],
        position="rope",
        max_positions=t["max_pos"],
        position_rows=0,
        raw=cfg,
        traced=traced,
    )
