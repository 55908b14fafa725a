"""Reference checks against code nobody here wrote: ``transformers`` models on the meta device.

For every catalog model that ``transformers`` can build from its config.json:
- ``params_total`` equals the parameter count of the model built on the meta device, exactly;
- the prefill (1 × 1024 tokens, logits at every position, full score matrix) and a 1-token decode
  with 1024 cached tokens: the engine's ``matmul_flops`` are within 0.5 % of what
  ``torch.utils.flop_counter.FlopCounterMode`` counts (MoE experts with
  ``experts_implementation="batched_mm"``; MLA with ``mla="naive"``, the formulation transformers runs);
- the KV-cache bytes per token equal the bytes of the cache tensors transformers keeps (fp16);
- the multi-token-prediction modules a config declares (which the causal LM does not build) have the
  parameters of transformers' own ``MtpModel`` built on the main model, exactly.

The forward passes run on the config cut to the shortest prefix of layers that holds every layer type
(``_shortened``); parameters are counted on the whole model.

Stated, computed differences from transformers' eager code (serving engines compute what the engine counts):
- Llama-4's ``Llama4TextMoe`` runs every token through every routed expert (a dense bmm over all E
  experts, the router score multiplied into the input); the engine counts the routed top-k. The test adds
  the surplus (E − k)·tokens·(2·h·2I + 2·I·h) per MoE layer to the engine's count before comparing.

Needs ``torch==2.13.0`` (the CPU wheel) and ``transformers``; skipped when they are missing.
"""

from __future__ import annotations

import json

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


def _catalog_keys():
    return sorted(_catalog_index())


# model types whose config.json names their own type but runs a transformers family's code (auto_map)
_TRANSFORMERS_TYPE = {"kimi_k2": "deepseek_v3"}


def _build(cfg_dict: dict):
    cfg_dict = {k: v for k, v in cfg_dict.items() if k not in ("auto_map", "quantization_config")}
    cfg_dict["model_type"] = _TRANSFORMERS_TYPE.get(cfg_dict.get("model_type"), cfg_dict.get("model_type"))
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


def reference(key: str) -> dict:
    """Counts from transformers for one catalog model (computed once per test session)."""
    if key in _REF:
        return _REF[key]
    entry = _catalog_index()[key]
    cfg = json.loads((MODELS_DIR / entry["file"]).read_text())
    model = _build(cfg)
    params = sum(p.numel() for p in model.parameters())
    mtp = None
    # configs whose class has no num_mtp_layers (DeepSeek-V3.2, GLM-5) keep num_nextn_predict_layers as a
    # plain attribute: MtpModel builds their modules from it the same way
    n_mtp = getattr(model.config, "num_mtp_layers", None) or getattr(model.config, "num_nextn_predict_layers", 0)
    if n_mtp:
        from transformers.modeling_layers import MtpModel

        model.config.num_mtp_layers = n_mtp
        for per_layer in ("layer_types", "mlp_layer_types"):  # an MTP block is a full-attention MoE layer
            if getattr(model.config, per_layer, None) and not getattr(model.config, "mtp_" + per_layer, None):
                setattr(model.config, "mtp_" + per_layer, [getattr(model.config, per_layer)[-1]] * n_mtp)
        with torch.device("meta"):
            mtp_model = MtpModel(model, n_mtp)
        shared = {id(p) for p in model.parameters()}  # the embedding and head it shares with the main model
        mtp = sum(p.numel() for p in mtp_model.parameters() if id(p) not in shared)
    try:
        short = _shortened(cfg)
        if short is not cfg:
            lr.load_model(short)
            model = _build(short)
    except (ValueError, TypeError, KeyError):  # a per-layer field _shortened does not know: count it whole
        short = cfg
    ids = torch.zeros((1, PROMPT), dtype=torch.long, device="meta")
    with torch.no_grad():
        outs = []
        # counted with a cache, as generation runs it (the cache adds no matrix product)
        prefill = _count(lambda: outs.append(model(input_ids=ids, use_cache=True)))
        cache = outs[0].past_key_values
        kv_elems = _cache_numel(cache)
        nxt = torch.zeros((1, 1), dtype=torch.long, device="meta")
        decode = _count(lambda: model(input_ids=nxt, past_key_values=cache, use_cache=True))
    _REF[key] = {
        "params": params,
        "prefill": prefill,
        "decode": decode,
        "kv_elems_per_token": kv_elems / PROMPT,
        "mtp_params": mtp,
        "short_cfg": None if short is cfg else short,
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
    if res.model.model_type != "llama4_text":
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
    # keeps, window layers included (transformers keeps their last window − 1 tokens)
    assert res.memory["kv_cache_prompt_bytes"] == pytest.approx(ref["kv_elems_per_token"] * PROMPT * 2, rel=1e-9), key
