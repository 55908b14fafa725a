"""The dashboard in a real JupyterLab (Debian's Chromium through Playwright).

One Lab server and one Chromium for the session; this module opens ``quickstart.ipynb`` once,
runs every cell, and then drives the dashboard the way a user does (clicks, keys, typing) and
reads the kernel back through cells it appends to the notebook. Every figure on the page is
compared with ``lr.analyze(...)`` of the same inputs, computed here in the test process.

The tests share the page and run in file order; each one restores the inputs it changed.
The last one is the dark theme. Latency is measured by ``benchmarks/bench_browser.py``, not here.
"""

from __future__ import annotations

import math
import re
import time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from playwright.sync_api import expect

import llmroof_widgets as lr

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"  # gitignored
UI_TIMEOUT_MS = 30_000  # one kernel round trip or front-end update; generous for shared CI
DASH = ".lr-dashboard"
SELECT_RGB = "rgb(230, 0, 126)"  # the roofline's selected_style stroke (#e6007e)


# -- the front end's number formats (js/common.js), mirrored to compare texts exactly -----------
def _to_fixed(x: float, digits: int) -> str:
    """JS Number.prototype.toFixed: the exact binary value, ties rounded up (for x >= 0)."""
    q = Decimal(1).scaleb(-digits)
    s = str(Decimal(abs(x)).quantize(q, rounding=ROUND_HALF_UP))
    return ("-" if x < 0 and Decimal(s) != 0 else "") + s


def _sig3(x: float) -> str:
    a = abs(x)
    return _to_fixed(x, 0 if a >= 100 else 1 if a >= 10 else 2)


def _with_prefix(x, unit: str) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    if x == 0:
        return f"0 {unit}".rstrip()
    prefixes = ["", "k", "M", "G", "T", "P", "E"]
    i = 0
    while i < len(prefixes) - 1 and abs(x) >= 1000 ** (i + 1) * 0.9995:
        i += 1
    return f"{_sig3(x / 1000**i)} {prefixes[i]}{unit}".rstrip()


def js_flops(x) -> str:
    return _with_prefix(x, "FLOP")


def js_bytes(x) -> str:
    return _with_prefix(x, "B")


def js_time(s) -> str:
    if s is None or not math.isfinite(s):
        return "–"
    if s == 0:
        return "0 s"
    a = abs(s)
    if a < 1e-6:
        return f"{_sig3(s * 1e9)} ns"
    if a < 1e-3:
        return f"{_sig3(s * 1e6)} µs"
    if a < 1:
        return f"{_sig3(s * 1e3)} ms"
    return f"{_sig3(s)} s"


def js_number(x) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{int(x):,}" if float(x).is_integer() else _sig3(x)


# -- what the page shows -------------------------------------------------------------------------
HEADLINE_JS = f"""() => Object.fromEntries([...document.querySelectorAll('{DASH} .lr-figure')]
    .map(f => [f.dataset.key, f.querySelector('.lr-figure-value').textContent]))"""

ROWS_JS = f"""() => [...document.querySelectorAll('{DASH} .lr-table tr.lr-row')].map(tr => ({{
    index: Number(tr.dataset.index), phase: tr.dataset.phase, layer_type: tr.dataset.layerType, name: tr.dataset.op,
    selected: tr.classList.contains('selected'),
    count: tr.querySelector('.lr-col-count').textContent, flops: tr.querySelector('.lr-col-flops').textContent,
    bytes: tr.querySelector('.lr-col-bytes').textContent, time: tr.querySelector('.lr-col-time_s').textContent}}))"""

# the operators' dots (the ridge-point diamonds are dots too, named "<dtype>: ... FLOP/B")
DOTS_JS = f"""() => [...document.querySelectorAll('{DASH} .lr-roofline .dot')].map(d => {{
    const g = d.closest('.object_grp') || d.parentNode;
    const data = d.__data__ || g.__data__ || {{}};
    const r = d.getBoundingClientRect();
    return {{name: data.name || '', x: data.x, y: data.y, transform: g.getAttribute('transform') || '',
             style: d.getAttribute('style') || '', w: r.width, h: r.height}};
  }}).filter(d => /^(prefill|decode) · /.test(d.name))"""

BARS_JS = f"""() => [...document.querySelectorAll('{DASH} .lr-memory .bar')].map(b => ({{
    x: b.__data__.x, y: b.__data__.y, height: Number(b.getAttribute('height'))}}))"""


def engine(inputs: dict):
    """The engine's result for the dashboard's inputs (as the kernel reports them), here in the test."""
    return lr.analyze(**inputs)


def headline_texts(r) -> dict:
    g, m = r.generation, r.memory
    return {
        "ttft": js_time(g["ttft_s"]),
        "tpot": js_time(g["tpot_s"]),
        "e2e": js_time(g["e2e_s"]),
        "memory": f"{js_bytes(m['total_bytes'])} / {js_bytes(m['capacity_bytes'])}",
        "fits": "yes" if m["fits"] else "no",
    }


def engine_ops(d: dict):
    return [(ph, op) for ph in ("prefill", "decode") for op in d[ph]["ops"]]


def expected_rows(d: dict) -> list[tuple]:
    return [
        (
            ph,
            op["layer_type"],
            op["name"],
            js_number(op["count"]),
            js_flops(op["flops"]),
            js_bytes(op["bytes"]),
            js_time(op["time_s"]),
        )
        for ph, op in engine_ops(d)
    ]


def expected_dots(d: dict) -> list[tuple]:
    """(label, intensity, FLOP/s) of every operator with a dot: FLOPs, time and intensity > 0."""
    out = []
    for ph, op in engine_ops(d):
        if (op["flops"] or 0) > 0 and (op["time_s"] or 0) > 0 and (op["arithmetic_intensity"] or 0) > 0:
            out.append(
                (f"{ph} · {op['layer_type']} · {op['name']} ×", op["arithmetic_intensity"], op["flops"] / op["time_s"])
            )
    return sorted(out)


def dot_members(name: str) -> list[str]:
    """Every operator a dot stands for: operators at one point share a dot whose name joins them
    with " + " ('decode · decoder · q_proj ×32 (…) + decode · decoder · o_proj ×32 (…) — …')."""
    return [m.split("×", 1)[0] + "×" for m in name.split(" — ", 1)[0].split(" + ")]


SAME_POINT = (
    10**0.01
)  # a shared dot's other operators are within 0.01 decade of its position (_data.SAME_POINT_DECADES)


def shown_dots(dots) -> list[tuple]:
    """(label, x, y, first) for every operator of every dot: the dot sits at its first operator's point."""
    return sorted((m, d["x"], d["y"], i == 0) for d in dots for i, m in enumerate(dot_members(d["name"])))


def assert_same_dots(shown, expected):
    assert [s[0] for s in shown] == [e[0] for e in expected]
    for s, e in zip(shown, expected):
        if s[3]:  # the operator the dot is placed at: exactly its point
            assert s[1] == pytest.approx(e[1], rel=1e-9) and s[2] == pytest.approx(e[2], rel=1e-9), (s, e)
        else:  # another operator at the same spot
            assert 1 / SAME_POINT < s[1] / e[1] < SAME_POINT and 1 / SAME_POINT < s[2] / e[2] < SAME_POINT, (s, e)


def wait_dots(nb, expected):
    """Wait until the operators' dots are at ``expected`` (label, intensity, FLOP/s) points."""
    nb.wait(
        f"""([want, tol]) => {{
        const got = ({DOTS_JS})().flatMap(d => d.name.split(' — ')[0].split(' + ')
            .map((m, i) => [m.split('×')[0] + '×', d.x, d.y, i === 0]))
          .sort((a, b) => a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] - b[1] || a[2] - b[2]);
        const close = (a, b, first) => first ? Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(a), Math.abs(b))
                                             : a / b < tol && b / a < tol;
        return got.length === want.length && got.every((g, i) =>
          g[0] === want[i][0] && close(g[1], want[i][1], g[3]) && close(g[2], want[i][2], g[3]));
      }}""",
        arg=[[list(e) for e in expected], SAME_POINT],
    )


def is_highlighted(dot) -> bool:
    st = dot["style"].lower()
    return SELECT_RGB in st or "e6007e" in st


def wait_probe(nb, expr: str, want, timeout_s: float = UI_TIMEOUT_MS / 1000):
    """Re-read a kernel expression until it equals ``want`` (a browser change reaches the kernel
    asynchronously); returns the last value read."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = nb.probe(expr)
        if got == want or time.monotonic() > deadline:
            return got


def wait_headline(nb, texts: dict):
    """Wait until the headline figures read ``texts`` (the subset given)."""
    nb.wait(
        f"""(want) => {{
        const got = ({HEADLINE_JS})();
        return Object.entries(want).every(([k, v]) => got[k] === v);
      }}""",
        arg=texts,
    )


def control(nb, label: str, kind: str = ".widget-inline-hbox"):
    page = nb.page
    return (
        page.locator(f"{DASH} .lr-controls {kind}")
        .filter(has=page.locator("label.widget-label", has_text=re.compile(rf"^{re.escape(label)}$")))
        .first
    )


@pytest.fixture(autouse=True)
def _errors_per_test(request):
    """Each test checks the console / page errors of its own span (the last test checks them all)."""
    if "quickstart" in request.fixturenames:
        request.getfixturevalue("quickstart").mark()


# -- 1. the notebook runs and the views show the engine's numbers -------------------------------
def test_quickstart_renders_engine_numbers(quickstart):
    nb = quickstart
    assert nb.cell_errors() == []
    inputs = nb.probe("ui.state.inputs()")
    r = engine(inputs)
    d = r.to_dict()

    # headline (TTFT, TPOT, end to end, memory, fits) as the engine computes them here
    got = nb.page.evaluate(HEADLINE_JS)
    want = headline_texts(r)
    assert {k: got.get(k) for k in want} == want
    title = nb.page.text_content(f"{DASH} .lr-headline .lr-title")
    assert d["model"]["name"] in title and d["hardware"]["name"] in title

    # every table row: operator, count, FLOPs, bytes and time of one run, in the engine's order
    rows = nb.page.evaluate(ROWS_JS)
    assert [
        (r_["phase"], r_["layer_type"], r_["name"], r_["count"], r_["flops"], r_["bytes"], r_["time"]) for r_ in rows
    ] == expected_rows(d)

    # one roofline dot per operator with FLOPs, at (intensity, FLOPs / time), drawn with a size
    dots = nb.page.evaluate(DOTS_JS)
    assert_same_dots(shown_dots(dots), expected_dots(d))
    assert all(dt["w"] > 0 and dt["h"] > 0 and dt["transform"].startswith("translate") for dt in dots)

    # memory bars (GB): weights, KV cache, activations at the prefill peak and at the end of decode
    m = d["memory"]
    bars = nb.page.evaluate(BARS_JS)
    by_x = {}
    for b in bars:
        by_x.setdefault(b["x"], []).append(b["y"])
    kv_p = m.get("kv_cache_prompt_bytes", m["kv_cache_bytes"])
    act_p = m.get("activations_prefill_bytes", m["activations_bytes"])
    act_d = m.get("activations_decode_bytes", m["activations_bytes"])
    assert by_x["prefill"] == pytest.approx([m["weights_bytes"] / 1e9, kv_p / 1e9, act_p / 1e9], rel=1e-9)
    assert by_x["end of decode"] == pytest.approx(
        [m["weights_bytes"] / 1e9, m["kv_cache_bytes"] / 1e9, act_d / 1e9], rel=1e-9
    )
    assert max(b["height"] for b in bars) > 10  # drawn, not collapsed
    nb.assert_no_errors(since=0)  # including opening the notebook and running every cell


# -- 2. selection: row -> dot + formula, dot -> row, and the kernel sees it -------------------------
def test_row_and_dot_selection_reach_each_other_and_the_kernel(quickstart):
    nb, page = quickstart, quickstart.page
    d = engine(nb.probe("ui.state.inputs()")).to_dict()
    nb.run_code("ui.selected = []")
    nb.wait(
        f"() => !document.querySelector('{DASH} tr.lr-row.selected')"
        f" && !document.querySelector('{DASH} .lr-formula-title')"
    )

    # table row -> the matching dot is highlighted, the formula panel shows the operator
    row = page.locator(f'{DASH} tr.lr-row[data-phase="decode"][data-op="gate_proj"]').first
    index = int(row.get_attribute("data-index"))
    layer = row.get_attribute("data-layer-type")
    row.click()
    label = f"decode · {layer} · gate_proj ×"
    nb.wait(
        f"""(label) => {{
        const hl = ({DOTS_JS})().filter(d => d.style.toLowerCase().includes('{SELECT_RGB}'));
        return hl.length === 1 && hl[0].name.split(' — ')[0].split(' + ').some(m => m.startsWith(label));
      }}""",
        arg=label,
    )
    nb.wait(
        f"""(i) => {{
        const t = document.querySelector('{DASH} .lr-formula-title');
        return t && Number(t.dataset.index) === i && t.dataset.op === 'gate_proj' && t.dataset.phase === 'decode';
      }}""",
        arg=index,
    )
    op = next(o for o in d["decode"]["ops"] if o["name"] == "gate_proj" and o["layer_type"] == layer)
    formula = page.text_content(f"{DASH} .lr-formula")
    assert js_flops(op["flops"]) in formula and js_bytes(op["bytes"]) in formula and js_time(op["time_s"]) in formula
    assert page.locator(f"{DASH} tr.lr-row.selected").count() == 1
    assert wait_probe(
        nb,
        "[ui.selected, ui.selected_row['name'], " + str(index) + " in ui.roofline.selected_rows()]",
        [[index], "gate_proj", True],
    ) == [[index], "gate_proj", True]

    # roofline dot -> its row is selected: a prefill dot that a click at its centre really hits (P7)
    target = page.evaluate(f"""() => {{
        const dots = [...document.querySelectorAll('{DASH} .lr-roofline .dot')]
          .filter(d => /^prefill · /.test((d.__data__ || {{}}).name || ''));
        for (const d of dots) {{
          d.scrollIntoView({{block: 'center'}});
          const r = d.getBoundingClientRect();
          const x = r.x + r.width / 2, y = r.y + r.height / 2;
          const hit = document.elementFromPoint(x, y);
          if (hit && hit.classList.contains('dot') && (hit.__data__ || {{}}).name
              && /^prefill · /.test(hit.__data__.name) && !hit.__data__.name.includes('gate_proj'))
            return {{x, y, name: hit.__data__.name}};
        }}
        return null;
      }}""")
    assert target is not None, "no prefill dot is clickable at its centre"
    page.mouse.click(target["x"], target["y"])
    # the dot's operators are selected (all of them when several share the dot; the first is shown)
    members = [m[:-1].strip().split(" · ") for m in dot_members(target["name"])]
    phase, layer2, name2 = members[0]
    sel = f'{DASH} tr.lr-row.selected[data-phase="{phase}"][data-layer-type="{layer2}"][data-op="{name2}"]'
    page.wait_for_selector(sel, timeout=UI_TIMEOUT_MS)
    index2 = int(page.get_attribute(sel, "data-index"))
    nb.wait(f"(n) => document.querySelectorAll('{DASH} tr.lr-row.selected').length === n", arg=len(members))
    selected = page.evaluate(
        f"""() => [...document.querySelectorAll('{DASH} tr.lr-row.selected')]
              .map(t => [t.dataset.phase, t.dataset.layerType, t.dataset.op])"""
    )
    assert sorted(selected) == sorted(members)
    nb.wait(
        f"""(i) => {{
        const t = document.querySelector('{DASH} .lr-formula-title');
        return t && Number(t.dataset.index) === i;
      }}""",
        arg=index2,
    )
    hl = [dt for dt in page.evaluate(DOTS_JS) if is_highlighted(dt)]
    assert [dt["name"] for dt in hl] == [target["name"]]
    got = wait_probe(
        nb, "[ui.selected[:1], ui.selected_row['name'], len(ui.selected)]", [[index2], name2, len(members)]
    )
    assert got == [[index2], name2, len(members)]
    nb.assert_no_errors()


# -- 3. a control recomputes on the kernel: the dots move, the headline follows the engine ----------
def test_batch_size_control_moves_dots_and_updates_figures(quickstart):
    nb, page = quickstart, quickstart.page
    inputs = nb.probe("ui.state.inputs()")
    b0 = inputs["batch_size"]
    b1 = 64 if b0 != 64 else 32
    before = {m: dt["transform"] for dt in page.evaluate(DOTS_JS) for m in dot_members(dt["name"])}

    r64 = engine(dict(inputs, batch_size=b1))
    readout = control(nb, "batch size", ".widget-slider").locator(".widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(str(b1))
    page.keyboard.press("Enter")

    wait_headline(nb, headline_texts(r64))
    assert nb.probe("ui.state.batch_size") == b1
    # the dots now sit at the engine's points for the new batch, and the decode ones have moved
    wait_dots(nb, expected_dots(r64.to_dict()))
    assert_same_dots(shown_dots(page.evaluate(DOTS_JS)), expected_dots(r64.to_dict()))
    after = {m: dt["transform"] for dt in page.evaluate(DOTS_JS) for m in dot_members(dt["name"])}
    moved = [k for k in after if k.startswith("decode") and k in before and after[k] != before[k]]
    assert moved, "no decode dot moved"
    rows = page.evaluate(ROWS_JS)
    assert [
        (x["phase"], x["layer_type"], x["name"], x["count"], x["flops"], x["bytes"], x["time"]) for x in rows
    ] == expected_rows(r64.to_dict())

    # back to the first batch size from the kernel: the slider and the views follow
    nb.run_code(f"ui.state.batch_size = {b0}")
    wait_headline(nb, headline_texts(engine(inputs)))
    expect(readout).to_have_text(str(b0), timeout=UI_TIMEOUT_MS)
    wait_dots(nb, expected_dots(engine(inputs).to_dict()))
    nb.assert_no_errors()


# -- 4. invalid input: the message shows, the views keep the last valid result ---------------------
def test_invalid_input_shows_error_and_keeps_last_result(quickstart):
    nb, page = quickstart, quickstart.page
    inputs = nb.probe("ui.state.inputs()")
    head0, rows0, dots0 = page.evaluate(HEADLINE_JS), page.evaluate(ROWS_JS), page.evaluate(DOTS_JS)
    assert page.locator(f"{DASH} .lr-error").count() == 0

    # typed into the model box (a user's typo)
    box = control(nb, "model").locator("input")
    box.fill("no-such-model")
    box.press("Enter")
    page.wait_for_selector(f"{DASH} .lr-error", timeout=UI_TIMEOUT_MS)
    text = page.text_content(f"{DASH} .lr-error")
    assert "no-such-model" in text and "last valid result" in text
    assert page.evaluate(HEADLINE_JS) == head0
    assert page.evaluate(ROWS_JS) == rows0
    assert shown_dots(page.evaluate(DOTS_JS)) == shown_dots(dots0)
    state = nb.probe("[ui.state.model, ui.state.error, ui.result.model.name, ui.result.settings['batch_size']]")
    assert state[0] == "no-such-model" and "no-such-model" in state[1]
    assert state[2] == engine(inputs).model.name

    # set from a cell: a bit width the engine rejects
    box.fill(inputs["model"])
    box.press("Enter")
    page.wait_for_selector(f"{DASH} .lr-error", state="detached", timeout=UI_TIMEOUT_MS)
    err = nb.probe("(setattr(ui.state, 'w_bits', 3), ui.state.error)[1]")
    assert err
    page.wait_for_selector(f"{DASH} .lr-error", timeout=UI_TIMEOUT_MS)
    assert err in page.text_content(f"{DASH} .lr-error-text")
    assert page.evaluate(HEADLINE_JS) == head0
    assert page.evaluate(ROWS_JS) == rows0

    nb.run_code("ui.state.w_bits = 16")
    page.wait_for_selector(f"{DASH} .lr-error", state="detached", timeout=UI_TIMEOUT_MS)
    assert nb.probe("[ui.state.error, ui.state.inputs() == " + repr(inputs) + "]") == ["", True]
    assert page.evaluate(HEADLINE_JS) == head0
    nb.assert_no_errors()


# -- keyboard on a control: each arrow key on the batch slider recomputes (timed in benchmarks/) ----
def test_batch_slider_arrow_keys_recompute(quickstart):
    nb, page = quickstart, quickstart.page
    inputs = nb.probe("ui.state.inputs()")
    b0 = inputs["batch_size"]
    b1 = b0 + 1 if b0 < 256 else b0 - 1  # one slider step
    tpot = {b: headline_texts(engine(dict(inputs, batch_size=b)))["tpot"] for b in (b0, b1)}
    assert tpot[b0] != tpot[b1]
    handle = control(nb, "batch size", ".widget-slider").locator(".noUi-handle")
    handle.scroll_into_view_if_needed()
    handle.focus()
    page.keyboard.press("ArrowRight" if b1 > b0 else "ArrowLeft")
    wait_headline(nb, {"tpot": tpot[b1]})
    assert nb.probe("ui.state.batch_size") == b1
    handle.focus()  # the probe ran a cell: focus is back on the notebook
    page.keyboard.press("ArrowLeft" if b1 > b0 else "ArrowRight")
    wait_headline(nb, {"tpot": tpot[b0]})
    assert nb.probe("ui.state.batch_size") == b0
    nb.assert_no_errors()


# -- 5. dark theme -------------------------------------------------------------------------------
COLORS_JS = f"""() => {{
    const cs = (sel, prop) => {{ const e = document.querySelector(sel); return e ? getComputedStyle(e)[prop] : null; }};
    return {{
      table_fg: cs('{DASH} .lr-table td', 'color'),
      table_head_bg: cs('{DASH} .lr-table th', 'backgroundColor'),
      headline_fg: cs('{DASH} .lr-figure-value', 'color'),
      formula_fg: cs('{DASH} .lr-formula-widget', 'color'),
      axis_text: cs('{DASH} .lr-roofline .axis text', 'fill'),
    }};
  }}"""


def _set_theme(nb, name: str, light: bool):
    page = nb.page
    page.evaluate("(t) => jupyterapp.commands.execute('apputils:change-theme', {theme: t})", name)
    page.wait_for_selector(
        f"body[data-jp-theme-light='{'true' if light else 'false'}']", state="attached", timeout=UI_TIMEOUT_MS
    )
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=UI_TIMEOUT_MS)  # P5


def test_dark_theme_views_follow(quickstart):
    nb, page = quickstart, quickstart.page
    light = page.evaluate(COLORS_JS)
    assert all(light.values()), light
    try:
        _set_theme(nb, "JupyterLab Dark", light=False)
        nb.wait(
            f"(light) => {{ const c = ({COLORS_JS})(); return c.table_fg !== light.table_fg "
            "&& c.table_head_bg !== light.table_head_bg; }",
            arg=light,
        )
        dark = page.evaluate(COLORS_JS)
        for k in ("table_fg", "table_head_bg", "headline_fg", "formula_fg"):
            assert dark[k] != light[k], (k, light[k], dark[k])

        def luminance(rgb):
            v = [float(x) for x in re.findall(r"[\d.]+", rgb)[:3]]
            return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]

        assert luminance(dark["table_fg"]) > luminance(light["table_fg"])  # light text on dark
        ARTIFACTS.mkdir(exist_ok=True)
        dash = page.locator(DASH).first
        dash.scroll_into_view_if_needed()
        dash.screenshot(path=str(ARTIFACTS / "lab-dashboard-dark.png"))
    finally:
        _set_theme(nb, "JupyterLab Light", light=True)
    nb.assert_no_errors()


# -- 6. no console errors or page errors in any of the above -------------------------------------
def test_no_console_or_page_errors(quickstart, capsys):
    if quickstart.ignored:
        with capsys.disabled():
            print(f"\n[browser] ignored external console noise: {quickstart.ignored}", end="")
    quickstart.assert_no_errors(since=0)
