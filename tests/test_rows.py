"""Operator rows shared between layer types: ``Row.clone`` and the per-pass MLP memo of ``PassBuilder``.

Layer types of one pass with the same MLP spec (a hybrid's attention and recurrent layers) get the MLP rows
built once and copied; these tests check that the copies are complete, independent, and that a figure computed
the long way (building every layer type's MLP) equals the copied one.
"""

from __future__ import annotations

import numpy as np

import llmroof_widgets as lr
from llmroof_widgets.engine.ops import PassBuilder, Row
from llmroof_widgets.engine.options import make_options
from llmroof_widgets.engine.precision import Precision

HYBRID = {  # Qwen3-Next's layout at a small size: attention+moe and gated_deltanet+moe layer types share the MoE
    "model_type": "qwen3_next",
    "hidden_size": 256,
    "num_hidden_layers": 8,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "intermediate_size": 512,
    "vocab_size": 1000,
    "full_attention_interval": 4,
    "linear_num_key_heads": 4,
    "linear_num_value_heads": 8,
    "linear_key_head_dim": 32,
    "linear_value_head_dim": 32,
    "num_experts": 16,
    "num_experts_per_tok": 4,
    "moe_intermediate_size": 64,
    "shared_expert_intermediate_size": 64,
}


def test_clone_copies_every_slot():
    r = Row("op", "lt", 1, "matmul", 1.0, 1.0, 2.0, 3.0, 4.0, "fp16")
    for i, k in enumerate(Row.__slots__):
        if k != "terms":
            setattr(r, k, ("value", i))
    c = r.clone("other", 7)
    assert (c.layer_type, c.count) == ("other", 7)
    missing = [k for k in Row.__slots__ if k not in ("layer_type", "count", "terms") and getattr(c, k) != getattr(r, k)]
    assert missing == []


def _rows(model, **opts):
    return PassBuilder(
        model,
        Precision(16, 16, 16),
        batch=4,
        tokens=1,
        cached=512,
        logits_tokens=1,
        attention="causal",
        mla="absorbed",
        options=make_options(**opts),
        hardware=lr.load_hardware("h100-sxm"),
    ).build()


def _mlp_rows(rows, layer_type):
    names = ("router", "experts", "shared")
    return [r for r in rows if r.layer_type == layer_type and r.name.startswith(names)]


def test_shared_mlp_rows_equal_and_independent():
    m = lr.load_model(HYBRID)
    types = [lt.name for lt in m.layer_types]
    assert len(types) == 2
    for opts in ({}, {"sparsity": "2:4"}, {"offload": {"experts": 0.5}}, {"tp": 2}):
        rows = _rows(m, **opts)
        a, b = (_mlp_rows(rows, t) for t in types)
        assert [r.name for r in a] == [r.name for r in b] and len(a) >= 5
        for x, y in zip(a, b, strict=True):
            # storage options are applied once to each copy: equal figures, not doubled on one of them
            for f in ("flops", "weight_bytes", "activation_bytes", "kv_bytes", "host_bytes", "resident", "params"):
                assert getattr(x, f) == getattr(y, f), (opts, x.name, f)
            assert x.terms is not y.terms and x.flops_formula == y.flops_formula
            assert x.bytes_formula == y.bytes_formula
    # the counts are each layer type's own
    rows = _rows(m)
    for lt in m.layer_types:
        assert {r.count for r in _mlp_rows(rows, lt.name)} == {lt.count}


class _NoMemo(PassBuilder):
    """Builds every layer type's MLP rows itself (the long way)."""

    def _mlp(self, mlp):
        self.moe_mlp(mlp) if mlp.kind == "moe" else self.dense_mlp(mlp)


def test_shared_mlp_rows_match_building_each():
    m = lr.load_model(HYBRID)
    for opts in ({}, {"sparsity": 0.5, "offload": {"weights": 0.25}}, {"tp": 2, "ep": 2}):
        kw = dict(batch=4, tokens=1, cached=512, logits_tokens=1, attention="causal", mla="absorbed")
        args = (m, Precision(4, 16, 8))
        extra = dict(options=make_options(**opts), hardware=lr.load_hardware("h100-sxm"))
        fast, slow = PassBuilder(*args, **kw, **extra).build(), _NoMemo(*args, **kw, **extra).build()
        assert [(r.name, r.layer_type, r.count) for r in fast] == [(r.name, r.layer_type, r.count) for r in slow]
        for x, y in zip(fast, slow, strict=True):
            for f in ("flops", "matmul_flops", "weight_bytes", "activation_bytes", "kv_bytes", "host_bytes", "comm_s"):
                assert getattr(x, f) == getattr(y, f), (opts, x.name, f)
            assert (x.flops_formula, x.bytes_formula) == (y.flops_formula, y.bytes_formula)


def test_pass_time_equals_the_sum_of_row_times():
    """pass_time's inlined roofline arithmetic = Σ count × Roof.row_time, scalar and array rows, with offloaded bytes,
    collectives and fixed efficiencies."""
    import numpy as np

    from llmroof_widgets.engine.roofline import Roof, pass_time

    m = lr.load_model(HYBRID)
    hw = lr.load_hardware("h100-sxm")
    for eff, opts in (
        (None, {}),
        ({"compute": 0.6, "memory": 0.8, "communication": 0.5}, {"tp": 2, "offload": {"weights": 0.3}}),
    ):
        roof = Roof(hw, eff)
        for cached in (512, 512 + np.arange(7.0)):
            rows = PassBuilder(
                m,
                Precision(16, 16, 16),
                batch=4,
                tokens=1,
                cached=cached,
                logits_tokens=1,
                attention="causal",
                mla="absorbed",
                options=make_options(efficiency=eff, **opts),
                hardware=hw,
            ).build()
            want = sum(r.count * roof.row_time(r) for r in rows)
            np.testing.assert_allclose(pass_time(rows, roof), want, rtol=1e-12)


NEMOTRON_LIKE = {  # Mamba2 / attention / MLP-only / MoE blocks
    "model_type": "nemotron_h",
    "hidden_size": 256,
    "num_hidden_layers": 8,
    "hybrid_override_pattern": "M-M*EME*",
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "intermediate_size": 512,
    "vocab_size": 1000,
    "mamba_num_heads": 8,
    "mamba_head_dim": 32,
    "n_groups": 2,
    "ssm_state_size": 16,
    "n_routed_experts": 8,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 128,
    "moe_shared_expert_intermediate_size": 256,
}


def _figures(rows):
    return [
        (
            r.name,
            r.layer_type,
            r.count,
            *(
                np.asarray(getattr(r, f), dtype=float).tolist()
                for f in ("flops", "matmul_flops", "weight_bytes", "activation_bytes", "kv_bytes", "host_bytes")
            ),
            r.flops_formula,
            r.bytes_formula,
        )
        for r in rows
    ]


def test_decode_passes_sharing_length_independent_rows_equal_building_them():
    """A decode step and the decode steps of a generation share their MLP blocks and attention-free layers
    (PassBuilder(reuse=)): the second pass's rows equal those it builds on its own, under storage options."""
    hw = lr.load_hardware("h100-sxm")
    for cfg in (HYBRID, NEMOTRON_LIKE):
        m = lr.load_model(cfg)
        for opts in ({}, {"sparsity": "2:4", "offload": {"weights": 0.25, "kv_cache": 0.5}}, {"tp": 2}):
            o = make_options(**opts)
            for fraction in (1.0, 0.75):

                def build(cached, reuse, o=o, m=m, fraction=fraction):
                    kw = dict(batch=4, tokens=1, logits_tokens=1, attention="causal", mla="absorbed")
                    return PassBuilder(
                        m, Precision(8, 16, 8), cached=cached, options=o, hardware=hw, reuse=reuse, **kw
                    ).build(fraction)

                reuse: dict = {}
                first = build(300, reuse)
                shared = build(300 + np.arange(5.0), reuse)
                assert any(k != "mlp" for k in reuse)  # an attention-free layer was shared
                assert _figures(first) == _figures(build(300, None))
                assert _figures(shared) == _figures(build(300 + np.arange(5.0), None))


def test_analyze_equals_the_unshared_passes():
    """analyze()'s decode timeline (built with shared rows) equals passes built one by one."""
    from llmroof_widgets.engine.roofline import Roof, pass_time

    hw = lr.load_hardware("h100-sxm")
    m = lr.load_model(NEMOTRON_LIKE)
    r = lr.analyze(m, hw, batch_size=4, prompt_len=300, gen_len=40, offload={"weights": 0.3})
    roof = Roof(hw)
    assert len(r.decode_contexts) == 39
    for ctx, t in zip(r.decode_contexts, r.decode_step_times_s, strict=True):
        rows = PassBuilder(
            m,
            Precision(16, 16, 16),
            batch=4,
            tokens=1,
            cached=int(ctx) - 1,
            logits_tokens=1,
            attention="causal",
            mla="absorbed",
            options=make_options(offload={"weights": 0.3}),
            hardware=hw,
        ).build()
        assert np.isclose(t, pass_time(rows, roof), rtol=1e-12)
