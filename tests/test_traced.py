"""The traced path (``engine/traced.py``): rows counted by tracing ``transformers`` on the meta device.

- On architectures the analytic path knows (Llama-3.2, Qwen3, phi-2, GPT-2 — GQA, q/k norms, parallel
  blocks with partial rotary, Conv1D with fused qkv — and gemma-2, whose alternating sliding-window
  layers make it non-uniform): the same totals as the analytic engine, which the reference module checks
  against transformers — parameters exact, prefill and decode matmul FLOPs within 0.5 % (logits at every
  position and the full score matrix, as transformers computes; and the causal / last-position
  conventions through the fitted length dependence), KV-cache bytes equal.
- On ``stablelm``, a model_type the analytic parser does not know: it loads through the traced path
  automatically, and its parameters, matmul FLOPs and KV bytes equal a direct ``FlopCounterMode`` count
  of the model transformers builds, at 1,024 tokens (outside the traced lengths 16–64: the fit is checked).
- Knobs: every technique that applies works; tp/pp/ep and the "mtp" draft raise a ``ValueError`` naming
  the knob; without torch/transformers the error says ``pip install llmroof-widgets[trace]``.
"""

from __future__ import annotations

import numpy as np
import pytest

import llmroof_widgets as lr
from llmroof_widgets.engine import traced as traced_mod

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

pytestmark = pytest.mark.reference

HW = lr.Hardware(name="reference", memory_bytes=1e12, memory_bandwidth=1e12, peak_flops={"fp16": 1e15})
PROMPT = 1024
KNOWN = ["Llama-3.2-1B", "Qwen3-0.6B", "phi-2", "gpt2", "gemma-2-9b"]
# stabilityai/stablelm-2-1_6b shapes (its model card and config.json): LayerNorm, partial rotary 25 %,
# q/k/v biases, untied head — model_type "stablelm" is not in the analytic parser
STABLELM = {
    "architectures": ["StableLmForCausalLM"],
    "bos_token_id": 100257,
    "eos_token_id": 100257,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 5632,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 4096,
    "model_type": "stablelm",
    "num_attention_heads": 32,
    "num_hidden_layers": 24,
    "num_key_value_heads": 32,
    "partial_rotary_factor": 0.25,
    "rope_theta": 10000,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
    "use_qkv_bias": True,
    "vocab_size": 100352,
}

_TRACED: dict[str, object] = {}


def traced(key):
    if key not in _TRACED:
        _TRACED[key] = lr.load_model(key, trace=True)
    return _TRACED[key]


@pytest.fixture(scope="module", params=KNOWN)
def pair(request):
    key = request.param
    m = traced(key)
    kw = dict(batch_size=1, prompt_len=PROMPT, gen_len=2, logits="all", attention="full")
    return key, lr.analyze(key, HW, **kw), lr.analyze(m, HW, **kw)


def test_traced_marks(pair):
    key, ana, tr = pair
    assert tr.settings["path"] == "traced" and "path" not in ana.settings
    d = tr.to_dict()
    assert d["model"]["traced"] is True and d["model"]["trace_notes"]


def test_params_exact(pair):
    key, ana, tr = pair
    assert tr.params_total == ana.params_total, key


def test_matmul_flops(pair):
    key, ana, tr = pair
    assert tr.prefill.matmul_flops == pytest.approx(ana.prefill.matmul_flops, rel=5e-3), key
    assert tr.decode.matmul_flops == pytest.approx(ana.decode.matmul_flops, rel=5e-3), key


def test_kv_bytes(pair):
    key, ana, tr = pair
    assert tr.memory["kv_cache_prompt_bytes"] == ana.memory["kv_cache_prompt_bytes"], key
    assert tr.memory["kv_cache_bytes"] == ana.memory["kv_cache_bytes"], key


@pytest.mark.parametrize("key", ["Llama-3.2-1B", "gemma-2-9b"])
def test_serving_conventions_and_generation(key):
    # causal half of the scores, logits at the last position, a whole generation over growing caches
    # (gemma-2: half the layers' keys capped by their sliding window)
    kw = dict(batch_size=4, prompt_len=3000, gen_len=64)
    ana, tr = lr.analyze(key, HW, **kw), lr.analyze(traced(key), HW, **kw)
    assert tr.prefill.matmul_flops == pytest.approx(ana.prefill.matmul_flops, rel=5e-3)
    assert tr.decode.matmul_flops == pytest.approx(ana.decode.matmul_flops, rel=5e-3)
    # decode steps are memory-bound: weights + KV traffic agree; element-wise traffic inside the
    # modules' Python code (residual adds, rotary) is not traced, so times agree within a few %
    assert tr.generation["tpot_s"] == pytest.approx(ana.generation["tpot_s"], rel=0.03)
    assert tr.decode_step_times_s.shape == ana.decode_step_times_s.shape


def test_periodic_models_trace_small_copies():
    m = traced("Llama-3.2-1B")
    assert any("period 1" in n for n in m.traced.notes)
    g = traced("gemma-2-9b")  # alternating window / full layers: period 2
    assert any("period 2" in n for n in g.traced.notes)
    assert {lt.attention.window for lt in g.layer_types} == {None, 4096}
    assert sum(lt.count for lt in g.layer_types) == 42
    # first layers unlike the rest (Qwen2's max_window_layers: 2 full layers, then sliding ones) break every
    # period: traced in full, and equal to a direct count (the analytic parser reads no sliding layers here)
    cfg = dict(
        lr.load_model("Qwen2.5-0.5B").raw,
        num_hidden_layers=6,
        use_sliding_window=True,
        sliding_window=40,
        max_window_layers=2,
    )
    t = lr.load_model(cfg, trace=True)
    assert not any("period" in n for n in t.traced.notes)
    assert sorted((lt.count, lt.attention.window) for lt in t.layer_types) == [(2, None), (4, 40)]
    params, prefill, decode, elems = _direct(cfg)
    r = lr.analyze(t, HW, prompt_len=PROMPT, gen_len=2, logits="all", attention="full")
    assert r.params_total == params
    assert r.prefill.matmul_flops == pytest.approx(prefill, rel=5e-3)
    assert r.decode.matmul_flops == pytest.approx(decode, rel=5e-3)  # window layers attend 40 keys
    assert r.memory["kv_cache_prompt_bytes"] == elems * 2  # window layers keep their last 39 tokens


def _direct(cfg: dict):
    """Parameters, prefill / decode matmul FLOPs and cache elements counted on the model transformers builds."""
    config = transformers.AutoConfig.for_model(**cfg)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        with FlopCounterMode(display=False) as fc:
            out = model(input_ids=torch.zeros((1, PROMPT), dtype=torch.long, device="meta"), use_cache=True)
        prefill = fc.get_total_flops()
        cache = out.past_key_values
        elems = sum(layer.keys.numel() + layer.values.numel() for layer in cache.layers)
        with FlopCounterMode(display=False) as fc:
            model(input_ids=torch.zeros((1, 1), dtype=torch.long, device="meta"), past_key_values=cache, use_cache=True)
        decode = fc.get_total_flops()
    return params, prefill, decode, elems


def test_unknown_model_type_is_traced():
    m = lr.load_model(STABLELM, name="stablelm-2-1.6b")
    assert m.traced is not None and m.model_type == "stablelm"
    params, prefill, decode, elems = _direct(STABLELM)
    r = lr.analyze(m, HW, prompt_len=PROMPT, gen_len=2, logits="all", attention="full")
    assert r.params_total == params
    assert r.prefill.matmul_flops == pytest.approx(prefill, rel=5e-3)
    assert r.decode.matmul_flops == pytest.approx(decode, rel=5e-3)
    assert r.memory["kv_cache_prompt_bytes"] == elems * 2  # fp16 cache


def test_techniques_on_traced():
    m = traced("Llama-3.2-1B")
    base = lr.analyze(m, HW, prompt_len=512, gen_len=32)
    variants = dict(
        w_bits=4,
        kv_bits=8,
        group_size=128,
        flash_attention="ideal",
        fused=True,
        kv_keep_ratio=0.5,
        early_exit_fraction=0.5,
        sparsity="2:4",
        efficiency="calibrated",
    )
    for k, v in variants.items():
        r = lr.analyze(m, HW, prompt_len=512, gen_len=32, **{k: v})
        g = r.generation
        assert np.isfinite(g["ttft_s"]) and np.isfinite(g["tpot_s"]) and g["tpot_s"] > 0, k
        assert r.to_dict()["settings"]["path"] == "traced"
    q = lr.analyze(m, HW, prompt_len=512, gen_len=32, w_bits=4)
    assert q.memory["weights_bytes"] < base.memory["weights_bytes"]
    fl = lr.analyze(m, HW, prompt_len=512, gen_len=32, flash_attention="ideal")
    assert fl.prefill.bytes < base.prefill.bytes
    ev = lr.analyze(m, HW, prompt_len=512, gen_len=32, kv_keep_ratio=0.5)
    assert ev.memory["kv_cache_bytes"] < base.memory["kv_cache_bytes"]
    hw = lr.load_hardware("h100-sxm")
    off = lr.analyze(m, hw, prompt_len=512, gen_len=32, offload={"weights": 0.5})
    assert off.memory["host_weights_bytes"] > 0
    spec = lr.analyze(m, HW, prompt_len=512, gen_len=32, speculative=lr.Speculative("Llama-3.2-1B", 3, 0.7))
    assert spec.generation["speculative_tokens_per_round"] > 1


def test_sweep_on_traced():
    m = traced("Llama-3.2-1B")
    df = lr.sweep(m, HW, batch_size=[1, 8], prompt_len=[128, 512], gen_len=16)
    for _, row in df.iterrows():
        r = lr.analyze(m, HW, batch_size=int(row.batch_size), prompt_len=int(row.prompt_len), gen_len=16)
        assert row.ttft_s == pytest.approx(r.generation["ttft_s"], rel=1e-9)
        assert row.tpot_s == pytest.approx(r.generation["tpot_s"], rel=1e-9)


def test_knobs_that_do_not_apply():
    m = traced("Llama-3.2-1B")
    hw = lr.load_hardware("h100-sxm")
    for knob in ("tp", "pp"):
        with pytest.raises(ValueError, match=f"{knob} = 2 is not available on the traced path"):
            lr.analyze(m, hw, **{knob: 2})
    with pytest.raises(ValueError, match="mtp"):
        lr.analyze(m, HW, speculative=lr.Speculative("mtp", 2, 0.7))


def test_without_the_extra_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setattr(traced_mod, "_imports", lambda: None)
    with pytest.raises(ValueError, match=r"pip install llmroof-widgets\[trace\]"):
        lr.load_model(dict(STABLELM, hidden_size=1024))
