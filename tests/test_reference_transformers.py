"""Reference checks against code nobody here wrote: ``transformers`` models on the meta device.

For every catalog model that ``transformers`` can build from its config.json:
- ``params_total`` equals the parameter count of the model built on the meta device, exactly;
- the prefill (1 × 1024 tokens, logits at every position, full score matrix) and a 1-token decode
  with 1024 cached tokens: the engine's ``matmul_flops`` are within 0.5 % of what
  ``torch.utils.flop_counter.FlopCounterMode`` counts (MoE experts with
  ``experts_implementation="batched_mm"``; MLA with ``mla="naive"``, the formulation transformers runs);
- the KV-cache bytes per token equal the bytes of the cache tensors transformers keeps (fp16), except
  where transformers' eager code caches more than serving engines do (falcon-40b/180b, see ``_kv_expansion``);
- the multi-token-prediction modules a config declares (which the causal LM does not build) have the
  parameters of transformers' own ``MtpModel`` built on the main model, exactly.

Parameters are counted on the whole model. The forward passes are counted on fewer layers where that is
exact: where the decoder layers transformers builds repeat (read from the built model: class, parameter
shapes, per-layer attention settings) after a prefix of a layers with period p, copies with a + p and
a + 2p layers are counted and the counts extrapolated exactly to the full depth; otherwise on the config
cut to the shortest prefix of layers that holds every layer type (``_shortened``), compared with the
engine's analysis of that same cut config. Catalog entries whose parsed shape repeats an earlier one are
checked once; remote-code families with no transformers class (InternLM2, ChatGLM) are skipped here and
derived by hand in tests/test_families.py.

Stated, computed differences from transformers' eager code (serving engines compute what the engine counts):
- Llama-4's ``Llama4TextMoe`` runs every token through every routed expert (a dense bmm over all E
  experts, the router score multiplied into the input); the engine counts the routed top-k. The test adds
  the surplus (E − k)·tokens·(2·h·2I + 2·I·h) per MoE layer to the engine's count before comparing.
- falcon-40b/180b cache K/V expanded to every query head (see ``_kv_expansion``).

Recurrent and hybrid models (a layer with a recurrent or convolution mixer) are checked the same way, plus
their recurrent state and convolutions, in ``tests/test_reference_hybrid.py``.

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
        if any(lt.mixer is not None for lt in lr.load_model(key).layer_types):
            continue  # recurrent / hybrid models: tests/test_reference_hybrid.py (recurrent state, convolutions)
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


# model types whose config.json names their own type but runs a transformers family's code (auto_map)
_TRANSFORMERS_TYPE = {"kimi_k2": "deepseek_v3"}


def _build(cfg_dict: dict):
    cfg_dict = {k: v for k, v in cfg_dict.items() if k not in ("auto_map", "quantization_config")}
    cfg_dict["model_type"] = _TRANSFORMERS_TYPE.get(cfg_dict.get("model_type"), cfg_dict.get("model_type"))
    config = transformers.AutoConfig.for_model(**cfg_dict)
    kwargs = {"attn_implementation": "eager"}
    if "vision_config" in cfg_dict:
        # vision-language models: the whole model (vision encoder included) run on text tokens
        auto = transformers.AutoModelForImageTextToText
        with torch.device("meta"):
            try:
                model = auto.from_config(config, experts_implementation="batched_mm", **kwargs)
            except (ValueError, TypeError):
                model = auto.from_config(config, **kwargs)
        return model.eval()
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
            for name in ("keys", "values", "compressed_kv", "k_pe", "indexer_keys"):
                t = getattr(layer, name, None)
                if isinstance(t, torch.Tensor) and t.numel():
                    total += t.numel()
        return total
    for t in cache:  # legacy tuple of (k, v)
        for x in t:
            total += x.numel()
    return total


_PER_LAYER_LISTS = (
    "layer_types",
    "no_rope_layers",
    "mlp_layer_types",
    "indexer_types",
    "intermediate_size",
    "activation_sparsity_pattern",
    "layers_block_type",
    "hybrid_override_pattern",  # a string, one character per layer (Nemotron-H)
)


def _shortened(cfg: dict) -> dict:
    """The config cut to the shortest prefix of layers holding one layer of every type the engine finds.

    The forward passes are counted on it (a 61- to 94-layer model on the meta device takes 10–50 s each):
    layers of one type are built from the same code and shapes, so a type's per-layer FLOPs and cache
    are exact on one layer. The parameter count is checked on the whole model, which also checks that the
    engine assigns every layer its transformers type (a wrong type changes the parameters).
    """
    if "text_config" in cfg and "hidden_size" not in cfg:
        return cfg  # a nested text config: counted whole
    plan = lr.load_model(cfg).layer_plan
    n = max(plan.index(name) for name in set(plan)) + 1
    if n == len(plan):
        return cfg
    out = dict(cfg)
    out["num_hidden_layers" if "num_hidden_layers" in cfg else "n_layer"] = n
    for k in _PER_LAYER_LISTS:
        if isinstance(cfg.get(k), (list, str)):
            out[k] = cfg[k][:n]
    for k in ("moe_layers", "mlp_only_layers"):
        if isinstance(cfg.get(k), list):
            out[k] = [i for i in cfg[k] if i < n]
    if cfg.get("num_kv_shared_layers"):
        # Gemma-3n (every layer defined by its per-layer lists and the KV-shared tail): one layer of each
        # type, in order, the shared ones last as in the full model
        keep = sorted(plan.index(name) for name in set(plan))
        out["num_hidden_layers"] = len(keep)
        for k in _PER_LAYER_LISTS:
            if isinstance(cfg.get(k), list):
                out[k] = [cfg[k][i] for i in keep]
        first_shared = len(plan) - cfg["num_kv_shared_layers"]
        out["num_kv_shared_layers"] = sum(i >= first_shared for i in keep)
    return out


_REF: dict[str, dict] = {}


def _mtp_params(model) -> int | None:
    """Parameters of transformers' MtpModel for the MTP modules a config declares (None: none declared)."""
    # configs whose class has no num_mtp_layers (DeepSeek-V3.2, GLM-5) keep num_nextn_predict_layers as a
    # plain attribute: MtpModel builds their modules from it the same way
    n_mtp = getattr(model.config, "num_mtp_layers", None) or getattr(model.config, "num_nextn_predict_layers", 0)
    if not n_mtp:
        return None
    from transformers.modeling_layers import MtpModel

    model.config.num_mtp_layers = n_mtp
    for per_layer in ("layer_types", "mlp_layer_types"):  # an MTP block is a full-attention MoE layer
        if getattr(model.config, per_layer, None) and not getattr(model.config, "mtp_" + per_layer, None):
            setattr(model.config, "mtp_" + per_layer, [getattr(model.config, per_layer)[-1]] * n_mtp)
    with torch.device("meta"):
        mtp_model = MtpModel(model, n_mtp)
    shared = {id(p) for p in model.parameters()}  # the embedding and head it shares with the main model
    return sum(p.numel() for p in mtp_model.parameters() if id(p) not in shared)


def _forward(model) -> dict:
    """Prefill and decode matmul FLOPs, and cache elements after the prefill, of one model."""
    if type(model).__name__ == "Llama4ForConditionalGeneration":
        # transformers 5.24's Llama4ForConditionalGeneration.forward reads ``image_outputs`` from its causal
        # LM's output, which has none (AttributeError): on text tokens it only embeds them and runs that causal
        # LM (Llama4ForCausalLM: embedding, decoder, head), so that is what is counted
        model = model.language_model
    ids = torch.zeros((1, PROMPT), dtype=torch.long, device="meta")
    # a vision-language model gets the all-ones attention mask its processor gives: without one, Gemma-4's
    # multimodal forward looks for packed sequences in the position ids (a data-dependent test meta cannot run)
    vl = getattr(model.config, "vision_config", None) is not None
    mask = {"attention_mask": torch.ones((1, PROMPT), dtype=torch.long, device="meta")} if vl else {}
    with torch.no_grad():
        outs = []
        # counted with a cache, as generation runs it (the cache adds no matrix product)
        prefill = _count(lambda: outs.append(model(input_ids=ids, use_cache=True, **mask)))
        cache = outs[0].past_key_values
        kv_elems = _cache_numel(cache)
        nxt = torch.zeros((1, 1), dtype=torch.long, device="meta")
        if vl:
            mask["attention_mask"] = torch.ones((1, PROMPT + 1), dtype=torch.long, device="meta")
        decode = _count(lambda: model(input_ids=nxt, past_key_values=cache, use_cache=True, **mask))
    return {"prefill": prefill, "decode": decode, "kv_elems": kv_elems}


def _layer_signatures(model) -> list | None:
    """What transformers built for each decoder layer: its class, parameter names and shapes, per-layer
    attention settings (sliding window, layer type) and the config's layer type. Read from the built model,
    not from the engine, so a layer the engine would group wrongly still shows as different."""
    text = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    n = text.num_hidden_layers  # a vision-language model's decoder layers are its text config's
    stacks = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n]
    if len(stacks) != 1:
        return None
    types = getattr(text, "layer_types", None) or [None] * n

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
    """The config with its first k layers (a vision-language config's text model: its text_config's)."""
    if isinstance(cfg.get("text_config"), dict) and "hidden_size" not in cfg:
        return {**cfg, "text_config": _with_layers(cfg["text_config"], k)}
    out = dict(cfg)
    for name in ("num_hidden_layers", "n_layer", "n_layers", "num_layers"):
        if name in out:
            out[name] = k
    for name in _PER_LAYER_LISTS:
        if isinstance(out.get(name), (list, str)):
            out[name] = out[name][:k]
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
    params = sum(p.numel() for p in model.parameters())
    mtp = _mtp_params(model)
    sigs = _layer_signatures(model)
    period = _period(sigs) if sigs else None
    counts, short = None, None
    if period:
        # layers that repeat with period p after a prefix of a: count the first a + p and a + 2p layers and
        # extrapolate exactly, c(L) = c(a + p) + ((L − a)/p − 1)·(c(a + 2p) − c(a + p)), when the truncated
        # models are the full model's first layers
        a, p = period
        try:
            cut = [_build(_with_layers(cfg, a + p)), _build(_with_layers(cfg, a + 2 * p))]
        except (ValueError, TypeError, KeyError):
            cut = None
        if cut and all(_layer_signatures(m) == sigs[: a + j * p] for j, m in ((1, cut[0]), (2, cut[1]))):
            c1, c2 = _forward(cut[0]), _forward(cut[1])
            reps = (len(sigs) - a) // p
            counts = {k: c1[k] + (reps - 1) * (c2[k] - c1[k]) for k in c1}
    if counts is None:
        # no exact period: the shortest prefix holding every layer type, compared with the engine on that cut
        try:
            cut_cfg = _shortened(cfg)
            if cut_cfg is not cfg:
                lr.load_model(cut_cfg)
                counts, short = _forward(_build(cut_cfg)), cut_cfg
        except (ValueError, TypeError, KeyError):  # a per-layer field _shortened does not know: count it whole
            counts, short = None, None
    if counts is None:
        counts = _forward(model)
    del model
    _REF[key] = {
        "params": params,
        "prefill": counts["prefill"],
        "decode": counts["decode"],
        "kv_elems_per_token": counts["kv_elems"] / PROMPT,
        "kv_expansion": _kv_expansion(cfg),
        "mtp_params": mtp,
        "short_cfg": short,
    }
    return _REF[key]


@pytest.fixture(scope="module", params=_catalog_keys())
def pair(request):
    key = request.param
    ref = reference(key)
    kw = dict(batch_size=1, prompt_len=PROMPT, gen_len=2, logits="all", attention="full", mla="naive")
    res = lr.analyze(key, HW, **kw)
    short = res if ref["short_cfg"] is None else lr.analyze(ref["short_cfg"], HW, **kw)  # the counted layers
    return key, ref, res, short


def _eager_surplus(res, tokens: int) -> float:
    """FLOPs transformers' eager code computes beyond what the engine counts (see the module docstring)."""
    if res.model.model_type not in ("llama4_text", "llama4"):  # Llama-4 text-only or with its vision tower
        return 0.0
    h = res.model.hidden_size
    return sum(
        lt.count
        * (lt.mlp.num_experts - lt.mlp.top_k)
        * tokens
        * (2 * h * 2 * lt.mlp.intermediate_size + 2 * lt.mlp.intermediate_size * h)
        for lt in res.model.layer_types
        if lt.mlp.kind == "moe"
    )


def test_params_total_exact(pair):
    key, ref, res, _ = pair
    assert res.params_total == ref["params"], key


def test_mtp_params_exact(pair):
    key, ref, res, _ = pair
    # transformers' MtpModel (enorm, hnorm, eh_proj, one decoder block, post norm; embedding and head shared)
    if ref["mtp_params"] is None and res.params_mtp:
        pytest.skip(f"{key}: its MTP field is not one transformers builds MtpModel from (mtp_num_hidden_layers …)")
    assert res.params_mtp == (ref["mtp_params"] or 0), key


def test_prefill_matmul_flops(pair):
    key, ref, _, res = pair
    got = res.prefill.matmul_flops + _eager_surplus(res, PROMPT)
    assert got == pytest.approx(ref["prefill"], rel=5e-3), (
        f"{key}: engine {got:.6g} vs FlopCounterMode {ref['prefill']:.6g}"
    )


def test_decode_matmul_flops(pair):
    key, ref, _, res = pair
    got = res.decode.matmul_flops + _eager_surplus(res, 1)
    assert got == pytest.approx(ref["decode"], rel=5e-3), (
        f"{key}: engine {got:.6g} vs FlopCounterMode {ref['decode']:.6g}"
    )


def test_kv_bytes_per_token(pair):
    key, ref, _, res = pair
    # the engine's KV cache after the 1024-token prompt (fp16) against the cache tensors transformers
    # keeps, window layers included (transformers keeps their last window − 1 tokens); falcon-40b/180b:
    # transformers caches K/V expanded to every query head, the engine the grouped heads (see _kv_expansion)
    expected = ref["kv_elems_per_token"] * PROMPT * 2 / ref["kv_expansion"]
    assert res.memory["kv_cache_prompt_bytes"] == pytest.approx(expected, rel=1e-9), key
