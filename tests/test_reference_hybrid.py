"""Reference checks of the recurrent and hybrid catalog models against ``transformers`` on the meta device.

(The other catalog models are checked in ``tests/test_reference_transformers.py``.) For every catalog model
with a recurrent or convolution mixer layer:
- ``params_total`` equals the parameter count of the model built on the meta device, exactly;
- the prefill (1 × 1024 tokens, logits at every position, full score matrix) and a 1-token decode
  with 1024 cached tokens: the engine's ``matmul_flops`` are within 0.5 % of what
  ``torch.utils.flop_counter.FlopCounterMode`` counts (MoE experts with
  ``experts_implementation="batched_mm"``; MLA with ``mla="naive"``, the formulation transformers runs);
- the KV-cache bytes per token equal the bytes of the cache tensors transformers keeps (fp16);
- recurrent / hybrid models (Qwen3-Next, Nemotron-H, Jamba, LFM2, Bamba, and the attention-free Mamba,
  falcon-mamba and Mamba2, whose KV cache is 0): the recurrent-state bytes equal transformers'
  conv-state tensors (model dtype, fp16 here) plus its recurrent-state tensors (float32: transformers runs the
  scans in float32 and keeps their final state so; MiniMax's lightning state stays in the model dtype), reported
  apart from the KV cache. ``FlopCounterMode``
  counts convolutions apart from matrix products and does not count element-wise work (the recurrent decode
  step of Gated DeltaNet, the state updates of Mamba): matrix products are compared with ``matmul_flops``, the
  convolutions with the engine's ``conv1d`` rows (their multiply-adds, without the bias add FlopCounterMode
  leaves out), and the element-wise scan work is not compared. In transformers 5.24 these models take their
  cache as ``cache=`` (``past_key_values=`` is renamed to it with a deprecation warning; Mamba, falcon-mamba and
  Mamba2 return it as ``.cache`` and drop an unknown ``past_key_values=``, so it is passed as ``cache=`` where the
  forward takes that); the decode counts below equal one 1-token step, so the prefill is not re-run. A recurrent /
  hybrid model is built with its first layers, as few as hold one layer of each kind (Jamba: 5 of 32; Nemotron-H:
  6 of 52; Bamba: 10 of 32; Mamba / Mamba2: 1), and each layer's figures are weighted by how many layers of its
  kind the full model has (exact: a layer's work depends only on its kind), so that transformers' Python-level
  reference scans (Mamba's token-by-token loop) stay affordable.

A vision-language hybrid (Qwen3.5's published config.json: text_config + vision_config) is built whole with
``AutoModelForImageTextToText`` (its text model cut to the first layers as above) and run on text tokens with no
attention mask (its recurrent-layer mask tests an all-ones mask's values, which meta tensors do not have): the
parameters include the vision encoder, whose FLOPs are checked in ``tests/test_reference_vision.py``.

Needs ``torch==2.13.0`` (the CPU wheel) and ``transformers``; skipped when they are missing.
"""

from __future__ import annotations

import inspect
import json
import re

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
    return sorted(k for k in _catalog_index() if any(lt.mixer is not None for lt in lr.load_model(k).layer_types))


def _build(cfg_dict: dict):
    cfg_dict = {k: v for k, v in cfg_dict.items() if k not in ("auto_map", "quantization_config")}
    config = transformers.AutoConfig.for_model(**cfg_dict)
    kwargs = {"attn_implementation": "eager"}
    if "vision_config" in cfg_dict:
        # a vision-language hybrid (Qwen3.5's published files): the whole model, vision encoder included, run
        # on text tokens (the encoder is checked in tests/test_reference_vision.py)
        with torch.device("meta"):
            try:
                model = transformers.AutoModelForImageTextToText.from_config(
                    config, experts_implementation="batched_mm", **kwargs
                )
            except (ValueError, TypeError):
                model = transformers.AutoModelForImageTextToText.from_config(config, **kwargs)
        return model.eval()
    with torch.device("meta"):
        try:
            model = transformers.AutoModelForCausalLM.from_config(config, experts_implementation="batched_mm", **kwargs)
        except (ValueError, TypeError):
            model = transformers.AutoModelForCausalLM.from_config(config, **kwargs)
    model.eval()
    return model


LAYER = re.compile(r"\.layers\.(\d+)$")


def _count(fn, weights: dict[int, float] | None = None) -> tuple[int, int]:
    """(matrix-product FLOPs, convolution FLOPs) that FlopCounterMode counts while ``fn`` runs.

    ``weights``: decoder layer index → how many layers of the full model it stands for (a model built with the
    first layers of its pattern, one of each kind: see ``_prefix``); the embedding and lm_head count once.
    """
    with FlopCounterMode(display=False) as fc:
        fn()
    counts = fc.get_flop_counts()

    def split(ops):
        conv = sum(v for op, v in ops.items() if "convolution" in str(op))
        return sum(ops.values()) - conv, conv

    mm, conv = split(counts["Global"])
    if weights:
        for name, ops in counts.items():
            hit = LAYER.search(name)
            if hit:
                w = weights.get(int(hit.group(1)), 0.0)
                lmm, lconv = split(ops)
                mm, conv = mm + (w - 1) * lmm, conv + (w - 1) * lconv
    return int(round(mm)), int(round(conv))


def _prefix(key: str) -> tuple[int, dict[int, float]]:
    """For a recurrent / hybrid model: the shortest first-layers model holding every layer kind of its plan, and
    the weight of each of its layers (how many layers of that kind the full model has, on the first of each kind;
    0 on repeats). Other models: the whole depth, no weights."""
    m = lr.load_model(key)
    plan, n = m.layer_plan, m.num_layers
    if not any(lt.mixer for lt in m.layer_types):
        return n, {}
    kinds = set(plan)
    p = next(i for i in range(1, n + 1) if set(plan[:i]) == kinds)
    first = {k: plan.index(k) for k in kinds}
    return p, {i: float(plan.count(plan[i])) if first[plan[i]] == i else 0.0 for i in range(p)}


def _truncated(cfg: dict, p: int) -> dict:
    """The config with its first ``p`` layers (its layer pattern cut to one period); a vision-language config's
    text model: its text_config's."""
    if isinstance(cfg.get("text_config"), dict) and "hidden_size" not in cfg:
        return {**cfg, "text_config": _truncated(cfg["text_config"], p)}
    cfg = dict(cfg, num_hidden_layers=p)
    for k in ("layer_types", "layers_block_type"):
        if isinstance(cfg.get(k), list):
            cfg[k] = cfg[k][:p]
    if isinstance(cfg.get("hybrid_override_pattern"), str):
        cfg["hybrid_override_pattern"] = cfg["hybrid_override_pattern"][:p]
    for k in ("mlp_only_layers", "full_attn_idxs", "attn_layer_indices"):
        if isinstance(cfg.get(k), list):
            cfg[k] = [i for i in cfg[k] if i < p]
    return cfg


def _cache_numel(cache, weights: dict[int, float] | None = None) -> tuple[float, float, float, float]:
    """Elements of (KV tensors, convolution states, float32 recurrent states, model-dtype recurrent states), each
    decoder layer's weighted as in ``_count``."""
    w = (lambda i: weights.get(i, 0.0)) if weights else (lambda i: 1.0)
    kv = conv = rec = 0.0
    # MiniMax keeps each lightning layer's Kᵀ·V state in a list of its own, in the model dtype
    rec_model = sum(
        w(i) * t.numel()
        for i, t in enumerate(getattr(cache, "linear_cache", None) or [])
        if isinstance(t, torch.Tensor)
    )
    layers = getattr(cache, "layers", None)
    if layers is not None:
        for i, layer in enumerate(layers):
            for name in ("keys", "values", "compressed_kv", "k_pe"):
                t = getattr(layer, name, None)
                if isinstance(t, torch.Tensor) and t.numel():
                    kv += w(i) * t.numel()
            for name in ("conv_states", "recurrent_states"):  # linear-attention layers: {state_idx: tensor}
                for t in (getattr(layer, name, None) or {}).values():
                    if isinstance(t, torch.Tensor):
                        if name == "conv_states":
                            conv += w(i) * t.numel()
                        else:
                            rec += w(i) * t.numel()
        return kv, conv, rec, rec_model
    for t in cache:  # legacy tuple of (k, v)
        for x in t:
            kv += x.numel()
    return kv, conv, rec, rec_model


_REF: dict[str, dict] = {}


def reference(key: str) -> dict:
    """Counts from transformers for one catalog model (computed once per test session)."""
    if key in _REF:
        return _REF[key]
    entry = _catalog_index()[key]
    cfg = json.loads((MODELS_DIR / entry["file"]).read_text())
    # recurrent / hybrid models are built with their first layers, as few as hold one layer of each kind, and each
    # per-layer figure (FLOPs, parameters, cache tensors) is weighted by how many layers of that kind the full model
    # has: exact, as a layer's work depends only on its kind; it keeps transformers' Python-level reference scans
    # (Mamba's token-by-token loop) affordable
    n_layers = lr.load_model(key).num_layers
    p, weights = _prefix(key)
    model = _build(_truncated(cfg, p) if p < n_layers else cfg)
    params = sum(x.numel() for x in model.parameters())
    for name, x in model.named_parameters():
        hit = re.search(r"\.layers\.(\d+)\.", name)
        if weights and hit:
            params += round((weights[int(hit.group(1))] - 1) * x.numel())
    ids = torch.zeros((1, PROMPT), dtype=torch.long, device="meta")
    with torch.no_grad():
        outs = []
        # counted with a cache, as generation runs it (the cache adds no matrix product)
        prefill, prefill_conv = _count(lambda: outs.append(model(input_ids=ids, use_cache=True)), weights)
        # Mamba / falcon-mamba / Mamba2 return their cache as `cache` and take it as `cache=` (their forward
        # swallows an unknown `past_key_values=`: the decode step would then run without the prefill's state)
        cache = getattr(outs[0], "past_key_values", None)
        if cache is None:
            cache = outs[0].cache
        kv_elems, conv_elems, rec_elems, rec_model_elems = _cache_numel(cache, weights)
        nxt = torch.zeros((1, 1), dtype=torch.long, device="meta")
        takes = inspect.signature(model.forward).parameters
        kw = {"cache": cache} if "cache" in takes and "past_key_values" not in takes else {"past_key_values": cache}
        decode, decode_conv = _count(lambda: model(input_ids=nxt, use_cache=True, **kw), weights)
    _REF[key] = {
        "params": params,
        "prefill": prefill,
        "decode": decode,
        "prefill_conv": prefill_conv,
        "decode_conv": decode_conv,
        "kv_elems_per_token": kv_elems / PROMPT,
        "conv_state_elems": conv_elems,
        "recurrent_state_elems": rec_elems,
        "recurrent_state_model_dtype_elems": rec_model_elems,
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
    # keeps, window layers included (transformers keeps their last window − 1 tokens)
    assert res.memory["kv_cache_prompt_bytes"] == pytest.approx(ref["kv_elems_per_token"] * PROMPT * 2, rel=1e-9), key


def _conv_macs(phase, model) -> float:
    """Multiply-add FLOPs of the engine's causal convolutions (its rows' FLOPs less the bias add and the fused
    activation, per channel and token: 2·K of 2·K + bias + activation)."""
    from llmroof_widgets.engine.models import ACT_FLOPS

    total = 0.0
    for r in phase.rows:
        if r.name == "conv1d":
            mixer = next(lt.mixer for lt in model.layer_types if lt.name == r.layer_type)
            k = mixer.conv_kernel
            per = 2 * k + (1 if mixer.conv_bias else 0) + (ACT_FLOPS[mixer.act] if mixer.act else 0)
            total += r.count * r.flops * (2 * k) / per
    return total


def test_recurrent_state_bytes(pair):
    key, ref, res = pair
    # conv states in the model dtype (fp16 here), recurrent states in float32, as transformers keeps them;
    # a model without recurrent layers has neither
    expected = (
        ref["conv_state_elems"] * 2 + ref["recurrent_state_elems"] * 4 + ref["recurrent_state_model_dtype_elems"] * 2
    )
    assert res.memory["recurrent_state_prompt_bytes"] == pytest.approx(expected, rel=1e-9, abs=0), key


def test_convolution_flops(pair):
    key, ref, res = pair
    for phase, counted in ((res.prefill, ref["prefill_conv"]), (res.decode, ref["decode_conv"])):
        got = _conv_macs(phase, res.model)
        if phase is res.decode and counted:
            # transformers' decode step convolves the K cached inputs plus the new one without padding: it computes
            # 2 output positions and keeps the last; the engine counts the one a decode step needs
            counted = counted / 2
        # prefill: transformers pads K − 1 positions and computes T + K − 1 outputs, 0.3 % more than T at T = 1024
        assert got == pytest.approx(counted, rel=5e-3, abs=0), f"{key} {phase.name}: engine {got:.6g} vs {counted:.6g}"
