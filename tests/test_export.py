"""Static HTML export, kernel side: the page holds the full widget state and every script, escaped."""

import itertools
import json
import math
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser

import anywidget
import bqplot as bq
import ipywidgets as W
import pytest
import traitlets

import llmroof_widgets.widgets  # noqa: F401  (the views, before lr.Dashboard is looked up)
from llmroof_widgets import export
from llmroof_widgets.export import escape_js, escape_json, export_html, html_bundle_paths, render_html

EVIL = "</script><script>window.pwned=1</script>"
EVIL2 = "<!--<script>window.pwned=2</script>-->"
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
)


class Echo(anywidget.AnyWidget):
    _esm = (
        "export default { render({ model, el }) { el.classList.add('t-any'); el.textContent = model.get('text'); } };"
    )
    _css = ".t-any { color: #123456; }"
    text = traitlets.Unicode("").tag(sync=True)


class Scripts(HTMLParser):
    """Collects every <script> element as (attrs, text) the way a browser's tokenizer splits them."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.scripts, self.tags, self._cur = [], [], None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._cur = (dict(attrs), [])

    def handle_data(self, data):
        if self._cur is not None:
            self._cur[1].append(data)

    def handle_endtag(self, tag):
        if tag == "script" and self._cur is not None:
            self.scripts.append((self._cur[0], "".join(self._cur[1])))
            self._cur = None


def parse(page: str) -> Scripts:
    p = Scripts()
    p.feed(page)
    return p


def scripts_of(page: str):
    return parse(page).scripts


def state_of(page: str) -> dict:
    [(_, text)] = [(a, t) for a, t in scripts_of(page) if a.get("type") == "application/vnd.jupyter.widget-state+json"]
    return json.loads(text)["state"]


@pytest.fixture(scope="module")
def dashboard():
    import llmroof_widgets as lr

    ui = lr.Dashboard(model=dict(TINY, _name_or_path=EVIL), hardware="h100-sxm", prompt_len=64, gen_len=8)
    yield ui
    ui.close()


@pytest.fixture(scope="module")
def dashboard_page(dashboard):
    return render_html(dashboard)


def test_dashboard_page_is_self_contained(dashboard_page, tmp_path, dashboard):
    page = dashboard_page
    parsed = parse(page)
    scripts = parsed.scripts
    # no external script, stylesheet, image or frame: the page's elements (as a browser tokenizes
    # them; script texts are not markup) load nothing
    assert not [(t, a) for t, a in parsed.tags if {"src", "href"} & set(a)]
    assert {t for t, _ in parsed.tags} <= {"html", "head", "meta", "title", "style", "body", "div", "h1", "script"}
    amd = {a["data-amd-module"]: t for a, t in scripts if "data-amd-module" in a}
    assert set(amd) == {"anywidget", "bqplot", "bqscales"}
    paths = html_bundle_paths(amd)
    for name, text in amd.items():
        src = paths[name].read_text(encoding="utf-8")
        assert "define([" in text and abs(len(text) - len(src)) < 200, name  # the whole AMD bundle
    inline = [t for a, t in scripts if not a]
    assert any("RequireJS 2.3" in t for t in inline)  # require.js
    assert any('define("@jupyter-widgets/html-manager/dist/libembed-amd"' in t for t in inline)  # embed-amd.js
    assert any("createObjectURL" in t and "require.config" in t for t in inline)  # Blob-URL registration
    views = [json.loads(t) for a, t in scripts if a.get("type") == "application/vnd.jupyter.widget-view+json"]
    # the state switcher (precomputed states) first, then the dashboard
    assert len(views) == 2 and views[1] == {"version_major": 2, "version_minor": 0, "model_id": dashboard.model_id}
    assert state_of(page)[views[0]["model_id"]]["state"]["payload"]
    path = export_html(dashboard, tmp_path / "dash.html", title="Llama")
    size = path.stat().st_size
    print(f"\nexported dashboard: {size / 1e6:.2f} MB")
    assert 3e6 < size < 12e6
    assert "<title>Llama</title>" in path.read_text(encoding="utf-8")


def test_state_has_anywidget_esm_and_every_model(dashboard_page, dashboard):
    state = state_of(dashboard_page)
    # drop_defaults=False: anywidget's per-instance _esm, _css, _anywidget_id travel with the state (P10)
    anys = [s for s in state.values() if s["model_module"] == "anywidget"]
    assert len(anys) >= 3
    for s in anys:
        st = s["state"]
        assert st["_esm"] and "export" in st["_esm"] and st.get("_anywidget_id")
        assert st["_view_name"] == "AnyView" and st["_model_name"] == "AnyModel"
    table = state[dashboard.table.model_id]["state"]
    assert table["_esm"] == dashboard.table._esm
    assert len(table["rows"]) == len(dashboard.table.rows) > 10
    # every model the dashboard references (the table's marks, the plots' scales and axes) is present
    for ref in table["marks"] + table["peers"]:
        assert ref.startswith("IPY_MODEL_") and ref[len("IPY_MODEL_") :] in state
    assert dashboard.roofline.model_id in state and dashboard.roofline.x_scale.model_id in state
    assert {s["model_module"] for s in state.values()} >= {
        "anywidget",
        "bqplot",
        "bqscales",
        "@jupyter-widgets/controls",
    }


def test_text_from_a_config_cannot_become_markup(dashboard_page):
    page = dashboard_page
    # the model's name is EVIL: it is in the state, but never as a live tag
    assert "window.pwned" in page
    assert not re.search(r"<script>\s*window\.pwned", page, re.IGNORECASE)
    assert EVIL not in page
    scripts = scripts_of(page)
    assert not any("window.pwned=1" == t.strip() for _, t in scripts)
    # and the state parses back to exactly that name
    state = state_of(page)
    assert any(EVIL in json.dumps(s["state"], ensure_ascii=False) for s in state.values())


def test_widgets_export_escapes_every_text(tmp_path):
    echo = Echo(text=EVIL)
    label = W.Label(value=EVIL2)
    fig = bq.Figure(
        marks=[
            bq.Scatter(x=[1, 2], y=[3, 4], names=[EVIL, EVIL2], scales={"x": bq.LinearScale(), "y": bq.LinearScale()})
        ],
        title=EVIL,
    )
    page = export_html([W.VBox([echo, label]), fig], tmp_path / "evil.html", title=EVIL).read_text(encoding="utf-8")
    low = page.lower()
    assert "<script>window.pwned" not in low and "<!--<script>" not in low and "</script><script>window" not in low
    scripts = scripts_of(page)
    # the page's own structure survives: 3 AMD bundles, require.js, registration, state, the early inflation of
    # precomputed states, 2 views, embed-amd.js
    kinds = [
        a.get("type") or ("amd:" + a["data-amd-module"] if "data-amd-module" in a else "inline") for a, _ in scripts
    ]
    assert kinds.count("application/vnd.jupyter.widget-view+json") == 2
    assert kinds.count("application/vnd.jupyter.widget-state+json") == 1
    assert len(scripts) == 3 + 1 + 1 + 1 + 1 + 2 + 1
    assert "&lt;/script&gt;" in page.split("<body", 1)[1].split("<script", 1)[0]  # the escaped title in the header
    texts = json.dumps(state_of(page), ensure_ascii=False)
    assert EVIL in texts and EVIL2 in texts  # round trip: same strings after JSON parsing


def test_escape_functions():
    s = 'a</script>b</SCRIPT c<!-- d'
    e = escape_js(s)
    assert "</script" not in e.lower() and "<!--" not in e
    j = escape_json({"k": s + " & <b>"})
    assert "<" not in j and ">" not in j and "&" not in j and json.loads(j) == {"k": s + " & <b>"}


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_escaped_js_means_the_same_to_javascript():
    # the escapes must not change what a string literal, a regular expression or a template means
    src = r'''const a = "x</script>y<!--z"; const r = /<\/script>/i; const t = `</SCRIPT>${1}<!--`;
console.log(JSON.stringify([a, r.test("</script>"), t, /<!--/.test("<!--")]));'''
    out = [
        subprocess.run(["node", "-e", code], capture_output=True, text=True, check=True).stdout
        for code in (src, escape_js(src))
    ]
    assert out[0] == out[1] and "x</script>y<!--z" in out[0]


def test_accepts_dashboard_widget_or_list_and_rejects_others(tmp_path):
    echo = Echo(text="hi")
    assert export.widget_data(echo)["modules"] == ["anywidget"]
    assert len(export.widget_data([echo, W.Label("x")])["view_specs"]) == 2

    class Holder:
        widget = echo

    assert export.widget_data(Holder())["view_specs"][0]["model_id"] == echo.model_id
    with pytest.raises(TypeError, match="Dashboard"):
        export_html(object(), tmp_path / "x.html")
    with pytest.raises(ValueError):
        export_html([], tmp_path / "x.html")


def test_missing_bundle_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(export, "_nbextension_dirs", lambda: [tmp_path])
    monkeypatch.setattr(export, "_package_nbextension", lambda m: None)
    with pytest.raises(export.MissingEmbedAssetError, match="bqplot"):
        render_html(bq.Figure())
    monkeypatch.setattr(export, "EMBED_DIR", tmp_path)
    monkeypatch.setattr(export, "REPO_ROOT", tmp_path)
    with pytest.raises(export.MissingEmbedAssetError, match="npm run build"):
        export.embed_asset_path("embed-amd.js")


def test_dashboard_export_button_writes_the_file(tmp_path):
    import llmroof_widgets as lr

    ui = lr.Dashboard(model="gpt2", hardware="rtx-4090", prompt_len=64, gen_len=8)
    target = tmp_path / "shared view.html"
    ui.export_path.value = str(target)
    ui.export_button.click()
    assert target.is_file() and target.stat().st_size > 1e6
    assert ui.export_status.value.startswith("wrote ")
    text = target.read_text()
    assert "application/vnd.jupyter.widget-state+json" in text and "_esm" in text
    ui.export_path.value = str(tmp_path / "no-such-dir" / "x.html")
    ui.export_button.click()
    assert ui.export_status.value.startswith("export failed")


# -- precomputed states (export_states) --------------------------------------------------------------
from llmroof_widgets import export_states as es  # noqa: E402


def _plain(v):
    """A kernel trait value as the page rebuilds it: binary arrays as number lists."""
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            if isinstance(x, (bytes, memoryview)) and isinstance(v.get("dtype"), str):
                import numpy as np

                out[k] = np.frombuffer(bytes(x), dtype=v["dtype"]).tolist()
            else:
                out[k] = _plain(x)
        return out
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def test_every_state_replays_exactly_what_the_kernel_sends():
    import llmroof_widgets as lr

    ui = lr.Dashboard(model=dict(TINY), hardware="h100-sxm", prompt_len=64, gen_len=8)
    grid = {"batch_size": [1, 4], "prompt_len": [16, 64], "w_bits": [16, 4], "phase": ["both", "decode"]}
    before = {k: ui.table.get_state(k)[k] for k in ("rows", "headline")}
    cap = es.capture_states(ui, es.check_grid(ui, grid))
    payload = es.decode(es.encode(cap["payload"]))  # the compressed round trip the page does
    assert cap["states"] == len(payload["states"]) == 16
    # the setting is restored afterwards, and the base state is the exported setting
    assert {k: ui.table.get_state(k)[k] for k in ("rows", "headline")} == before
    assert payload["base"] == grid_point(grid, batch_size=1, prompt_len=64, w_bits=16, phase="both")
    widgets = W.widgets.widget._instances
    keys = [tuple(k) for k in payload["keys"]]
    assert (ui.table.model_id, "rows") in keys and (ui.table.model_id, "headline") in keys
    for i, point in enumerate(itertools.product(*grid.values())):
        ui.state.update(**dict(zip(grid, point)))
        for j, (mid, trait) in enumerate(keys):
            w = widgets[mid]
            assert es.rebuild(payload, payload["states"][i][j]) == _plain(w.get_state(trait)[trait]), (point, trait)
        hd = ui.table.headline
        assert (hd["batch_size"], hd["prompt_len"]) == point[:2]
    # the headline of every state agrees with the vectorized sweep over the same grid
    df = lr.sweep(dict(TINY), "h100-sxm", batch_size=[1, 4], prompt_len=[16, 64], gen_len=8, w_bits=[16, 4])
    h = keys.index((ui.table.model_id, "headline"))
    for i, point in enumerate(itertools.product(*grid.values())):
        hd = es.rebuild(payload, payload["states"][i][h])
        row = df[(df.batch_size == point[0]) & (df.prompt_len == point[1]) & (df.w_bits == point[2])].iloc[0]
        for k in ("ttft_s", "tpot_s", "e2e_s", "throughput_tokens_per_s"):
            assert hd[k] == pytest.approx(row[k], rel=1e-9), (point, k)
    # the controls the page reads: the grid's axes (and only those) vary
    assert [t["label"] for t in payload["sig"]["traits"]] == ["batch size", "prompt tokens", "weights", "phase"]
    # the weights drop-down offers only the grid's two formats; other controls are disabled
    patch = cap["manager_patch"]
    assert patch[ui.controls.w_bits.model_id]["_options_labels"] == ["16 bit (fp16)", "4 bit (int4)"]
    assert patch[ui.controls.kv_bits.model_id]["disabled"] is True
    assert patch[ui.controls.model.model_id]["disabled"] is True
    ui.close()


def grid_point(grid, **point):
    i = 0
    for name, values in grid.items():
        i = i * len(values) + values.index(point[name])
    return i


def test_default_grid_and_page(tmp_path):
    import llmroof_widgets as lr

    ui = lr.Dashboard(model=dict(TINY), hardware="rtx-4090", prompt_len=64, gen_len=8, batch_size=3, tp=2)
    g = es.default_grid(ui)
    fit = ui.state.result.memory["max_batch_size"]
    assert g["batch_size"][:3] == [1, 2, 3] and max(g["batch_size"]) <= max(ui.controls.batch_size.max, 3)
    assert all(b & (b - 1) == 0 or b == 3 for b in g["batch_size"]) and 2 * max(g["batch_size"]) > min(fit, 256)
    # with a knob enabled the full default would be 10 × 3 × 2 × 3 × 2 × 2 = 720 settings: the
    # generation length, then the KV format keep their current value (≤ DEFAULT_MAX_STATES)
    assert g["prompt_len"] == [16, 64, 256] and g["gen_len"] == [8] and g["kv_bits"] == [16]
    assert g["w_bits"] == [16, 8, 4] and g["tp"] == [1, 2]
    assert math.prod(len(v) for v in g.values()) <= es.DEFAULT_MAX_STATES
    small = {k: v[:2] for k, v in g.items()}  # the default grid's export is timed in benchmarks/bench_export.py
    t0 = time.perf_counter()
    path = export_html(ui, tmp_path / "tiny.html", grid=small)
    took = time.perf_counter() - t0
    n = math.prod(len(v) for v in small.values())
    print(f"\ndefault grid: {n} states, export {took:.2f} s, {path.stat().st_size / 1e6:.2f} MB")
    assert path.stat().st_size < 15e6
    page = path.read_text(encoding="utf-8")
    state = state_of(page)
    [sw] = [s for s in state.values() if s["state"].get("payload")]
    payload = es.decode(sw["state"]["payload"])
    assert len(payload["states"]) == n and "precomputed settings" in sw["state"]["summary"]
    assert "precomputed settings" in page and "sweep and serving sections are not recomputed" in page
    # grid=False: the figures of the current setting only (no switcher)
    static = render_html(ui, grid=False)
    assert not any(s["state"].get("payload") for s in state_of(static).values())
    ui.close()


def test_grid_errors(tmp_path):
    import llmroof_widgets as lr

    ui = lr.Dashboard(model=dict(TINY), hardware="h100-sxm", prompt_len=64, gen_len=8)
    with pytest.raises(ValueError, match="grid axis 'batch' is not allowed; allowed: hardware, batch_size"):
        export_html(ui, tmp_path / "x.html", grid={"batch": [1, 2]})
    with pytest.raises(ValueError, match="at most 4096"):
        export_html(
            ui, tmp_path / "x.html", grid={"batch_size": list(range(1, 100)), "prompt_len": list(range(1, 100))}
        )
    with pytest.raises(ValueError, match="has no values"):
        export_html(ui, tmp_path / "x.html", grid={"batch_size": []})
    with pytest.raises(ValueError, match="grid= needs an lr.Dashboard"):
        export_html(W.Label("x"), tmp_path / "x.html", grid={"batch_size": [1]})
    # a value the drop-down cannot show would make two states look alike to the page
    with pytest.raises(ValueError, match="cannot show"):
        export_html(ui, tmp_path / "x.html", grid={"w_bits": [16, 3]})
    assert ui.state.w_bits == 16 and not ui.state.error  # restored
    ui.close()


def test_export_with_the_lazy_sections_open(tmp_path):
    """The sweep and serving sections (lazy) are not recomputed per state: their figures stay those
    of the exported setting, the page says so, and the sections are live again afterwards."""
    import llmroof_widgets as lr

    ui = lr.Dashboard(
        model=dict(TINY), hardware="h100-sxm", prompt_len=64, gen_len=8, sweep_open=True, serving_open=True
    )
    assert ui.sweep.active and ui.serving.active
    calls = []
    for view in (ui.sweep, ui.serving):
        view.observe(lambda c: calls.append(c["new"]), names="active")
    grid = {"batch_size": [1, 2], "w_bits": [16, 4]}
    cap = es.capture_states(ui, es.check_grid(ui, grid))
    assert ui.sweep.active and ui.serving.active and calls == [False, False, True, True]
    serving_ids = {w.model_id for w in es._walk(ui.serving)} | {w.model_id for w in es._walk(ui.sweep)}
    assert not serving_ids & {mid for mid, _ in cap["payload"]["keys"]}
    page = render_html(ui, grid=grid)
    assert "sweep and serving sections are not recomputed" in page
    ui.close()


def test_a_second_view_of_the_same_state_is_left_out(tmp_path):
    import llmroof_widgets as lr

    ui = lr.Dashboard(model=dict(TINY), hardware="h100-sxm", prompt_len=64, gen_len=8)
    other = lr.Dashboard(state=ui.state)  # recomputes too while the grid is evaluated
    grid = {"batch_size": [1, 2]}
    cap = es.capture_states(ui, es.check_grid(ui, grid))
    mine = set(W.embed.dependency_state(ui, drop_defaults=False))
    assert {mid for mid, _ in cap["payload"]["keys"]} <= mine
    assert other.table.model_id not in mine
    assert export_html(ui, tmp_path / "one.html", grid=grid).is_file()
    other.close()
    ui.close()


def test_page_manager_skips_ajv_and_the_state_is_checked_at_export(dashboard_page):
    """html-manager's ajv schema compilation is taken out of the page's copy of the manager (both sites of the
    pinned embed-amd.js); the same schemas are checked at export instead."""
    text, sites = export.embed_script()
    assert sites == 2
    original = export._read_script(export.embed_asset_path("embed-amd.js"))
    assert original.count(".compile(") - text.count(".compile(") == 4  # two validators at each of two sites
    inline = [t for a, t in parse(dashboard_page).scripts if not a]
    assert any(escape_js(export.without_widgets_v7(text)) == t for t in inline)
    # the checker: what ajv rejected raises at export, naming where
    model = {"model_name": "M", "model_module": "m", "model_module_version": "1", "state": {}}
    good = {"version_major": 2, "version_minor": 0, "state": {"a": model}}
    views = [{"version_major": 2, "version_minor": 0, "model_id": "a"}]
    export.validate_state({"manager_state": good, "view_specs": views})
    for bad, where in (
        ({**good, "version_major": 3}, "/version_major"),
        ({**good, "state": {"a": {**model, "model_name": 1}}}, "/state/a/model_name"),
        ({**good, "state": {"a": {**model, "state": []}}}, "/state/a/state"),
    ):
        with pytest.raises(ValueError, match=where):
            export.validate_state({"manager_state": bad, "view_specs": views})
    with pytest.raises(ValueError, match="model_id"):
        export.validate_state({"manager_state": good, "view_specs": [{"version_major": 2}]})
    with pytest.raises(ValueError, match="keywords"):
        export.schema_errors({}, {"type": "object", "patternProperties": {}})


def test_page_leaves_out_ipywidgets_7_modules_it_does_not_need(dashboard_page):
    inline = [t for a, t in parse(dashboard_page).scripts if not a]
    embed = next(t for t in inline if 'define("@jupyter-widgets/html-manager"' in t)
    assert 'define("@jupyter-widgets/base7"' not in embed and 'define("@jupyter-widgets/controls7"' not in embed
    assert 'define("@jupyter-widgets/base"' in embed and 'define("@jupyter-widgets/controls"' in embed
    full = export.embed_script()[0]
    cut = export.without_widgets_v7(full)
    assert len(full) - len(cut) > 500_000 and 'define("@jupyter-widgets/controls7"' in full
    # a model saved by ipywidgets 7 keeps them
    v8 = {"model_module": "@jupyter-widgets/controls", "model_module_version": "2.0.0", "state": {}}
    v7 = {**v8, "model_module_version": "1.5.0"}
    assert not export.needs_widgets_v7({"state": {"a": v8}})
    assert export.needs_widgets_v7({"state": {"a": v8, "b": v7}})
    assert export.without_widgets_v7("no such boundaries") == "no such boundaries"
