"""Pure state-space models (Mamba, falcon-mamba, Mamba2) and Bamba: catalog figures checked by hand, the memory of a
model without any attention layer, the knobs that cannot apply to it, and serving it.

(Exactness against transformers: the catalog models in ``test_reference_hybrid.py``, small models of each family in
``test_hybrid.py``.)
"""

from __future__ import annotations

import math

import pytest

import llmroof_widgets as lr
from llmroof_widgets.engine.families_ssm import ATTENTION_KNOBS

H100 = "h100-sxm"
HW = lr.Hardware(
    name="ref", memory_bytes=80e9, memory_bandwidth=2e12, peak_flops={"fp16": 1e15}, interconnect_bandwidth=4e11
)
MAMBA = {
    "model_type": "mamba",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "vocab_size": 300,
    "state_size": 8,
    "conv_kernel": 4,
    "expand": 2,
    "time_step_rank": 8,
}


def test_catalog_models_and_their_published_counts():
    # the model cards' counts (Mamba-Codestral: 7,285,403,648; Bamba: 9.78B) and the models' names
    assert lr.load_model("mamba-codestral-7b").num_layers == 64
    counts = {
        k: lr.analyze(k, H100, prompt_len=64, gen_len=2).params_total
        for k in ("mamba-2.8b", "mamba-130m", "falcon-mamba-7b", "mamba-codestral-7b", "bamba-9b")
    }
    assert counts["mamba-codestral-7b"] == 7_285_403_648
    assert counts["bamba-9b"] == pytest.approx(9.78e9, rel=5e-4)
    assert counts["mamba-2.8b"] == pytest.approx(2.8e9, rel=0.02)
    assert counts["mamba-130m"] == pytest.approx(130e6, rel=0.01)
    assert counts["falcon-mamba-7b"] == pytest.approx(7.27e9, rel=1e-3)  # d_inner 8192 (intermediate_size), not 16·h
    # by hand, mamba-2.8b: embedding (tied) + per layer norm, in_proj, conv (+bias), x_proj, dt_proj (+bias),
    # A_log, D, out_proj + final norm
    h, d, s, r, k, v, n = 2560, 5120, 16, 160, 4, 50280, 64
    layer = h + h * 2 * d + d * (k + 1) + d * (r + 2 * s) + r * d + d + d * s + d + d * h
    assert counts["mamba-2.8b"] == v * h + n * layer + h


def test_attention_free_memory_is_the_recurrent_state():
    r = lr.analyze("mamba-2.8b", H100, batch_size=4, prompt_len=2048, gen_len=64)
    m = r.memory
    assert m["kv_cache_bytes"] == m["kv_cache_prompt_bytes"] == m["kv_bytes_per_token"] == 0
    # per sequence and layer: the conv's last 4 inputs of 5120 channels (fp16) + the 5120 × 16 SSM state (fp32)
    assert m["recurrent_state_bytes"] == 4 * 64 * (5120 * 4 * 2 + 5120 * 16 * 4)
    # Codestral (Mamba2): conv over x, B, C (8192 + 2·8·128 channels) + 128 heads × 64 × 128 state
    c = lr.analyze("mamba-codestral-7b", H100, prompt_len=100, gen_len=2).memory
    assert c["recurrent_state_bytes"] == 64 * ((8192 + 2 * 8 * 128) * 4 * 2 + 128 * 64 * 128 * 4)
    # it does not grow with the context: the same at 100 and 100 000 tokens, and every decode step costs the same
    long = lr.analyze("mamba-codestral-7b", H100, prompt_len=100_000, gen_len=2).memory
    assert long["recurrent_state_bytes"] == c["recurrent_state_bytes"]
    steps = r.to_dict()["generation"]["decode_step_times_s"]
    assert max(steps) - min(steps) <= 1e-12 * max(steps)
    # Bamba keeps both: the KV cache of its 3 attention layers and the state of its 29 Mamba2 layers
    b = lr.analyze("bamba-9b", H100, prompt_len=1000, gen_len=1).memory
    assert b["kv_bytes_per_token"] == 3 * 2 * 8 * 128 * 2
    assert b["recurrent_state_bytes"] == 29 * ((8192 + 2 * 128) * 4 * 2 + 128 * 64 * 128 * 4)


def test_falcon_mamba_norms_have_no_weights():
    fm = {
        o["name"]: o for o in lr.analyze("falcon-mamba-7b", H100, prompt_len=64, gen_len=2).to_dict()["decode"]["ops"]
    }
    assert fm["dt_b_c_norms"]["flops"] > 0 and fm["dt_b_c_norms"]["weight_bytes"] == 0
    plain = {o["name"] for o in lr.analyze(MAMBA, HW, prompt_len=64, gen_len=2).to_dict()["decode"]["ops"]}
    assert "dt_b_c_norms" not in plain and {"in_proj", "conv1d", "x_proj", "dt_proj", "out_proj"} <= plain


def test_knobs_that_cannot_apply_are_named():
    knobs = dict(kv_bits=8, kv_keep_ratio=0.5, kv_budget=128, flash_attention="tiled", attention="full", mla="naive")
    assert set(knobs) == {k for k, _ in ATTENTION_KNOBS}
    plain = lr.analyze("mamba-130m", H100, prompt_len=256, gen_len=8)
    r = lr.analyze("mamba-130m", H100, prompt_len=256, gen_len=8, offload={"kv_cache": 0.5}, **knobs)
    na = r.to_dict()["notes"]["not_applicable"]
    assert set(na) == {"kv_cache", "offload.kv_cache", *knobs}
    assert all("no attention layer" in why for why in na.values())
    # and they change nothing: the same times and memory as without them
    assert r.generation["e2e_s"] == pytest.approx(plain.generation["e2e_s"], rel=1e-12)
    assert r.memory["total_bytes"] == pytest.approx(plain.memory["total_bytes"], rel=1e-12)
    assert list(plain.to_dict()["notes"]["not_applicable"]) == ["kv_cache"]  # the default settings: only the cache
    # a model with attention layers (Bamba) has no such note: every knob acts on its attention layers
    assert "not_applicable" not in lr.analyze("bamba-9b", H100, kv_bits=8, prompt_len=64, gen_len=2).to_dict()["notes"]
    kv8 = lr.analyze("bamba-9b", H100, kv_bits=8, prompt_len=64, gen_len=2).memory["kv_cache_bytes"]
    assert kv8 == lr.analyze("bamba-9b", H100, prompt_len=64, gen_len=2).memory["kv_cache_bytes"] / 2
    # tensor parallelism: Mamba shards its inner channels (x_proj row-parallel, its dt, B, C all-reduced), Mamba2
    # its heads; the state per device halves
    one, two = (lr.analyze("mamba-130m", HW, tp=t, prompt_len=64, gen_len=2) for t in (1, 2))
    assert two.memory["recurrent_state_bytes"] == one.memory["recurrent_state_bytes"] / 2
    ar = {o["name"]: o for o in two.to_dict()["decode"]["ops"]}["x_proj_allreduce"]
    assert ar["kind"] == "communication" and ar["count"] == 24
    with pytest.raises(ValueError, match="channels"):
        lr.analyze("mamba-130m", HW, tp=5)  # 1536 inner channels
    assert lr.analyze("mamba-codestral-7b", HW, tp=2, prompt_len=64, gen_len=2).memory["devices"] == 2


def test_sweep_of_an_attention_free_model():
    df = lr.sweep(MAMBA, HW, prompt_len=[1, 100, 5000], gen_len=[1, 4], batch_size=[1, 8], kv_bits=[16, 8])
    assert len(df) == 24 and (df["kv_cache_bytes"] == 0).all()
    assert df["recurrent_state_bytes"].gt(0).all() and df[["ttft_s", "e2e_s", "total_bytes"]].notna().all().all()
    # the kv format changes nothing
    a, b = df[df["kv_bits"] == 16].reset_index(drop=True), df[df["kv_bits"] == 8].reset_index(drop=True)
    assert (a["e2e_s"] == b["e2e_s"]).all()


def test_serving_an_attention_free_model_is_capped_by_its_state():
    # no KV cache: the running batch is capped by the free memory over one request's recurrent state
    small = lr.Hardware(name="s", memory_bytes=2e9, memory_bandwidth=1e12, peak_flops={"fp16": 1e14})
    base = lr.analyze("mamba-130m", small, batch_size=1, prompt_len=1000, gen_len=2).memory
    s = lr.serve("mamba-130m", small, rate=5, prompt_len=1000, gen_len=200).to_dict()
    free = base["capacity_bytes"] - base["weights_bytes"] - base["activations_bytes"] - base["draft_bytes"]
    assert s["kv_limited_batch"] == pytest.approx(free / base["recurrent_state_bytes"], rel=1e-12)
    assert s["stable"] and math.isfinite(s["max_rate"]) and s["max_rate"] > 5
    over = lr.serve("mamba-130m", small, rate=2 * s["max_rate"], prompt_len=1000, gen_len=200)
    assert not over.stable and "recurrent state holds at most" in over.why_unstable
    # closed loop and a light load with a batch cap (the M/M/c waiting probability underflows to 0, no overflow)
    assert lr.serve("mamba-130m", H100, concurrency=32, prompt_len=1000, gen_len=200).to_dict()["stable"]
    assert lr.serve("gpt2", H100, rate=5, max_batch=256, prompt_len=500, gen_len=200).to_dict()["stable"]


def test_disaggregated_serving_moves_the_state():
    # the prompt's KV cache and the recurrent state travel from the prefill to the decode replica: with no KV
    # cache the state alone, so a slower link gives a longer TTFT
    def ttft(bw):
        hw = lr.Hardware(
            name="d", memory_bytes=80e9, memory_bandwidth=2e12, peak_flops={"fp16": 1e15}, interconnect_bandwidth=bw
        )
        return lr.serve("mamba-2.8b", hw, rate=1, prompt_len=500, gen_len=50, disaggregated=(1, 1)).to_dict()

    fast, slow = ttft(1e12), ttft(1e8)
    state = lr.analyze("mamba-2.8b", H100, prompt_len=500, gen_len=2).memory["recurrent_state_bytes"]
    assert slow["ttft_s"]["p50"] - fast["ttft_s"]["p50"] == pytest.approx(state / 1e8 - state / 1e12, rel=1e-6)


def test_serving_a_hybrid_counts_the_state_of_every_running_request():
    # Bamba: each running request holds its KV tokens (3 attention layers) and its fixed state (29 Mamba2 layers,
    # ~10× the KV of 1000 tokens): the batch the memory holds is free / (state + KV of a running request)
    from llmroof_widgets.engine.serving import _Server

    srv = _Server(
        "bamba-9b", H100, prompt_len=1000, gen_len=200, max_batch=None, chunk_size=None, block_size=16, knobs={}
    )
    m = srv.base.memory
    free = m["capacity_bytes"] - m["weights_bytes"] - m["activations_bytes"] - m["draft_bytes"]
    per_request = m["recurrent_state_bytes"] + m["kv_bytes_per_token"] * (srv.ctx_run + 8)
    assert srv.b_kv == pytest.approx(free / per_request, rel=1e-12)
    assert srv.b_kv < 0.2 * m["kv_token_capacity"] / (srv.ctx_run + 8)  # the KV cache alone would allow 5× more
