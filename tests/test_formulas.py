"""Every displayed formula evaluates to the figure beside it.

For every catalog model under ten combined technique settings (quantized weights and activations, tensor, expert and
pipeline parallelism, FlashAttention ideal and tiled, fused element-wise operators, KV bits by width and by
format name, MLA absorbed and naive, sparsity, offloading, KV eviction), for every operator of the prefill
and of the first decode step:

1. the operator's terms (``Row.terms``, see ``engine/terms.py``) sum to its figures (rel 1e-9): FLOPs,
   matmul FLOPs, weight / activation / KV bytes, and a collective's message bytes and α–β seconds;
2. the displayed strings (``flops_formula``, ``bytes_formula``, ``time_formula``) — their right-hand side
   parsed by the small arithmetic evaluator below (no ``eval``) — multiply and add to the same figures:
   exactly (rel 1e-9) when every substituted number is an integer, within the display rounding (6
   significant digits: 5e-6 per rounded number) otherwise.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import llmroof_widgets as lr
from llmroof_widgets.engine.models import list_models
from llmroof_widgets.engine.ops import Row
from llmroof_widgets.engine.terms import Div, Terms, num, product, rhs

HW = "h100-sxm"  # has an interconnect (TP/EP/PP collectives) and a per-SM on-chip memory (tiled FlashAttention)
BASE = dict(batch_size=2, prompt_len=48, gen_len=3)
SETTINGS = [  # each technique at least once, combined to keep the sweep short (every catalog model × these)
    {},
    {"w_bits": 4, "tp": 2},
    {"w_bits": 8, "a_bits": 8, "tp": 4, "batch_size": 4},
    {"w_bits": 4, "group_size": 128, "flash_attention": "tiled", "kv_bits": "fp8_e4m3"},
    {"flash_attention": "ideal", "kv_bits": 8, "fused": True},
    {"kv_bits": "fp8_e4m3", "logits": "all", "attention": "full"},
    {"mla": "naive", "ep": 2, "batch_size": 4},  # MoE models only (EP needs experts)
    {"tp": 2, "ep": 2, "batch_size": 4, "flash_attention": "tiled", "fused": True},
    {"sparsity": "2:4", "pp": 2},
    {"sparsity": 0.5, "offload": {"weights": 0.5, "kv_cache": 0.25}, "kv_keep_ratio": 0.5, "kv_budget": 40},
]
MODELS = list_models()


# -- a tiny safe evaluator for the substituted right-hand side -------------------------------------
_TOKEN = re.compile(r"\s*(?:(?P<num>-?(?:\d{1,3}(?: \d{3})+(?![\d.e])|\d+(?:\.\d+)?(?:e[+-]?\d+)?))|(?P<op>[+·×/()]))")


def tokens(text: str) -> list[tuple[str, str]]:
    """Numbers (thousands grouped by spaces, decimals, exponents, a sign: a fitted coefficient may be negative)
    and the operators + · × / ( )."""
    out, pos, text = [], 0, text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"unexpected text at {pos}: {text[pos : pos + 20]!r} in {text!r}")
        out.append(("num", m["num"]) if m["num"] is not None else ("op", m["op"]))
        pos = m.end()
    return out


def evaluate(text: str) -> tuple[float, int]:
    """(value of the arithmetic ``text``, how many of its numbers are not plain integers)."""
    toks = tokens(text)
    i = 0
    rounded = 0

    def peek():
        return toks[i] if i < len(toks) else ("end", "")

    def factor():
        nonlocal i, rounded
        kind, v = peek()
        i += 1
        if kind == "num":
            x = float(v.replace(" ", ""))
            rounded += "." in v or "e" in v  # a decimal or exponent: shown to 6 significant digits
            return x
        if v == "(":
            x = expr()
            if peek() != ("op", ")"):
                raise ValueError(f"missing ) in {text!r}")
            i += 1
            return x
        raise ValueError(f"expected a number in {text!r}, got {v!r}")

    def term():
        nonlocal i
        x = factor()
        while peek()[1] in ("·", "×", "/"):
            op = peek()[1]
            i += 1
            y = factor()
            x = x / y if op == "/" else x * y
        return x

    def expr():
        nonlocal i
        x = term()
        while peek() == ("op", "+"):
            i += 1
            x = x + term()
        return x

    value = expr()
    if i != len(toks):
        raise ValueError(f"trailing text in {text!r}")
    return value, rounded


def _close(shown: float, figure: float, rel: float) -> bool:
    return abs(shown - figure) <= rel * max(abs(figure), 1e-300) or shown == figure


# -- the checks ------------------------------------------------------------------------------------
def _figures(r: Row) -> list[tuple[str, str, float, tuple[str, ...]]]:
    """(quantity, displayed formula, figure, categories) for each formula of a row."""
    if r.kind == "communication":
        return [
            ("flops", r.flops_formula, r.flops, ("matmul", "flops")),
            ("message", r.bytes_formula, r.comm_bytes, ("message",)),
            ("time", r.time_formula, r.comm_s, ("time",)),
        ]
    return [
        ("flops", r.flops_formula, r.flops, ("matmul", "flops")),
        ("bytes", r.bytes_formula, r.bytes, ("weight", "activation", "kv")),
    ]


def row_problems(r: Row, where: str) -> list[str]:
    """Every way the row's formulas disagree with its figures ([] when they agree)."""
    bad = []
    if r.terms is not None:
        t = r.terms
        for field, cats in (
            ("matmul_flops", ("matmul",)),
            ("weight_bytes", ("weight",)),
            ("activation_bytes", ("activation",)),
            ("kv_bytes", ("kv",)),
        ):
            if not _close(float(t.total(*cats)), float(getattr(r, field)), 1e-9):
                bad.append(f"{where}: terms of {field} sum to {t.total(*cats)!r}, the row says {getattr(r, field)!r}")
    for q, formula, figure, cats in _figures(r):
        if r.terms is not None and not _close(float(r.terms.total(*cats)), float(figure), 1e-9):
            bad.append(f"{where}: {q} terms sum to {r.terms.total(*cats)!r}, the figure is {figure!r}")
        if not formula:
            bad.append(f"{where}: no {q} formula")
            continue
        try:
            shown, rounded = evaluate(rhs(formula))
        except ValueError as e:
            bad.append(f"{where}: {q} formula does not parse ({e})")
            continue
        tol = 1e-9 + rounded * 5.01e-6
        if not _close(shown, float(figure), tol):
            bad.append(f"{where}: {q} formula {formula!r} evaluates to {shown!r}, the figure is {float(figure)!r}")
    return bad


_results: dict = {}


def analyses(setting: dict):
    """(model, Result or None) for every catalog model under one setting (None: the engine rejects it)."""
    key = repr(sorted(setting.items()))
    if key not in _results:
        out = []
        for name in MODELS:
            try:
                out.append((name, lr.analyze(name, HW, **{**BASE, **setting})))
            except ValueError:
                out.append((name, None))  # e.g. a TP degree that does not divide the heads, EP on a dense model
        _results[key] = out
    return _results[key]


@pytest.mark.parametrize("setting", SETTINGS, ids=[repr(s) or "plain" for s in SETTINGS])
def test_every_formula_evaluates_to_its_figure(setting):
    bad, checked = [], 0
    for name, res in analyses(setting):
        if res is None:
            continue
        for phase in (res.prefill, res.decode):
            for r in phase.rows:
                where = f"{name} {phase.name} {r.layer_type}.{r.name}"
                # a row built with a formula= closure (no terms) is held to its displayed strings alone
                bad += row_problems(r, where)
                checked += len(_figures(r))
    assert not bad, f"{len(bad)} of {checked} formulas disagree:\n" + "\n".join(bad[:25])
    assert checked > 1000


def test_settings_reach_every_catalog_model_and_operator_kind():
    """The sweep above is not vacuous: most (model, setting) pairs run, and every special operator occurs."""
    ran = [sum(res is not None for _, res in analyses(s)) for s in SETTINGS]
    assert sum(ran) >= 0.75 * len(SETTINGS) * len(MODELS) and min(ran) >= 5, ran
    names = {
        r.name for s in SETTINGS for _, res in analyses(s) if res for ph in (res.prefill, res.decode) for r in ph.rows
    }
    for op in (
        "embed_tokens",
        "embed_allreduce",
        "qkv_proj",
        "q_proj",
        "qk_norm",
        "kv_b_proj",
        "q_absorb",
        "v_absorb",
        "flash_attention",
        "attn_score",
        "attn_value",
        "router",
        "experts_gate_up",
        "experts_down",
        "experts_combine",
        "shared_gate_up",
        "ep_dispatch",
        "ep_combine",
        "attn_allreduce",
        "logits_allgather",
        "pp_send",
        "fc1",
        "fc2",
        "lm_head",
        "indexer_scores",  # DeepSeek-V3.2's sparse indexer
        "altup_predict_mix",  # Gemma-3n
        "embed_tokens_per_layer",
        "altup_correct",
        "conv1d",  # recurrent and convolution mixers of the hybrid models
        "gdn_chunk_scan",
        "gdn_recurrent_step",
        "ssm_chunk_scan",
        "ssm_recurrent_step",
        "selective_scan",
        "lightning_block_scan",
        "lightning_recurrent_step",
    ):
        assert op in names, op


@pytest.mark.parametrize(
    "model, setting, op, contains",
    [
        ("Qwen/Qwen2.5-7B", {}, "q_proj", "bias out·2 B"),  # biased q/k/v
        ("facebook/opt-125m", {}, "fc1", "bias out·2 B"),
        ("microsoft/phi-2", {}, "lm_head", "bias out·2 B"),
        ("Qwen/Qwen1.5-MoE-A2.7B", {}, "router", "softmax + top-k 5·N·E"),
        ("deepseek-ai/DeepSeek-V3", {}, "router", "score bias E·2 B"),
        ("deepseek-ai/DeepSeek-V3", {"tp": 2}, "q_absorb", "W_UK H·nope·kv_lora"),
        ("Qwen/Qwen1.5-MoE-A2.7B", {}, "experts_combine", "combined output N·h·2 B"),
        ("microsoft/Phi-3-mini-4k-instruct", {"kv_bits": 8}, "qkv_proj", "output k, v (to KV cache) N·kv·1 B"),
        ("meta-llama/Llama-3.1-8B", {"tp": 2}, "embed_tokens", "rows N·h·2 B/TP"),
        ("Qwen/Qwen3-8B", {"tp": 2}, "qk_norm", "weights"),
    ],
)
def test_the_terms_the_issue_found_missing_are_shown(model, setting, op, contains):
    """The operators whose formulas used to leave a term out show it now (and still evaluate to the figure)."""
    res = lr.analyze(model, HW, **{**BASE, **setting})
    rows = [r for r in res.decode.rows if r.name == op]
    assert rows, op
    r = rows[0]
    assert contains in r.flops_formula + " | " + r.bytes_formula
    assert row_problems(r, op) == []


def test_collectives_show_their_alpha_beta_time_with_numbers():
    res = lr.analyze("meta-llama/Llama-3.1-8B", HW, tp=2, batch_size=2, prompt_len=48, gen_len=3)
    hw = res.hardware
    r = next(r for r in res.decode.rows if r.name == "attn_allreduce")
    f = r.time_formula
    assert f.startswith("bandwidth 2·(n−1)/n·M/β + latency 2·(n−1)·α")
    # the substituted side names the message, the link bandwidth and the latency of this device
    msg = 2 * 4096 * 2  # N = 2 tokens · h = 4096 · 2 bytes
    assert rhs(f) == f"2·1/2·{num(msg)}/{num(hw.interconnect_bandwidth)} + 2·1·{num(hw.interconnect_latency_s)}"
    assert evaluate(rhs(f))[0] == pytest.approx(r.comm_s, rel=1e-9)
    assert r.bytes_formula == "layer output N·h·2 B = 2·4 096·2"
    # the exported row carries it; with a communication efficiency it divides by it, as the time does
    res = lr.analyze("meta-llama/Llama-3.1-8B", HW, tp=2, efficiency={"communication": 0.8}, prompt_len=48, gen_len=3)
    op = next(o for o in res.to_dict()["decode"]["ops"] if o["name"] == "attn_allreduce")
    assert "/efficiency" in op["time_formula"]
    assert evaluate(rhs(op["time_formula"]))[0] == pytest.approx(op["communication_time_s"], rel=1e-9)
    plain = next(o for o in res.to_dict()["decode"]["ops"] if o["name"] == "o_proj")
    assert plain["time_formula"] == ""
    # calibrated: the bandwidth terms at the fitted bus factor plus the fitted latency of each direct hop
    res = lr.analyze("meta-llama/Llama-3.1-8B", HW, tp=2, pp=2, efficiency="calibrated", prompt_len=48, gen_len=3)
    for op in (o for o in res.to_dict()["decode"]["ops"] if o["kind"] == "communication"):
        value, rounded = evaluate(rhs(op["time_formula"]))
        assert "bus factor" in op["time_formula"] and "direct hops" in op["time_formula"]
        assert value == pytest.approx(op["communication_time_s"], rel=1e-9 + rounded * 5.01e-6), op["name"]


def test_sparse_storage_factor_is_a_term():
    res = lr.analyze("meta-llama/Llama-3.1-8B", HW, sparsity="2:4", **BASE)
    r = next(r for r in res.decode.rows if r.name == "q_proj")
    assert "s = 2:4 sparse" in r.bytes_formula and "·0.5625" in rhs(r.bytes_formula)
    assert row_problems(r, "q_proj") == []


# -- the term machinery itself -----------------------------------------------------------------------
def test_terms_sum_render_and_scale():
    t = Terms()
    assert t.add("matmul", "", 2.0, ("N", 3), ("in", 4), ("out", 5)) == 120.0
    assert t.add("flops", "bias", ("N", 3), ("out", 5)) == 15.0
    t.add("weight", "weights", ("in", 4), ("out", 5), ("2 B", 2.0))
    t.add("activation", "rows", ("N", 3), Div(("TP", 2)))
    t.note("flops", "per device")
    assert t.render("flops") == "2·N·in·out + bias N·out  (per device) = 2·3·4·5 + 3·5"
    assert t.render("bytes") == "weights in·out·2 B + rows N/TP = 4·5·2 + 3/2"
    assert t.render("time") == "none = 0"
    assert t.totals()["matmul"] == 120.0 and t.total("matmul", "flops") == 135.0
    assert t.total("weight", "activation") == 41.5
    t.scale("weight", ("s", 0.5))
    assert t.totals()["weight"] == 20.0 and t.render("bytes").endswith("4·5·2·0.5 + 3/2")
    with pytest.raises(ValueError, match="term category must be one of"):
        t.add("bytes", "x", 1)
    assert product((2.0, ("a", 3), Div(("b", 4)))) == 1.5
    # arrays broadcast (a whole generation's decode steps); their formulas are not shown per step
    assert np.array_equal(product((("N", np.array([1.0, 2.0])), 3)), [3.0, 6.0])
    assert num(np.array([1.0])) == "…" and num(4096) == "4 096" and num(0.1234567) == "0.123457"


def test_evaluator_reads_the_rendered_numbers_and_rejects_anything_else():
    assert evaluate("2·4 096·4 096 + 4 096·2") == (2 * 4096 * 4096 + 4096 * 2, 0)
    assert evaluate("2·1/2·16 384/900 000 000 000 + 2·1·5e-06") == (
        pytest.approx(16384 / 9e11 + 1e-5, rel=1e-12),
        1,
    )
    assert evaluate("(1 + 2)·3") == (9.0, 0)
    assert evaluate("2·-1.5 + 4") == (1.0, 1)
    assert evaluate("1.5·2") == (3.0, 1)
    assert evaluate("1.23457e+15·2") == (2.46914e15, 1)  # an exponent: a rounded display
    for bad in ("__import__('os')", "2 ** 3", "2·", "(2 + 3", "2 3", "x"):
        with pytest.raises(ValueError):
            evaluate(bad)


def test_a_row_built_with_a_formula_closure_still_shows_it():
    """Operators written the older way (``formula=`` closure) keep working; the sweep above would report them."""
    r = Row("custom", "model", 1, "elementwise", 6.0, 0.0, 0.0, 8.0, 0.0, "vector", lambda: ("2·3 = 6", "8 = 8"))
    assert (r.flops_formula, r.bytes_formula, r.time_formula) == ("2·3 = 6", "8 = 8", "")
    assert row_problems(r, "custom") == []
    r.flops = 7.0
    assert row_problems(r, "custom") and "evaluates to 6.0" in row_problems(r, "custom")[0]
    r.add_term("flops", "extra", 2.0)  # without terms the field still moves
    assert r.flops == 9.0


def test_vision_encoder_formulas_evaluate_to_their_figures():
    """The encode phase of every vision-language catalog model (one image, plain and tiled FlashAttention)."""
    from llmroof_widgets.engine.models import load_model

    vlms = [name for name in MODELS if getattr(load_model(name), "vision", None) is not None]
    assert vlms
    bad = []
    for name in vlms:
        for setting in ({}, {"flash_attention": "tiled", "fused": True}):
            res = lr.analyze(name, HW, images=1, **{**BASE, **setting})
            assert res.encode is not None and res.encode.rows
            for r in res.encode.rows:
                bad += row_problems(r, f"{name} encode {r.layer_type}.{r.name}")
    assert not bad, "\n".join(bad[:25])


def test_traced_model_formulas_evaluate_to_their_figures():
    """A model_type the analytic parser does not know is traced with FlopCounterMode: its rows have terms too."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from test_traced import STABLELM

    cfg = {**STABLELM, "num_hidden_layers": 2}
    bad = []
    for setting in ({}, {"flash_attention": "ideal", "fused": True, "kv_bits": 8}):
        res = lr.analyze(cfg, HW, **{**BASE, **setting})
        assert res.model.traced is not None
        for ph in (res.prefill, res.decode):
            for r in ph.rows:
                assert r.terms is not None
                bad += row_problems(r, f"traced {ph.name} {r.layer_type}.{r.name}")
    assert not bad, "\n".join(bad[:25])
