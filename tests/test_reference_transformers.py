"""Reference checks against code nobody here wrote: ``transformers`` models on the meta device.

For every catalog model that ``transformers`` can build from its config.json:
- ``params_total`` equals the parameter count of the model built on the meta device, exactly;
- the prefill (1 × 1024 tokens, logits at every position, full score matrix) and a 1-token decode
  with 1024 cached tokens: the engine's ``matmul_flops`` are within 0.5 % of what
  ``torch.utils.flop_counter.FlopCounterMode`` counts (MoE experts with
  ``experts_implementation="batched_mm"``; MLA with ``mla="naive"``, the formulation transformers runs);
- the KV-cache bytes per token equal the bytes of the cache tensors transformers keeps (fp16).

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


def _build(cfg_dict: dict):
    cfg_dict = {k: v for k, v in cfg_dict.items() if k not in ("auto_map", "quantization_config")}
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


def reference(key: str) -> dict:
    """Counts from transformers for one catalog model (computed once per test session)."""
    if key in _REF:
        return _REF[key]
    entry = _catalog_index()[key]
    cfg = json.loads((MODELS_DIR / entry["file"]).read_text())
    model = _build(cfg)
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
    _REF[key] = {"params": params, "prefill": prefill, "decode": decode, "kv_elems_per_token": kv_elems / PROMPT}
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
