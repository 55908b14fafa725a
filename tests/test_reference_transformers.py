"""Reference checks against code nobody here wrote: ``transformers`` models on the meta device.

For every catalog model that ``transformers`` can build from its config.json:
- ``params_total`` equals the parameter count of the model built on the meta device, exactly;
- the prefill (1 × 1024 tokens, logits at every position, full score matrix) and a 1-token decode
  with 1024 cached tokens: the engine's ``matmul_flops`` are within 0.5 % of what
  ``torch.utils.flop_counter.FlopCounterMode`` counts (MoE experts with
  ``experts_implementation="batched_mm"``; MLA with ``mla="naive"``, the formulation transformers runs);
- the KV-cache bytes per token equal the bytes of the cache tensors transformers keeps (fp16), except
  where transformers' eager code caches more than serving engines do (falcon-40b/180b, see ``_kv_expansion``).

Where the decoder layers transformers builds repeat (read from the built model: class, parameter shapes,
per-layer attention settings), after a prefix of a layers with period p (uniform: a = 0, p = 1; 3 sliding +
1 full: p = 4; DeepSeek-V3's 3 dense layers: a = 3), copies with a + p and a + 2p layers are counted and the
counts extrapolated exactly to the full depth, which keeps a deep model's check to seconds. Catalog entries whose parsed shape repeats an earlier one are checked once; remote-code families with no
transformers class (InternLM2, ChatGLM) are skipped here and derived by hand in tests/test_families.py.

Needs ``torch==2.13.0`` (the CPU wheel) and ``transformers``; skipped when they are missing.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

import llmroof_widgets as lr
from llmroof_widgets.engine.models import MODELS_DIR, _catalog_index

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

pytestmark = pytest.mark.reference

PROMPT = 1024
# a cheap device: only FLOP and parameter counts are compared here
HW = lr.Hardware(name="reference", memory_bytes=1e12, memory_bandwidth=1e12, peak_flops={"fp16": 1e15})


# catalog families with no transformers class (remote code only): checked by hand in tests/test_families.py
NO_TRANSFORMERS_CLASS = {"internlm2", "chatglm"}


def _catalog_keys():
    """Catalog keys to check, one per distinct architecture: an entry whose parsed shape equals an earlier
    one's (a distill or a re-release with its base's config, e.g. Llama-3.3-70B and Llama-3.1-70B) would
    give the same counts, so it is checked once."""
    seen: list = []
    keys = []
    for key in _catalog_index():  # index.json first, then the fragments: the original entry is the one kept
        shape = replace(lr.load_model(key), name="")
        if shape in seen:  # ModelConfig equality: every field but the name and the raw dict
            continue
        seen.append(shape)
        keys.append(key)
    return keys


def _kv_expansion(cfg: dict) -> float:
    """How many times larger transformers' cache is than the grouped cache serving engines keep.

    falcon-40b/180b (``new_decoder_architecture``): transformers' FalconAttention broadcasts each K/V
    head to its num_heads/num_kv_heads query heads *before* the cache update, so its cache holds
    num_heads K/V heads; vLLM, TensorRT-LLM and llama.cpp cache the num_kv_heads grouped heads, and
    so does the engine."""
    if cfg.get("model_type") == "falcon" and cfg.get("new_decoder_architecture"):
        heads = cfg.get("num_attention_heads", cfg.get("n_head"))
        return heads / (cfg.get("num_kv_heads") or cfg.get("n_head_kv") or heads)
    return 1.0


def _build(cfg_dict: dict):
    cfg_dict = {k: v for k, v in cfg_dict.items() if k not in ("auto_map", "quantization_config")}
    config = transformers.AutoConfig.for_model(**cfg_dict)
    kwargs = {"attn_implementation": "eager"}
    with torch.device("meta"):
        try:
            model = transformers.AutoModelForCausalLM.from_config(config, experts_implementation="batched_mm", **kwargs)
        except (ValueError, TypeError):
            model = transformers.AutoModelForCausalLM.from_config(config, **kwargs)
    model.eval()
    return model


def _count(fn) -> int:
    with FlopCounterMode(display=False) as fc:
        fn()
    return int(fc.get_total_flops())


def _cache_numel(cache) -> int:
    total = 0
    layers = getattr(cache, "layers", None)
    if layers is not None:
        for layer in layers:
            for name in ("keys", "values", "compressed_kv", "k_pe"):
                t = getattr(layer, name, None)
                if isinstance(t, torch.Tensor) and t.numel():
                    total += t.numel()
        return total
    for t in cache:  # legacy tuple of (k, v)
        for x in t:
            total += x.numel()
    return total


_REF: dict[str, dict] = {}


def _counts(model) -> dict:
    """Parameters, prefill and decode matmul FLOPs, and cache elements after the prefill, of one model."""
    params = sum(p.numel() for p in model.parameters())
    ids = torch.zeros((1, PROMPT), dtype=torch.long, device="meta")
    with torch.no_grad():
        outs = []
        # counted with a cache, as generation runs it (the cache adds no matrix product)
        prefill = _count(lambda: outs.append(model(input_ids=ids, use_cache=True)))
        cache = outs[0].past_key_values
        kv_elems = _cache_numel(cache)
        nxt = torch.zeros((1, 1), dtype=torch.long, device="meta")
        decode = _count(lambda: model(input_ids=nxt, past_key_values=cache, use_cache=True))
    return {"params": params, "prefill": prefill, "decode": decode, "kv_elems": kv_elems}


def _layer_signatures(model) -> list | None:
    """What transformers built for each decoder layer: its class, parameter names and shapes, per-layer
    attention settings (sliding window, layer type) and the config's layer type. Read from the built model,
    not from the engine, so a layer the engine would group wrongly still shows as different."""
    n = model.config.num_hidden_layers
    stacks = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n]
    if len(stacks) != 1:
        return None
    types = getattr(model.config, "layer_types", None) or [None] * n

    def signature(i, layer):
        shapes = tuple((name, tuple(p.shape)) for name, p in layer.named_parameters())
        attrs = tuple(
            (name, str(getattr(m, a)))
            for name, m in layer.named_modules()
            for a in ("sliding_window", "is_sliding", "layer_type", "attention_type", "use_rope")
            if hasattr(m, a)
        )
        return type(layer), shapes, attrs, types[i]

    return [signature(i, layer) for i, layer in enumerate(stacks[0])]


def _period(sigs: list) -> tuple[int, int] | None:
    """(a, p): the layers after the first a repeat with period p and L − a is a whole number of periods;
    the smallest a + 2p below L (uniform layers: (0, 1))."""
    n = len(sigs)
    best = None
    for a in range(0, min(n, 8)):
        for p in range(1, (n - a) // 2 + 1):
            if (n - a) % p or a + 2 * p >= n:
                continue
            if all(sigs[i] == sigs[a + (i - a) % p] for i in range(a, n)):
                if best is None or a + 2 * p < sum(best) + best[1]:
                    best = (a, p)
                break
    return best


def _with_layers(cfg: dict, k: int) -> dict:
    """The config with its first k layers."""
    out = dict(cfg)
    for name in ("num_hidden_layers", "n_layer", "n_layers", "num_layers"):
        if name in out:
            out[name] = k
    if isinstance(out.get("layer_types"), list):
        out["layer_types"] = out["layer_types"][:k]
    return out


def reference(key: str) -> dict:
    """Counts from transformers for one catalog model (computed once per test session)."""
    if key in _REF:
        return _REF[key]
    entry = _catalog_index()[key]
    cfg = json.loads((MODELS_DIR / entry["file"]).read_text())
    if cfg.get("model_type") in NO_TRANSFORMERS_CLASS:
        pytest.skip(
            f"{cfg['model_type']}: remote-code family with no transformers class (hand-checked in test_families)"
        )
    model = _build(cfg)
    sigs = _layer_signatures(model)
    period = _period(sigs) if sigs else None
    counts = None
    if period:
        # layers that repeat with period p after a prefix of a: count the first a + p and a + 2p layers and
        # extrapolate exactly, c(L) = c(a + p) + ((L − a)/p − 1)·(c(a + 2p) − c(a + p)), when the truncated
        # models are the full model's first layers (else count the full depth)
        a, p = period
        short = [_build(_with_layers(cfg, a + p)), _build(_with_layers(cfg, a + 2 * p))]
        if all(_layer_signatures(m) == sigs[: a + j * p] for j, m in ((1, short[0]), (2, short[1]))):
            c1, c2 = _counts(short[0]), _counts(short[1])
            reps = (len(sigs) - a) // p
            counts = {k: c1[k] + (reps - 1) * (c2[k] - c1[k]) for k in c1}
    if counts is None:
        counts = _counts(model)
    _REF[key] = {
        "params": counts["params"],
        "prefill": counts["prefill"],
        "decode": counts["decode"],
        "kv_elems_per_token": counts["kv_elems"] / PROMPT,
        "kv_expansion": _kv_expansion(cfg),
    }
    return _REF[key]


@pytest.fixture(scope="module", params=_catalog_keys())
def pair(request):
    key = request.param
    ref = reference(key)
    res = lr.analyze(key, HW, batch_size=1, prompt_len=PROMPT, gen_len=2, logits="all", attention="full", mla="naive")
    return key, ref, res


def test_params_total_exact(pair):
    key, ref, res = pair
    assert res.params_total == ref["params"], key


def test_prefill_matmul_flops(pair):
    key, ref, res = pair
    got = res.prefill.matmul_flops
    assert got == pytest.approx(ref["prefill"], rel=5e-3), (
        f"{key}: engine {got:.6g} vs FlopCounterMode {ref['prefill']:.6g}"
    )


def test_decode_matmul_flops(pair):
    key, ref, res = pair
    got = res.decode.matmul_flops
    assert got == pytest.approx(ref["decode"], rel=5e-3), (
        f"{key}: engine {got:.6g} vs FlopCounterMode {ref['decode']:.6g}"
    )


def test_kv_bytes_per_token(pair):
    key, ref, res = pair
    # the engine's KV cache after the 1024-token prompt (fp16) against the cache tensors transformers
    # keeps, window layers included (transformers keeps their last window − 1 tokens); falcon-40b/180b:
    # transformers caches K/V expanded to every query head, the engine the grouped heads (see _kv_expansion)
    expected = ref["kv_elems_per_token"] * PROMPT * 2 / ref["kv_expansion"]
    assert res.memory["kv_cache_prompt_bytes"] == pytest.approx(expected, rel=1e-9), key
