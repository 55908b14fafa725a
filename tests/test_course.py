"""Course helpers: lr.check / lr.Scenario against values derived by hand for a tiny Llama config."""

import math

import pytest
from test_formulas import evaluate

import llmroof_widgets as lr
from llmroof_widgets import Hardware
from llmroof_widgets.course import QUANTITIES, Check, Scenario, check, pinned_scenario, unpin

# A tiny Llama: h = 64, 2 layers, 4 heads of d = 16, 2 KV heads, MLP 128, vocab 256 (untied).
TINY = dict(
    model_type="llama",
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    vocab_size=256,
    max_position_embeddings=512,
    hidden_act="silu",
    tie_word_embeddings=False,
    _name_or_path="tiny-llama",
)
TOY = Hardware(name="toy", memory_bytes=1e9, memory_bandwidth=1e11, peak_flops={"fp16": 1e13})
# batch B = 2, prompt P = 8, generate G = 4, everything 16-bit (2 B)
SC = dict(model=TINY, hardware=TOY, batch_size=2, prompt_len=8, gen_len=4)

# Hand-derived (README conventions: a multiply-accumulate is 2 FLOPs; bytes = weights + inputs + outputs):
HAND = {
    # q_proj, prefill: N = B·P = 16 tokens, 64 → 64
    ("flops", "q_proj", "prefill"): 2 * 16 * 64 * 64,  # 131 072
    ("bytes", "q_proj", "prefill"): 64 * 64 * 2 + 16 * 64 * 2 + 16 * 64 * 2,  # 12 288
    ("arithmetic_intensity", "q_proj", "prefill"): (2 * 16 * 64 * 64) / 12288,  # 10.67
    # roofline time: max(131 072 / 1e13, 12 288 / 1e11) = 1.2288e-7 s (memory-bound)
    ("time_s", "q_proj", "prefill"): 12288 / 1e11,
    # q_proj, decode: N = B = 2 tokens
    ("flops", "q_proj", "decode"): 2 * 2 * 64 * 64,  # 16 384
    ("bytes", "q_proj", "decode"): 64 * 64 * 2 + 2 * 64 * 2 + 2 * 64 * 2,  # 8 704
    # attn_score, decode: one query attends 8 cached + itself = 9 keys per head
    ("flops", "attn_score", "decode"): 2 * 2 * 4 * 16 * 9,  # 2 304
    # Q B·H·d·2 + K B·Hkv·keys·d·2 + scores B·H·keys·2
    ("bytes", "attn_score", "decode"): 2 * 4 * 16 * 2 + 2 * 2 * 9 * 16 * 2 + 2 * 4 * 9 * 2,  # 1 552
    # lm_head, prefill (logits at the last position only): 2 sequences × 1 position, 64 → 256
    ("flops", "lm_head", "prefill"): 2 * 2 * 64 * 256,  # 65 536
    ("bytes", "lm_head", "prefill"): 64 * 256 * 2 + 2 * 64 * 2 + 2 * 256 * 2,  # 34 048
}
# KV cache after the last step: 2 (K, V) · 2 layers · 2 KV heads · 16 · 2 B = 256 B per token,
# × batch 2 × (P + G − 1 = 11 tokens)
KV_CACHE = 256 * 2 * 11
# parameters: embed 256·64; per layer 2 norms (64 each) + q, o (64·64) + k, v (64·32) + 3 MLP (64·128);
# final norm 64; lm_head 256·64
PARAMS = 256 * 64 + 2 * (2 * 64 + 2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128) + 64 + 256 * 64


@pytest.fixture(autouse=True)
def _no_pin():
    unpin()
    yield
    unpin()


@pytest.mark.parametrize("key", list(HAND))
def test_hand_values_are_correct(key):
    quantity, op, phase = key
    c = check(HAND[key], quantity=quantity, op=op, phase=phase, scenario=SC)
    assert c.ok is True and c.status == "correct", repr(c)
    assert math.isclose(c.expected, HAND[key], rel_tol=1e-12)
    assert "correct" in repr(c) and "correct" in c._repr_html_()


def test_model_level_quantities():
    assert check(KV_CACHE, quantity="kv_cache_bytes", scenario=SC).ok
    assert check(256, quantity="kv_bytes_per_token", scenario=SC).ok
    assert check(PARAMS, quantity="params_total", scenario=SC).ok
    assert check(2 * PARAMS, quantity="weights_bytes", scenario=SC).ok
    # the operator's own slices: q_proj owns 64·64 parameters, lm_head reads its 256·64·2 B of weights
    assert check(64 * 64, quantity="params_total", op="q_proj", scenario=SC).ok
    assert check(256 * 64 * 2, quantity="weights_bytes", op="lm_head", scenario=SC).ok
    # k_proj writes its output to the KV cache: N·out·2 B = 16·32·2
    assert check(16 * 32 * 2, quantity="kv_cache_bytes", op="k_proj", scenario=SC).ok


def test_answers_come_from_the_engine():
    import llmroof_widgets as lr

    d = lr.analyze(TINY, TOY, batch_size=2, prompt_len=8, gen_len=4).to_dict()
    for quantity, key in (("ttft_s", "ttft_s"), ("tpot_s", "tpot_s")):
        assert check(d["generation"][key], quantity=quantity, scenario=SC, tolerance=0).ok
    for q in ("flops", "matmul_flops", "bytes", "arithmetic_intensity", "time_s"):
        assert check(d["decode"][q], quantity=q, phase="decode", scenario=SC, tolerance=0).ok


def test_off_by_with_sign():
    exact = HAND[("flops", "q_proj", "prefill")]
    hi = check(exact * 1.2, quantity="flops", op="q_proj", scenario=SC)
    assert hi.ok is False and hi.status == "too high" and math.isclose(hi.rel_error, 0.2)
    assert "off by +20 %" in repr(hi) and "too high" in repr(hi)
    lo = check(exact * 0.5, quantity="flops", op="q_proj", scenario=SC)
    assert lo.status == "too low" and "off by −50 % (too low" in repr(lo)
    # the answer is not given away when the student is off
    assert "131.1 kFLOP" not in repr(hi) and "131.1 kFLOP" in repr(
        check(exact, quantity="flops", op="q_proj", scenario=SC)
    )
    # tolerance
    assert check(exact * 1.009, quantity="flops", op="q_proj", scenario=SC).ok
    assert not check(exact * 1.02, quantity="flops", op="q_proj", scenario=SC).ok
    assert check(exact * 1.02, quantity="flops", op="q_proj", scenario=SC, tolerance=0.05).ok
    assert bool(check(exact, quantity="flops", op="q_proj", scenario=SC)) is True


def test_no_answer_yet():
    for placeholder in (None, ...):
        c = check(placeholder, quantity="bytes", op="lm_head", scenario=SC)
        assert c.ok is None and c.status == "no answer yet" and not c
        assert "no answer yet" in repr(c) and "no answer yet" in c._repr_html_()


def test_formula_only_when_asked():
    c = check(1, quantity="flops", op="q_proj", scenario=SC)
    assert "formula" not in repr(c) and "formula" not in c._repr_html_()
    assert "2·N·in·out" in c.formula  # the engine's formula string
    shown = check(1, quantity="flops", op="q_proj", scenario=SC, show_formula=True)
    assert "2·N·in·out = 2·16·64·64" in repr(shown)
    assert "2·N·in·out" in shown._repr_html_()
    # the KV cache's formula: layers · kv_heads · (d_k + d_v) · tokens · batch · bytes, with numbers
    kv = check(None, quantity="kv_cache_bytes", scenario=SC, show_formula=True).formula
    assert "decoder: layers·kv_heads·(d_k + d_v)·tokens·batch·2 B = 2·2·32·11·2·2" in kv


def test_pinned_scenario_and_qualified_op():
    with pytest.raises(ValueError, match="pin"):
        check(1, quantity="flops", op="q_proj")
    sc = Scenario(**SC).pin()
    assert pinned_scenario() is sc and "[pinned]" in repr(sc)
    assert check(HAND[("flops", "q_proj", "decode")], quantity="flops", op="decoder.q_proj", phase="decode").ok
    assert sc.check(KV_CACHE, "kv_cache_bytes").ok
    assert check(PARAMS, quantity="params_total", scenario=Scenario(**SC)).ok  # explicit beats pinned


def test_errors_list_what_is_allowed():
    with pytest.raises(ValueError) as e:
        check(1, quantity="flop", scenario=SC)
    assert all(q in str(e.value) for q in QUANTITIES)
    with pytest.raises(ValueError) as e:
        check(1, quantity="flops", op="qproj", scenario=SC)
    assert "q_proj" in str(e.value) and "lm_head" in str(e.value) and "decoder.q_proj" in str(e.value)
    with pytest.raises(ValueError, match="not defined for a single operator"):
        check(1, quantity="ttft_s", op="q_proj", scenario=SC)
    with pytest.raises(ValueError, match="phase"):
        check(1, quantity="flops", op="q_proj", phase="generate", scenario=SC)
    with pytest.raises(TypeError):
        check("12", quantity="flops", op="q_proj", scenario=SC)
    with pytest.raises(TypeError):
        Scenario(model="llama-2-7b")
    with pytest.raises(ValueError):  # a bad setting fails at the teacher's pin(), from the engine
        Scenario(model=TINY, hardware=TOY, batch_size=0).pin()


def test_html_repr_is_escaped():
    c = Check(
        value=1.0,
        expected=2.0,
        quantity="flops",
        op="<script>x</script>",
        phase="prefill",
        what="<img src=x onerror=alert(1)>",
        formula="<b>f</b>",
        tolerance=0.01,
        show_formula=True,
        scenario=None,
    )
    h = c._repr_html_()
    assert "<script>" not in h and "<img" not in h and "<b>f" not in h
    assert "&lt;script&gt;" in h and "&lt;img" in h


KV_SCENARIOS = [
    # (scenario, what the formula must show): a format name, a bit width, MLA's latent, sliding windows,
    # tensor / expert / pipeline parallelism, eviction and offloading
    (dict(model=TINY, hardware=TOY, kv_bits="fp8_e4m3", prompt_len=8, gen_len=4), "·1 B"),
    (dict(model=TINY, hardware=TOY, kv_bits=8, prompt_len=8, gen_len=4), "·1 B"),
    (dict(model="deepseek-ai/DeepSeek-V3", hardware="h100-sxm", prompt_len=64, gen_len=4), "(kv_lora + rope)"),
    (dict(model="deepseek-ai/DeepSeek-V2-Lite", hardware="h100-sxm", kv_bits="fp8_e4m3", tp=2), "(kv_lora + rope)"),
    (dict(model="google/gemma-2-9b", hardware="h100-sxm", prompt_len=5000, gen_len=4), "min(tokens, window − 1)"),
    (dict(model="meta-llama/Llama-3.1-8B", hardware="h100-sxm", tp=4, pp=2, batch_size=4), "⌈L/pp⌉/L"),
    (dict(model="Qwen/Qwen1.5-MoE-A2.7B", hardware="h100-sxm", ep=2, batch_size=4), "/EP"),
    (
        dict(model="meta-llama/Llama-3.1-8B", hardware="h100-sxm", kv_keep_ratio=0.5, offload={"kv_cache": 0.25}),
        "kept tokens",
    ),
]


@pytest.mark.parametrize("scenario, shows", KV_SCENARIOS, ids=[str(i) for i in range(len(KV_SCENARIOS))])
def test_kv_formulas_evaluate_to_the_answer(scenario, shows):
    """kv_cache_bytes / kv_bytes_per_token: any KV format, MLA's latent, windows, parallelism; the numbers
    substituted in the formula multiply and add to the expected value."""
    for quantity in ("kv_cache_bytes", "kv_bytes_per_token"):
        c = check(None, quantity=quantity, scenario=scenario, show_formula=True)
        if quantity == "kv_cache_bytes":
            assert shows in c.formula
        value, _ = evaluate(c.formula.rpartition(" = ")[2])
        assert value == pytest.approx(c.expected, rel=1e-9), c.formula
        assert check(value, quantity=quantity, scenario=scenario, tolerance=1e-9).ok


def test_kv_format_name_and_mla_latent():
    """Issue 13: a format name for kv_bits raised TypeError; DeepSeek's latent cache showed the MHA formula."""
    c = check(None, quantity="kv_cache_bytes", scenario=dict(SC, kv_bits="fp8_e4m3"), show_formula=True)
    assert c.expected == KV_CACHE / 2 and "·1 B = 2·2·32·11·2·1" in c.formula
    d = dict(model="deepseek-ai/DeepSeek-V3", hardware="h100-sxm", prompt_len=64, gen_len=4)
    f = check(None, quantity="kv_cache_bytes", scenario=d, show_formula=True).formula
    m = lr.load_model("deepseek-ai/DeepSeek-V3")
    latent = m.layer_types[0].attention.kv_lora_rank + m.layer_types[0].attention.qk_rope_head_dim
    assert latent == 576 and "kv_heads" not in f and f"·{latent}·67·1·2" in f  # 64 + 4 − 1 tokens, batch 1


@pytest.mark.parametrize(
    "scenario, op",
    [
        (SC, "k_proj"),
        (SC, "lm_head"),
        (
            dict(
                model="deepseek-ai/DeepSeek-V2-Lite", hardware="h100-sxm", tp=2, mla="naive", prompt_len=32, gen_len=2
            ),
            "moe.kv_b_proj",
        ),
        (dict(model="Qwen/Qwen2.5-0.5B", hardware="h100-sxm", tp=2, prompt_len=32, gen_len=2), "attn_allreduce"),
    ],
)
def test_operator_formulas_evaluate_to_the_answer(scenario, op):
    """Each operator quantity's formula (FLOPs, matmul FLOPs, bytes and their weights / KV parts, a collective's
    time) has numbers that multiply and add to the expected value."""
    for phase in ("prefill", "decode"):
        for quantity in ("flops", "matmul_flops", "bytes", "weights_bytes", "kv_cache_bytes", "time_s"):
            c = check(None, quantity=quantity, op=op, phase=phase, scenario=scenario, show_formula=True)
            if quantity == "time_s" and "allreduce" not in op:
                continue  # max(FLOPs / peak, bytes / bandwidth), shown in readable units
            if quantity == "bytes" and "allreduce" in op:
                continue  # a collective moves no device-memory bytes; its formula is the message
            value, _ = evaluate(c.formula.rpartition(" = ")[2])
            assert value == pytest.approx(c.expected, rel=1e-9, abs=0), (quantity, phase, c.formula)
