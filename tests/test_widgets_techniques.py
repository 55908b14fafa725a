"""Kernel-side tests (no browser) of the technique knobs in the widgets, the sweep view and the
comparison view: every knob control reaches the engine, and the views show the engine's numbers
for those settings (checked against ``lr.analyze`` called with the same settings spelled out
here, independently of the State); invalid combinations show the engine's error and keep the last
views; the sweep view's lines are ``lr.sweep``'s; the comparison's deltas are ``lr.compare``'s.
"""

from __future__ import annotations

import json

import comm
import comm.base_comm
import ipywidgets as W
import numpy as np
import pytest
from ipywidgets.widgets.widget import _instances
from test_widgets import assert_dots_match, assert_memory_match

import llmroof_widgets as lr
import llmroof_widgets.widgets as lw
from llmroof_widgets.widgets import _static
from llmroof_widgets.widgets.state import KNOBS

MODEL = "meta-llama/Llama-3.1-8B"
MOE = "Qwen/Qwen3-30B-A3B"
MLA = "deepseek-ai/DeepSeek-V2-Lite"
HW = "h100-sxm"
BASE = dict(prompt_len=1024, gen_len=64)


# ---------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(scope="module")
def built():
    for name in ("layer_table", "formula_panel", "memory_share", "compare_table"):
        if not _static.bundle_path(name).exists():
            pytest.fail(f"{_static.bundle_path(name)} missing: run `npm install && npm run build` first")


@pytest.fixture
def ui(built):
    d = lw.Dashboard(model=MODEL, hardware=HW, **BASE)
    yield d
    d.close()


class RecordingComm(comm.base_comm.BaseComm):
    log: list = []

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        RecordingComm.log.append((self.comm_id, msg_type, data, buffers))


def engine(model=MODEL, hardware=HW, **settings) -> dict:
    """The engine's answer for these settings, computed without the widgets."""
    return lr.analyze(model, hardware, **{**BASE, **settings}).to_dict()


def assert_views_show(ui: lw.Dashboard, exp: dict) -> None:
    """Every view of the dashboard shows exactly the engine's figures in ``exp`` (a to_dict())."""
    st = ui.state
    assert st.error == "" and ui.table.error == ""
    assert ui.state.result.settings == exp["settings"]
    phases = ("prefill", "decode") if st.phase == "both" else (st.phase,)
    # table
    rows = ui.table.rows
    want = [(ph, op) for ph in phases for op in exp[ph]["ops"]]
    assert len(rows) == len(want)
    for i, (row, (ph, op)) in enumerate(zip(rows, want)):
        assert (row["index"], row["phase"]) == (i, ph)
        for k in ("name", "layer_type", "count", "bound", "peak_dtype", "flops_formula", "bytes_formula", "kind"):
            assert row[k] == op[k], (i, k)
        for k in (
            "flops",
            "bytes",
            "time_s",
            "share",
            "host_time_s",
            "communication_time_s",
            "host_bytes",
            "comm_bytes",
            "attained_flops",
            "resident_bytes",
            "bandwidth",
            "peak_flops",
        ):
            assert row[k] == pytest.approx(op[k], rel=1e-12, abs=0), (i, k)
        plottable = op["bound"] != "communication" and op["flops"] > 0 and op["arithmetic_intensity"] > 0
        assert (row["dot"] is not None) == plottable
    for ph in phases:
        for k in ("flops", "bytes", "time_s", "communication_time_s", "host_bytes"):
            assert ui.table.totals[ph][k] == pytest.approx(exp[ph][k], rel=1e-12)
    # headline
    hd, g, m = ui.table.headline, exp["generation"], exp["memory"]
    for k in ("ttft_s", "tpot_s", "e2e_s", "tokens_per_s", "throughput_tokens_per_s"):
        assert hd[k] == pytest.approx(g[k], rel=1e-12), k
    assert hd["memory_total_bytes"] == pytest.approx(m["total_bytes"])
    assert hd["fits"] == m["fits"]
    assert hd["efficiency_mode"] == lw._data.efficiency_mode(exp["settings"])
    assert hd["techniques"] == lw._data.technique_labels(exp["settings"])
    # roofline: dots at (intensity, attained FLOP/s), the engine's post-efficiency roofs
    rf = exp["roofs"]
    assert_dots_match(ui, exp, phases)
    rx, ry = np.asarray(ui.roofline.roofs.x), np.asarray(ui.roofline.roofs.y)
    bw = rf["memory_bandwidth"]
    np.testing.assert_allclose(ry[:, 0], bw * rx[:, 0], rtol=1e-12)  # the slope: post-efficiency bandwidth
    plotted = {r["peak_dtype"] for r in rows if r["dot"] is not None}
    for dt in plotted:
        assert rf["peaks"][dt] in list(ry[:, -1]), dt  # a flat roof per plotted dtype, the engine's peak
        assert rf["ridge"][dt] == pytest.approx(rx[list(ry[:, -1]).index(rf["peaks"][dt]), 1])  # ridge point
    ys = np.concatenate([np.asarray(d.y) for d in ui.roofline.dots])
    if len(ys):
        assert ui.roofline.y_scale.min <= ys.min() and ys.max() <= ui.roofline.y_scale.max
    # memory
    assert_memory_match(ui, m)
    # timeline
    np.testing.assert_allclose(ui.timeline.steps.y, np.asarray(g["decode_step_times_s"]) * 1e3, rtol=1e-12)
    np.testing.assert_allclose(ui.timeline.steps.x, g["decode_contexts"])
    # formula panel: the bandwidth the engine applied, the host link, the mode
    assert ui.formula.bandwidth == pytest.approx(bw)
    assert ui.formula.host_bandwidth == pytest.approx(rf["host_bandwidth"] or 0.0)
    assert ui.formula.mode == hd["efficiency_mode"]
    assert [r["host_time_s"] for r in ui.formula.rows] == [r["host_time_s"] for r in rows]


def snapshot(ui):
    return (
        json.dumps(ui.table.rows, default=str),
        json.dumps(ui.table.headline, default=str),
        [np.asarray(d.x).tolist() for d in ui.roofline.dots],
        np.asarray(ui.memory.bars.y).tolist(),
        np.asarray(ui.timeline.steps.y).tolist(),
        np.asarray(ui.roofline.roofs.y).tolist(),
    )


# ---------------------------------------------------------------------------------------------
# defaults


def test_defaults_are_the_plain_analysis(ui):
    st = ui.state
    assert st.extra == {} and st.knobs() == KNOBS
    assert_views_show(ui, engine())
    assert ui.table.headline["techniques"] == [] and ui.table.headline["efficiency_mode"] == "roofline"
    t = ui.controls.technique_controls
    assert t.active() == [] and "no technique" in t.summary.value
    assert (t.flash_attention.value, t.fused.value, t.kv_keep_ratio.value, t.kv_budget.value) == ("off", False, 1.0, 0)
    assert (t.draft.value, t.early_exit_fraction.value, t.sparsity_mode.value) == ("off", 1.0, "none")
    assert (t.offload_weights.value, t.offload_kv.value, t.offload_experts.value) == (0.0, 0.0, 0.0)
    assert (t.tp.value, t.pp.value, t.ep.value, t.efficiency.value) == (1, 1, 1, "roofline")
    assert ui.controls.group_size.value == 0 and ui.controls.group_size.label == "per channel"  # 0 ↔ None
    # the sections: collapsed, each with its description of the model and assumptions
    assert ui.controls.techniques_accordion.selected_index is None and t.sections.selected_index is None
    assert len(t.sections.children) == 8
    for box in t.sections.children:
        desc = box.children[0]
        assert isinstance(desc, W.HTML) and len(desc.value) > 80
    assert set(t.sections.titles) == {
        "Attention & fusion",
        "KV-cache compression",
        "Speculative decoding",
        "Early exit",
        "Sparsity",
        "Offloading",
        "Parallelism",
        "Efficiency",
    }


# ---------------------------------------------------------------------------------------------
# every knob control → State → engine → views


def _set(attr, value):
    def act(c):
        getattr(c.technique_controls, attr).value = value

    return act


def _seq(*acts):
    def act(c):
        for a in acts:
            a(c)

    return act


def _ctl(attr, value):
    def act(c):
        getattr(c, attr).value = value

    return act


# (id, state setup before, control action, the same settings as analyze() arguments)
KNOB_CASES = [
    ("flash_ideal", {}, _set("flash_attention", "ideal"), {"flash_attention": "ideal"}),
    ("flash_tiled", {}, _set("flash_attention", "tiled"), {"flash_attention": "tiled"}),
    ("fused", {}, _set("fused", True), {"fused": True}),
    ("kv_keep_ratio", {}, _set("kv_keep_ratio", 0.25), {"kv_keep_ratio": 0.25}),
    ("kv_budget", {}, _set("kv_budget", 512), {"kv_budget": 512}),
    (
        "speculative_mtp",
        {},
        _set("draft", "mtp"),
        {"speculative": lr.Speculative(draft="mtp", gamma=4, acceptance=0.7)},
    ),
    (
        "speculative_draft_gamma_alpha",
        {},
        _seq(_set("draft", "meta-llama/Llama-3.2-1B"), _set("gamma", 6), _set("acceptance", 0.8)),
        {"speculative": lr.Speculative(draft="meta-llama/Llama-3.2-1B", gamma=6, acceptance=0.8)},
    ),
    ("early_exit", {}, _set("early_exit_fraction", 0.5), {"early_exit_fraction": 0.5}),
    ("sparsity_2_4", {"batch_size": 64}, _set("sparsity_mode", "2:4"), {"batch_size": 64, "sparsity": "2:4"}),
    (
        "sparsity_unstructured",
        {},
        _seq(_set("sparsity_mode", "unstructured"), _set("sparsity_share", 0.3)),
        {"sparsity": 0.3},
    ),
    (
        "offload_weights_kv",
        {},
        _seq(_set("offload_weights", 0.5), _set("offload_kv", 0.25)),
        {"offload": {"weights": 0.5, "kv_cache": 0.25}},
    ),
    ("offload_experts", {"model": MOE}, _set("offload_experts", 0.75), {"model": MOE, "offload": {"experts": 0.75}}),
    ("tp", {}, _set("tp", 2), {"tp": 2}),
    ("pp", {}, _set("pp", 2), {"pp": 2}),
    ("ep", {"model": MOE, "batch_size": 8}, _set("ep", 2), {"model": MOE, "batch_size": 8, "ep": 2}),
    ("efficiency_calibrated", {}, _set("efficiency", "calibrated"), {"efficiency": "calibrated"}),
    (
        "efficiency_custom",
        {},
        _seq(_set("efficiency", "custom"), _set("eff_compute", 0.7), _set("eff_memory", 0.85)),
        {"efficiency": {"compute": 0.7, "memory": 0.85, "communication": 1.0}},
    ),
    ("mla_naive", {"model": MLA}, _set("mla", "naive"), {"model": MLA, "mla": "naive"}),
    (
        "weight_format_group_size",
        {},
        _seq(_ctl("w_bits", "int4"), _ctl("group_size", 128)),
        {"w_bits": "int4", "group_size": 128},
    ),
    (
        "formats",
        {},
        _seq(_ctl("w_bits", "nf4"), _ctl("a_bits", "fp8_e4m3"), _ctl("kv_bits", "fp8_e5m2")),
        {"w_bits": "nf4", "a_bits": "fp8_e4m3", "kv_bits": "fp8_e5m2"},
    ),
    ("gguf_weights", {}, _ctl("w_bits", "q4_0"), {"w_bits": "q4_0"}),
]


@pytest.mark.parametrize("setup,act,settings", [c[1:] for c in KNOB_CASES], ids=[c[0] for c in KNOB_CASES])
def test_each_knob_control_reaches_engine_and_views(ui, setup, act, settings):
    if setup:
        ui.state.update(**setup)
    before = snapshot(ui)
    act(ui.controls)  # what a user does in the browser
    exp = engine(**{k: v for k, v in settings.items() if k != "model"}, model=settings.get("model", MODEL))
    assert_views_show(ui, exp)
    assert snapshot(ui) != before  # the views moved
    # the knobs are in the State's extra, readable as attributes
    for k, v in settings.items():
        if k in KNOBS:
            assert ui.state.extra[k] == v and getattr(ui.state, k) == v
    if any(k in KNOBS for k in settings):
        n = len([k for k in settings if k in KNOBS])
        assert ui.controls.techniques_accordion.titles[0] in ("Techniques", f"Techniques · {n} active")
        assert ui.controls.technique_controls.active()


def test_one_knob_change_is_one_recomputation(ui):
    rev = ui.state.revision
    ui.controls.technique_controls.tp.value = 2
    assert ui.state.revision == rev + 1
    ui.controls.technique_controls.flash_attention.value = "tiled"
    assert ui.state.revision == rev + 2
    assert ui.state.extra == {"tp": 2, "flash_attention": "tiled"}


def test_knob_change_sends_one_message_per_widget(monkeypatch, built):
    RecordingComm.log = []
    monkeypatch.setattr(comm, "create_comm", RecordingComm)
    d = lw.Dashboard(model=MODEL, hardware=HW, prompt_len=1024, gen_len=1024)
    RecordingComm.log.clear()
    d.controls.technique_controls.tp.value = 2
    updates: dict[str, int] = {}
    for comm_id, msg_type, data, _ in RecordingComm.log:
        if msg_type == "comm_msg" and data.get("method") == "update":
            updates[comm_id] = updates.get(comm_id, 0) + 1
    views = [d.table, d.formula, d.memory.share, *d.roofline.dots, d.memory.bars, d.timeline.steps, d.roofline.notes]
    for v in views:
        assert updates.get(v.model_id, 0) <= 1, type(v).__name__
    assert updates.get(d.table.model_id) == 1
    # the closed sweep section computed nothing
    assert d.sweep.computations == 0 and d.sweep.stale
    d.close()


# ---------------------------------------------------------------------------------------------
# the State's knob API (one documented way: knobs live in State.extra; attribute and update() are sugar)


def test_state_knob_spellings_are_equivalent(built):
    a = lw.State(model=MODEL, hardware=HW, **BASE)
    b = lw.State(model=MODEL, hardware=HW, **BASE)
    c = lw.State(model=MODEL, hardware=HW, **BASE)
    a.tp = 2
    a.flash_attention = "tiled"
    b.update(tp=2, flash_attention="tiled")
    c.extra = {"tp": 2, "flash_attention": "tiled"}
    d = lw.State(model=MODEL, hardware=HW, tp=2, flash_attention="tiled", **BASE)
    exp = engine(tp=2, flash_attention="tiled")
    for s in (a, b, c, d):
        assert s.extra == {"tp": 2, "flash_attention": "tiled"}
        assert (s.tp, s.flash_attention, s.pp) == (2, "tiled", 1)
        assert s.result.to_dict()["decode"]["time_s"] == exp["decode"]["time_s"]
        assert s.inputs()["tp"] == 2
    # a knob set back to its default leaves extra: extra == {} is the plain analysis
    a.update(tp=1, flash_attention="off")
    assert a.extra == {} and a.result.settings["tp"] == 1
    a.efficiency = "roofline"
    a.offload = {"weights": 0.0}
    assert a.extra == {}
    # several inputs and knobs: one recomputation
    rev = b.revision
    b.update(batch_size=4, tp=4, kv_keep_ratio=0.5)
    assert b.revision == rev + 1 and b.result.settings["kv_keep_ratio"] == 0.5
    with pytest.raises(TypeError, match="unknown"):
        b.update(no_such_knob=1)
    assert "tp" in repr(b)
    # every knob of analyze() is a State knob
    import inspect

    kw = [n for n, p in inspect.signature(lr.analyze).parameters.items() if p.kind is p.KEYWORD_ONLY]
    assert set(kw) == (set(lw.state.INPUTS) | set(KNOBS)) - {"extra", "model", "hardware"}


def test_dashboard_accepts_knobs_and_controls_follow_the_state(built):
    d = lw.Dashboard(model=MOE, hardware=HW, batch_size=8, ep=2, **BASE)
    t = d.controls.technique_controls
    assert t.ep.value == 2 and d.state.extra == {"ep": 2}
    d.state.update(
        flash_attention="ideal",
        fused=True,
        kv_budget=300,
        speculative=lr.Speculative(draft="mtp", gamma=3, acceptance=0.6),
        sparsity=0.25,
        offload={"weights": 0.1, "experts": 0.5},
        efficiency={"compute": 0.5, "memory": 0.9},
        group_size=64,
        w_bits="int4",
        early_exit_fraction=0.75,
        kv_keep_ratio=0.4,
    )
    assert d.error == ""
    assert (t.flash_attention.value, t.fused.value, t.kv_budget.value, t.kv_keep_ratio.value) == (
        "ideal",
        True,
        300,
        0.4,
    )
    assert (t.draft.value, t.gamma.value, t.acceptance.value) == ("mtp", 3, 0.6)
    assert not t.gamma.disabled and "tokens per round" in t.tokens_per_round.value
    assert (t.sparsity_mode.value, t.sparsity_share.value, t.sparsity_share.disabled) == ("unstructured", 0.25, False)
    assert (t.offload_weights.value, t.offload_kv.value, t.offload_experts.value) == (0.1, 0.0, 0.5)
    assert (t.efficiency.value, t.eff_compute.value, t.eff_memory.value) == ("custom", 0.5, 0.9)
    assert t.eff_custom.layout.display == "flex"
    assert (d.controls.group_size.value, d.controls.w_bits.value) == (64, "int4")
    assert t.early_exit_fraction.value == 0.75
    assert d.controls.techniques_accordion.titles[0] == f"Techniques · {len(d.state.extra)} active"
    assert_views_show(
        d,
        engine(
            model=MOE,
            batch_size=8,
            ep=2,
            flash_attention="ideal",
            fused=True,
            kv_budget=300,
            speculative=lr.Speculative(draft="mtp", gamma=3, acceptance=0.6),
            sparsity=0.25,
            offload={"weights": 0.1, "experts": 0.5},
            efficiency={"compute": 0.5, "memory": 0.9},
            group_size=64,
            w_bits="int4",
            early_exit_fraction=0.75,
            kv_keep_ratio=0.4,
        ),
    )
    # a draft model given as a config shows as a custom option
    cfg = lr.load_model("meta-llama/Llama-3.2-1B")
    d.state.update(model=MODEL, ep=1, speculative=lr.Speculative(draft=cfg, gamma=2, acceptance=0.5))
    assert d.error == "" and t.draft.value == "__custom_draft__"
    assert any("custom" in str(label) for label, _ in t.draft.options)
    # the reset button: back to the plain analysis
    t.reset.click()
    assert d.state.extra == {} and d.error == ""
    assert_views_show(d, engine(w_bits="int4", batch_size=8))
    assert d.controls.techniques_accordion.titles[0] == "Techniques"
    d.close()


# ---------------------------------------------------------------------------------------------
# invalid combinations: the engine's error, the last views kept


BAD_KNOBS = [
    ("tp3_on_32_heads", {}, _set("tp", 3), "tp = 3 does not divide num_attention_heads = 32"),
    ("ep_on_dense", {"batch_size": 4}, _set("ep", 2), "mixture-of-experts"),
    ("pp_beyond_layers", {}, _set("pp", 64), "exceeds the number of layers"),
    ("tp_without_interconnect", {"hardware": "apple-m2-max"}, _set("tp", 2), "interconnect_bandwidth"),
]


@pytest.mark.parametrize("setup,act,word", [b[1:] for b in BAD_KNOBS], ids=[b[0] for b in BAD_KNOBS])
def test_invalid_knob_combination_shows_error_and_keeps_views(ui, setup, act, word):
    if setup:
        ui.state.update(**setup)
    result = ui.state.result
    before = snapshot(ui)
    act(ui.controls)
    assert word in ui.state.error  # the engine's ValueError, as text
    assert ui.table.error == ui.state.error  # shown in the dashboard's error area
    assert ui.state.result is result and snapshot(ui) == before  # the last valid views stay
    # fixing it clears the error and the views catch up
    ui.controls.technique_controls.reset.click()
    assert ui.state.error == "" and ui.table.error == ""
    assert_views_show(
        ui, engine(**{k: v for k, v in setup.items() if k != "hardware"}, hardware=setup.get("hardware", HW))
    )


def test_tp3_error_exact_engine_message(ui):
    with pytest.raises(ValueError) as e:
        lr.analyze(MODEL, HW, tp=3, **BASE)
    ui.controls.technique_controls.tp.value = 3
    assert ui.state.error == str(e.value)


# ---------------------------------------------------------------------------------------------
# communication operators, offloading, sparsity, calibrated mode in the views


def test_communication_rows_in_table_not_on_the_roofline(ui):
    ui.state.tp = 2
    comm_rows = [r for r in ui.table.rows if r["bound"] == "communication"]
    exp = engine(tp=2)
    assert len(comm_rows) == sum(
        op["bound"] == "communication" for ph in ("prefill", "decode") for op in exp[ph]["ops"]
    )
    assert {r["name"] for r in comm_rows} >= {"attn_allreduce", "mlp_allreduce"}
    for r in comm_rows:
        assert r["dot"] is None and r["flops"] == 0 and r["communication_time_s"] > 0
        assert r["time_s"] == pytest.approx(r["communication_time_s"])
        f = ui.formula.rows[r["index"]]
        assert f["comm_bytes"] > 0 and f["bound"] == "communication"
    # the roofline says where they went
    assert any("collectives (communication" in t for t in ui.roofline.notes.text)
    ui.select("attn_allreduce", phase="decode")
    assert ui.formula.selected == ui.selected and ui.formula.rows[ui.selected[0]]["name"] == "attn_allreduce"
    assert ui.table.headline["techniques"] == ["TP 2"] and ui.table.headline["devices"] == 2
    assert "per device (2 devices)" in ui.memory.y_axis.label
    ui.state.tp = 1
    assert len(ui.roofline.notes.text) == 0


def test_offloading_host_link_in_formula_and_roofline(ui):
    ui.state.offload = {"weights": 0.5}
    exp = engine(offload={"weights": 0.5})
    host = exp["roofs"]["host_bandwidth"]
    rows = [r for r in ui.formula.rows if r["host_time_s"] > 0]
    assert rows and ui.formula.host_bandwidth == pytest.approx(host)
    for r in rows:
        assert r["host_bytes"] > 0 and r["host_time_s"] == pytest.approx(r["host_bytes"] / host, rel=1e-9)
    # the host link's slope is drawn
    hx, hy = np.asarray(ui.roofline.host_roof.x), np.asarray(ui.roofline.host_roof.y)
    assert len(hx) == 2
    np.testing.assert_allclose(hy, host * hx, rtol=1e-12)
    assert "host link" in ui.roofline.host_label.text[0]
    assert "host holds" in ui.memory.capacity_label.text[0]
    ui.state.offload = None
    assert len(ui.roofline.host_roof.x) == 0


def test_sparse_tensor_core_roof(ui):
    ui.state.update(batch_size=64, sparsity="2:4")
    peaks = list(np.asarray(ui.roofline.roofs.y)[:, -1])
    exp = engine(batch_size=64, sparsity="2:4")
    assert exp["roofs"]["peaks"]["fp16"] in peaks
    sparse = {op["peak_flops"] for op in exp["prefill"]["ops"] if op["peak_flops"] > exp["roofs"]["peaks"]["fp16"]}
    assert sparse and sparse <= set(peaks)  # the 2:4 peak gets its own roof: no dot above every roof
    assert max(np.concatenate([np.asarray(d.y) for d in ui.roofline.dots])) <= max(peaks) * (1 + 1e-12)


def test_calibrated_mode_switches_the_note(ui):
    hd = ui.table.headline
    assert hd["efficiency_mode"] == "roofline" and "lower bound" in hd["notes"]["time"]
    ui.controls.technique_controls.efficiency.value = "calibrated"
    hd = ui.table.headline
    assert hd["efficiency_mode"] == "calibrated"
    assert "calibrated" in hd["notes"]["time"] and "not lower bounds" in hd["notes"]["time"]
    assert "calibrated" in ui.roofline.title and any("calibrated" in t for t in ui.roofline.notes.text)
    assert ui.formula.mode == "calibrated"
    # dots sit on or below the engine's (achievable) roofs
    top = max(np.asarray(ui.roofline.roofs.y)[:, -1])
    assert max(np.concatenate([np.asarray(d.y) for d in ui.roofline.dots])) <= top
    # the front end's note follows the mode (the bundle's wording)
    js = _static.load_bundle("layer_table")
    assert "lr-calibrated" in js and "Calibrated estimates" in js and "Roofline times are lower bounds" in js
    ui.controls.technique_controls.efficiency.value = "custom"
    assert ui.table.headline["efficiency_mode"] == "roofline"  # custom shares at 100 %: the roofline
    ui.controls.technique_controls.eff_memory.value = 0.8
    assert (
        ui.table.headline["efficiency_mode"] == "custom" and "shares of the peaks" in ui.table.headline["notes"]["time"]
    )
    ui.controls.technique_controls.efficiency.value = "roofline"
    assert ui.table.headline["efficiency_mode"] == "roofline" and ui.state.extra == {}


def test_speculative_draft_memory_bar(ui):
    ui.controls.technique_controls.draft.value = "meta-llama/Llama-3.2-1B"
    m = ui.state.result.memory
    assert m["draft_bytes"] > 0
    bars = np.asarray(ui.memory.bars.y)
    assert bars.shape == (4, 3) and list(ui.memory.bars.labels)[-1] == "draft model"
    np.testing.assert_allclose(bars[3], [m["draft_bytes"] / 1e9] * 3)
    assert_memory_match(ui, m)
    ui.controls.technique_controls.draft.value = "off"
    assert np.asarray(ui.memory.bars.y).shape == (3, 3)


# ---------------------------------------------------------------------------------------------
# the sweep view


def _sweep_settings(state, x, values):
    kw = {k: v for k, v in state.inputs().items() if k not in ("model", "hardware")}
    kw[x] = values
    return kw


@pytest.mark.parametrize("x", ["batch_size", "prompt_len"])
def test_sweep_view_data_equals_lr_sweep(built, x):
    s = lw.State(model=MODEL, hardware=HW, prompt_len=1024, gen_len=256, batch_size=3)
    v = lw.SweepView(s, x=x)
    vals = v.x_values
    assert s.inputs()[x] in vals and len(vals) >= 11  # the State's own value is swept too
    df = lr.sweep(MODEL, HW, **_sweep_settings(s, x, vals))
    np.testing.assert_allclose(v.ttft.x, df[x])
    np.testing.assert_allclose(v.ttft.y, df["ttft_s"] * 1e3, rtol=1e-12)
    np.testing.assert_allclose(v.tpot.y, df["tpot_s"] * 1e3, rtol=1e-12)
    np.testing.assert_allclose(v.total.y, df["total_bytes"] / 1e9, rtol=1e-12)
    np.testing.assert_allclose(v.kv.y, df["kv_cache_bytes"] / 1e9, rtol=1e-12)
    np.testing.assert_allclose(v.weights.y, df["weights_bytes"] / 1e9, rtol=1e-12)
    np.testing.assert_allclose(v.capacity.y, [df["capacity_bytes"].iloc[0] / 1e9] * 2)
    nf = ~df["fits"].to_numpy(bool)
    np.testing.assert_allclose(v.m_nofit.x, df[x][nf])
    assert nf.any()  # both default ranges go past the H100's 80 GB
    lim = v.fit_limit()
    if x == "batch_size":
        assert lim == df["max_batch_size"].iloc[0]
    else:
        xs = df[x].to_numpy(float)
        i = int(np.flatnonzero(nf)[0])
        assert xs[i - 1] <= lim <= xs[i]
    assert list(v.t_limit.x) == [lim, lim] and list(v.m_limit.x) == [lim, lim]
    assert list(v.t_current.x) == [s.inputs()[x]] * 2
    # the row at the State's value is the State's own analysis
    row = df[df[x] == s.inputs()[x]].iloc[0]
    assert row["ttft_s"] == pytest.approx(s.result.generation["ttft_s"], rel=1e-9)
    assert row["tpot_s"] == pytest.approx(s.result.generation["tpot_s"], rel=1e-9)
    assert row["total_bytes"] == pytest.approx(s.result.memory["total_bytes"], rel=1e-9)
    v.close()


def test_sweep_follows_state_and_knobs(built):
    s = lw.State(model=MODEL, hardware=HW, prompt_len=512, gen_len=128)
    v = lw.SweepView(s, x="batch_size", values=[1, 4, 16, 64])
    assert v.x_values == [1, 4, 16, 64]
    s.update(tp=2, w_bits=8, flash_attention="tiled")
    df = lr.sweep(MODEL, HW, **_sweep_settings(s, "batch_size", [1, 4, 16, 64]))
    np.testing.assert_allclose(v.tpot.y, df["tpot_s"] * 1e3, rtol=1e-12)
    np.testing.assert_allclose(v.total.y, df["total_bytes"] / 1e9, rtol=1e-12)
    # the axis switches (values go back to the default range of the new axis)
    v.x = "prompt_len"
    assert v.axis.value == "prompt_len" and 131072 in v.x_values and 512 in v.x_values
    df = lr.sweep(MODEL, HW, **_sweep_settings(s, "prompt_len", v.x_values))
    np.testing.assert_allclose(v.ttft.y, df["ttft_s"] * 1e3, rtol=1e-12)
    v.axis.value = "batch_size"  # the toggle in its header
    assert v.x == "batch_size"
    # an invalid state keeps the last sweep and says so
    n = v.computations
    s.tp = 3
    assert v.computations == n and "last valid" in v.status.value
    s.tp = 2
    assert v.computations == n + 1 and "last valid" not in v.status.value
    # values the engine rejects for this configuration are left out, with the reason
    s.update(model=MOE, tp=1, ep=4, batch_size=8)
    assert s.error == ""
    assert min(v.x_values) >= 4 and "left out 1, 2" in v.status.value
    v.close()


def test_dashboard_sweep_is_lazy(ui):
    sw = ui.sweep
    assert ui.sweep_section.selected_index is None and not sw.active and sw.computations == 0
    ui.state.batch_size = 8
    ui.controls.technique_controls.tp.value = 2
    assert sw.computations == 0 and sw.stale  # closed: no sweep on control changes
    assert ui.sweep_section.children[0].children == ()  # no figure drawn in a closed (zero-size) section
    ui.sweep_section.selected_index = 0  # the user opens the section (synced from the browser)
    assert sw.active and sw.computations == 1 and not sw.stale
    assert ui.sweep_section.children[0].children == (sw,)
    df = lr.sweep(MODEL, HW, **_sweep_settings(ui.state, "batch_size", sw.x_values))
    np.testing.assert_allclose(sw.tpot.y, df["tpot_s"] * 1e3, rtol=1e-12)
    ui.state.batch_size = 16  # open: follows every change
    assert sw.computations == 2 and 16 in sw.x_values
    ui.sweep_section.selected_index = None
    ui.state.batch_size = 32
    assert sw.computations == 2 and sw.stale
    d = lw.Dashboard(model=MODEL, hardware=HW, sweep_open=True, **BASE)
    assert d.sweep.active and d.sweep.computations == 1
    d.close()


# ---------------------------------------------------------------------------------------------
# the comparison view


def test_compare_view_deltas_equal_lr_compare(built):
    teacher = lw.State(model="meta-llama/Llama-3.1-70B", hardware=HW, tp=4, batch_size=8, **BASE)
    student = lw.State(model=MODEL, hardware=HW, batch_size=8, **BASE)
    v = lw.CompareView(teacher, student, labels=("teacher", "student"))
    ref = lr.compare(
        lr.analyze("meta-llama/Llama-3.1-70B", HW, tp=4, batch_size=8, **BASE),
        lr.analyze(MODEL, HW, batch_size=8, **BASE),
        labels=("teacher", "student"),
    )
    tot = ref.totals.to_dict("records")
    assert [t["quantity"] for t in v.table.totals] == [t["quantity"] for t in tot]
    for mine, theirs in zip(v.table.totals, tot):
        assert mine["a"] == pytest.approx(theirs["teacher"], rel=1e-12)
        assert mine["b"] == pytest.approx(theirs["student"], rel=1e-12)
        if theirs["delta"] is not None and theirs["delta"] == theirs["delta"]:
            assert mine["delta"] == pytest.approx(theirs["delta"], rel=1e-12)
            assert mine["ratio"] == pytest.approx(theirs["ratio"], rel=1e-12)
    ops = ref.operators.to_dict("records")
    assert len(v.table.operators) == len(ops)
    for mine, theirs in zip(v.table.operators, ops):
        assert (mine["phase"], mine["layer_type"], mine["name"]) == (
            theirs["phase"],
            theirs["layer_type"],
            theirs["name"],
        )
        assert mine["time_a"] == pytest.approx(theirs["time_s_teacher"], rel=1e-12)
        assert mine["time_b"] == pytest.approx(theirs["time_s_student"], rel=1e-12)
        assert mine["delta_s"] == pytest.approx(theirs["delta_s"], rel=1e-12, abs=1e-18)
    # better / worse direction for colouring
    by_q = {t["quantity"]: t for t in v.table.totals}
    assert by_q["tpot_s"]["better"] == "lower" and by_q["throughput_tokens_per_s"]["better"] == "higher"
    assert [h["label"] for h in v.table.headers] == ["teacher", "student"]
    assert "TP 4" in v.table.headers[0]["techniques"]
    # the bar chart: decode time per pass of the top operators (+ "other"), per analysis
    dec = ref.operators[ref.operators["phase"] == "decode"]
    y = np.asarray(v.bars.y)
    assert y.shape[0] == 2
    assert y[0].sum() == pytest.approx(dec["time_s_teacher"].sum() * 1e3, rel=1e-9)
    assert y[1].sum() == pytest.approx(dec["time_s_student"].sum() * 1e3, rel=1e-9)
    v.phase.value = "prefill"
    pre = ref.operators[ref.operators["phase"] == "prefill"]
    assert np.asarray(v.bars.y)[1].sum() == pytest.approx(pre["time_s_student"].sum() * 1e3, rel=1e-9)
    # follows either State; an error shows and the last comparison stays
    student.w_bits = 4
    ref2 = lr.compare(teacher.result, lr.analyze(MODEL, HW, batch_size=8, w_bits=4, **BASE))
    assert {t["quantity"]: t for t in v.table.totals}["tpot_s"]["b"] == pytest.approx(
        ref2.totals.set_index("quantity").loc["tpot_s", "b"], rel=1e-12
    )
    last = v.comparison
    student.tp = 3
    assert "student: tp = 3" in v.table.error and v.comparison is last
    student.tp = 1
    assert v.table.error == ""
    v.close()


def test_compare_dashboards_adds_deltas(built):
    a = lw.Dashboard(model=MODEL, hardware=HW, **BASE)
    b = lw.Dashboard(model=MODEL, hardware="a100-80gb-sxm", **BASE)
    box = lw.compare_dashboards(a, b, labels=("H100", "A100"))
    assert box.children[0] is a and box.children[1] is b
    assert isinstance(box.compare, lw.CompareView) and box.children[2] is box.compare
    ref = lr.compare(a.result, b.result)
    assert box.compare.table.totals[2]["delta"] == pytest.approx(ref.totals["delta"].iloc[2])
    b.state.batch_size = 4
    ref = lr.compare(a.result, b.result)
    assert box.compare.table.totals[2]["delta"] == pytest.approx(ref.totals["delta"].iloc[2])
    three = lw.compare_dashboards(a, b, lw.State(model=MODEL, hardware="l40s", **BASE))
    assert three.compare is None and len(three.children) == 3
    for w in (box.compare, *three.children[2:], a, b):
        w.close()


def test_compare_table_bundle_and_hostile_names(built, tmp_path):
    text = _static.load_bundle("compare_table")
    assert "export" in text and len(text) > 1000
    for bad in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
        assert bad not in text
    evil = "</script><script>window.pwned=1</script>"
    from pathlib import Path

    cfg = json.loads((Path(lr.__file__).parent / "data/models/Llama-2-7b-hf.json").read_text())
    cfg["name"] = cfg["_name_or_path"] = evil
    a = lw.State(model=cfg, hardware=HW, **BASE)
    b = lw.State(model=MODEL, hardware=HW, **BASE)
    v = lw.CompareView(a, b)
    assert v.table.headers[0]["model"] == evil  # data, written with textContent by the front end
    for w in list(_instances.values()):
        if isinstance(w, (W.HTML, W.HTMLMath)):
            assert "pwned" not in w.value
    v.close()
    with pytest.raises(ValueError):
        lw.CompareView(a, b, labels=("x", "x"))
    with pytest.raises(TypeError):
        lw.CompareView(a, "not a state")


def test_top_level_names():
    assert lr.SweepView is lw.SweepView and lr.CompareView is lw.CompareView
    assert lr.TechniqueControls is lw.TechniqueControls


def test_memory_breakdown_per_batch_size_matches_the_engine_sweep():
    import numpy as np

    st = lr.State(model="llama-3.1-8b", hardware="h100-sxm", batch_size=12, prompt_len=2048, gen_len=256)
    mem = lr.MemoryBreakdown(st)
    assert mem.by.value == "phase" and list(mem.bars.x) == ["prefill", "end of decode", "fits check"]
    mem.by.value = "batch"
    sizes = mem.batch_sizes
    assert 12 in sizes and sizes[0] == 1 and len(sizes) <= mem.MAX_BARS
    assert sizes[-1] >= st.result.memory["max_batch_size"]  # the fit limit is on the chart
    df = lr.sweep("llama-3.1-8b", "h100-sxm", batch_size=sizes, prompt_len=2048, gen_len=256)
    want = np.array([df.weights_bytes, df.kv_cache_bytes, df.activations_bytes]) / 1e9
    assert np.allclose(np.asarray(mem.bars.y), want)
    assert list(mem.bars.x) == [f"{b:,}" for b in sizes]
    assert any(t.startswith("▶") for t in mem.totals_label.text)  # the current batch is marked
    st.batch_size = 64  # follows the state
    assert 64 in mem.batch_sizes
    mem.by.value = "phase"
    assert list(mem.bars.x) == ["prefill", "end of decode", "fits check"] and mem.batch_sizes == []


def test_uploaded_config_json_becomes_the_model():
    import datetime
    import json

    NOW = datetime.datetime.now(datetime.timezone.utc)

    ui = lr.Dashboard(model="gpt2", hardware="h100-sxm", prompt_len=64, gen_len=4)
    cfg = json.loads((lr.engine.models.MODELS_DIR / "opt-125m.json").read_text())
    cfg.pop("_name_or_path", None)
    ui.controls.model_upload.value = (
        {
            "name": "my-opt.json",
            "type": "application/json",
            "size": 10,
            "content": memoryview(json.dumps(cfg).encode()),
            "last_modified": NOW,
        },
    )
    assert ui.state.error == ""
    assert ui.state.result.model.name == "my-opt"
    assert ui.state.result.params_total == lr.analyze("opt-125m", "h100-sxm").params_total
    before = ui.state.result
    ui.controls.model_upload.value = (
        {
            "name": "bad.json",
            "type": "application/json",
            "size": 3,
            "content": memoryview(b"{no"),
            "last_modified": NOW,
        },
    )
    assert "bad.json" in ui.state.error and ui.state.result is before  # last valid result kept
