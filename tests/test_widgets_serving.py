"""ServingView (kernel side): the engine's serving figures, linked to a State, lazy in the Dashboard."""

from __future__ import annotations

import numpy as np
import pytest

import llmroof_widgets as lr
from llmroof_widgets.widgets import ServingView, State

M, H = "meta-llama/Llama-3.1-8B", "h100-sxm"


@pytest.fixture
def state():
    return State(model=M, hardware=H, prompt_len=1024, gen_len=256)


def test_shows_the_engines_numbers(state):
    v = ServingView(state, rate=10, slo_ttft_s=0.5, slo_tpot_s=0.05, price_per_hour=3.0)
    r = lr.serve(M, H, rate=10, prompt_len=1024, gen_len=256, price_per_hour=3.0, w_bits=16, a_bits=16, kv_bits=16)
    assert v.result.to_dict()["ttft_s"] == r.to_dict()["ttft_s"]
    h = v.headline.value
    assert "10 requests/s" in h and "meets" in h and "per million generated tokens" in h and "lower bounds" in h
    # latency lines: the engine's curve, the SLO lines at the SLO, the max rate marked
    assert np.allclose(v.ttft_p99.y, v.curve["ttft_p99_s"].to_numpy())
    assert list(v.slo_lines.y[:, 0]) == [0.5, 0.05]
    assert v.max_line.x[0] == pytest.approx(r.max_rate)
    assert any(line.visible and len(line.x) for line in v.frontier_lines)
    assert v.frontier_now.y[0] == pytest.approx(r.to_dict()["throughput_per_device_tokens_per_s"])


def test_follows_state_and_its_own_settings(state):
    v = ServingView(state, rate=5)
    n = v.computations
    state.batch_size = 8  # serving does not read the batch size: no recomputation
    assert v.computations == n
    state.w_bits = 8
    assert v.computations == n + 1
    assert v.result.settings["w_bits"] == 8
    v.mode, v.users = "users", 32
    assert v.result.settings["mode"] == "closed loop" and v.result.concurrency == pytest.approx(32, rel=0.03)
    v.mode, v.rate = "rate", 1e4
    assert not v.result.stable and "Unstable" in v.headline.value


def test_errors_are_shown_and_views_kept(state):
    v = ServingView(state, rate=5)
    before = v.result
    state.model = "meta-llama/Llama-3.1-70B"  # valid for analyze (does not fit), refused by serve
    assert "does not fit" in v.status.value
    assert v.result is before
    state.model = M
    assert v.status.value == "" and v.result is not before


def test_lazy_in_the_dashboard():
    ui = lr.Dashboard(model=M, hardware=H, prompt_len=1024, gen_len=256)
    assert ui.serving.computations == 0 and ui.serving.stale
    ui.state.batch_size = 4
    assert ui.serving.computations == 0
    ui.serving_section.selected_index = 0
    assert ui.serving.computations == 1 and ui.serving in ui._serving_slot.children
    ui.serving_section.selected_index = None
    assert ui._serving_slot.children == ()
    ui.close()
