"""Static HTML export in a real browser: opened from file:// in Debian's Chromium with every
http(s) request aborted, the widgets must render with zero page errors and nothing injected may run."""

import anywidget
import bqplot as bq
import ipywidgets as W
import pytest
import traitlets

import llmroof_widgets.widgets
from llmroof_widgets.export import export_html

pytestmark = pytest.mark.browser

EVIL = "</script><script>window.pwned=1</script>"
EVIL2 = "<!--<script>window.pwned=2</script>-->"
RENDER_TIMEOUT_MS = 60_000  # generous: CI machines are shared; the measured time is printed


class Echo(anywidget.AnyWidget):
    _esm = """
    export default {
      render({ model, el }) {
        el.classList.add("t-any");
        const draw = () => { el.textContent = model.get("text") + " | selected " + JSON.stringify(Array.from(model.get("selected") || [])); };
        draw();
        model.on("change:selected", draw);
      },
    };"""
    text = traitlets.Unicode("").tag(sync=True)
    selected = traitlets.Any(None).tag(sync=True)


@pytest.fixture
def offline_page(browser):
    """A fresh page that refuses every http(s) request and records errors and attempted requests."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    errors, console_errors, requests = [], [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on(
        "requestfailed",
        lambda r: errors.append(f"request failed: {r.url[:200]}") if r.url.startswith("file:") else None,
    )

    def refuse(route):
        requests.append(route.request.url)
        route.abort()

    page.route("http://**/*", refuse)
    page.route("https://**/*", refuse)
    page.errors, page.console_errors, page.refused = errors, console_errors, requests
    yield page
    ctx.close()


def open_rendered(page, path, ready_js: str) -> None:
    """Open ``path`` through file:// and wait until ``ready_js`` is true."""
    page.goto(path.resolve().as_uri())
    page.wait_for_function(ready_js, timeout=RENDER_TIMEOUT_MS)


def assert_clean(page):
    assert page.errors == [], page.errors
    assert page.console_errors == [], page.console_errors
    assert page.refused == [], f"the page tried the network: {page.refused}"
    assert page.evaluate("window.pwned") is None


def test_anywidget_and_bqplot_render_offline(offline_page, tmp_path):
    page = offline_page
    echo = Echo(text=EVIL)
    scatter = bq.Scatter(
        x=[1, 2, 3],
        y=[3, 1, 2],
        names=["a", "b", EVIL2],
        scales={"x": bq.LinearScale(), "y": bq.LinearScale()},
        interactions={"click": "select"},
        selected_style={"stroke": "red", "stroke-width": "4px"},
    )
    fig = bq.Figure(marks=[scatter], title=EVIL, animation_duration=0)
    W.jslink((scatter, "selected"), (echo, "selected"))  # a front-end link: must survive the export
    path = export_html([W.VBox([echo, W.Label(EVIL2)]), fig], tmp_path / "pair.html", title=EVIL)

    open_rendered(
        page, path, "document.querySelector('.t-any') && document.querySelectorAll('.bqplot .dot').length === 3"
    )
    assert page.inner_text(".t-any").startswith(EVIL)  # shown as text, never run
    assert EVIL2 in page.inner_text("body")
    page.locator(".bqplot .dot").nth(1).dispatch_event("click")
    page.wait_for_function("document.querySelector('.t-any').textContent.endsWith('selected [1]')", timeout=10_000)
    # the icon font (accordion and toolbar icons) comes from the page itself, not from a missing file
    page.evaluate("""async () => { const i = document.createElement('i'); i.className = 'fa fa-check';
        document.body.appendChild(i); await document.fonts.ready; }""")
    assert page.evaluate("""() => Array.from(document.fonts).some(f => f.family.includes('Font Awesome')
        && f.weight === '900' && f.status === 'loaded')""")
    assert_clean(page)


def test_dashboard_renders_offline_and_links_table_and_roofline(offline_page, tmp_path):
    import llmroof_widgets as lr

    if not hasattr(llmroof_widgets.widgets, "Dashboard"):
        pytest.skip("lr.Dashboard does not exist yet")
    page = offline_page
    ui = lr.Dashboard(model="meta-llama/Llama-3.1-8B", hardware="h100-sxm", prompt_len=2048, gen_len=256)
    rows = ui.table.rows
    path = export_html(ui, tmp_path / "dashboard.html")
    ui.close()

    n = len(rows)
    n_dots = len({tuple(r["dot"]) for r in rows if r.get("dot") is not None})  # operators at one point share a dot
    open_rendered(
        page,
        path,
        f"document.querySelectorAll('tr.lr-row').length === {n} && "
        f"document.querySelectorAll('.lr-roofline .dot').length >= {n_dots}",
    )

    def selected_dots():
        return page.evaluate("""() => Array.from(document.querySelectorAll('.lr-roofline .dot'))
            .filter(d => d.style.strokeWidth === '4px').map(d => d.__data__ && d.__data__.name)""")

    # a table row → its roofline dot (linked on the front end: no kernel here)
    for op, phase in (("q_proj", "decode"), ("lm_head", "prefill")):
        row = next(r for r in rows if r["name"] == op and r["phase"] == phase)
        assert row.get("dot") is not None
        page.click(f'tr.lr-row[data-index="{row["index"]}"]')
        page.wait_for_selector(f'tr.lr-row.selected[data-index="{row["index"]}"]', timeout=10_000)
        prefix = f"{phase} · {row['layer_type']} · {op} "
        page.wait_for_function(
            """(prefix) => { const on = Array.from(document.querySelectorAll('.lr-roofline .dot'))
                 .filter(d => d.style.strokeWidth === '4px');
               return on.length === 1 && on[0].__data__ && on[0].__data__.name.includes(prefix); }""",
            arg=prefix,
            timeout=10_000,
        )
        assert len(selected_dots()) == 1

    # and a dot → its table row
    row = next(r for r in rows if r["name"] == "down_proj" and r["phase"] == "prefill")
    page.evaluate(
        """(prefix) => { const d = Array.from(document.querySelectorAll('.lr-roofline .dot'))
        .find(d => d.__data__ && d.__data__.name.includes(prefix));
        d.dispatchEvent(new MouseEvent('click', { bubbles: true })); }""",
        f"prefill · {row['layer_type']} · down_proj ",
    )
    page.wait_for_selector(f'tr.lr-row.selected[data-index="{row["index"]}"]', timeout=10_000)
    assert_clean(page)


# -- precomputed states: the page's controls switch settings with no kernel ---------------------------
def grid_index(grid, **point):
    """Index of a point in the grid's product (the order of export_states.capture_states)."""
    i = 0
    for name, values in grid.items():
        i = i * len(values) + values.index(point[name])
    return i


def _close(a, b, rel=1e-9):
    return a == b or abs(a - b) <= rel * max(abs(a), abs(b))


def test_exported_dashboard_switches_states_offline(offline_page, tmp_path):
    """Batch size, prompt length and weight format changed in the offline page: every switch shows
    the engine's figures for the new setting (checked against analyze and against the views built on
    the kernel for that setting), and a value outside the grid is flagged, never shown as current."""
    import llmroof_widgets as lr

    page = offline_page
    model, hw = "meta-llama/Llama-3.1-8B", "h100-sxm"
    ui = lr.Dashboard(model=model, hardware=hw, prompt_len=2048, gen_len=256)
    grid = {"batch_size": [1, 2, 4, 8], "prompt_len": [512, 2048], "w_bits": [16, 4]}
    path = export_html(ui, tmp_path / "states.html", grid=grid)
    table_id = ui.table.model_id
    took = open_rendered(
        page, path, "document.body.dataset.lrExportReady === '1' && document.querySelectorAll('tr.lr-row').length > 10"
    )
    print(f"\nexport with 16 states ({path.stat().st_size / 1e6:.2f} MB): open → ready {took * 1000:.0f} ms")
    assert [a["name"] for a in page.evaluate("() => window.__lrExport.payload.axes")] == list(grid)

    def control(desc, kind):
        return page.locator(f".widget-{kind}", has=page.locator(f"label:text-is('{desc}')"))

    def set_slider(value):
        # the IntSlider's readout is editable: type the value as a reader would
        ro = control("batch size", "slider").locator(".widget-readout")
        ro.click()
        page.keyboard.press("Control+A")
        page.keyboard.type(str(value))
        page.keyboard.press("Enter")

    def set_prompt(value):
        box = control("prompt tokens", "inline-hbox").locator("input")
        box.fill(str(value))
        box.press("Enter")

    def set_weights(label):
        control("weights", "dropdown").locator("select").select_option(label=label)

    def table_model(trait):
        return page.evaluate(
            "async ([id, t]) => { const m = await window.__lrExport.get(id); return m.get(t); }", [table_id, trait]
        )

    before = page.inner_text(".lr-headline")
    labels = {16: "16 bit (fp16)", 4: "4 bit (int4)"}
    for batch, prompt, w in [(4, 2048, 16), (4, 512, 16), (4, 512, 4), (1, 2048, 4)]:
        set_slider(batch)
        set_prompt(prompt)
        set_weights(labels[w])
        i = grid_index(grid, batch_size=batch, prompt_len=prompt, w_bits=w)
        page.wait_for_function("(i) => document.body.dataset.lrExportState === i", arg=str(i), timeout=10_000)
        gen = lr.analyze(model, hw, batch_size=batch, prompt_len=prompt, gen_len=256, w_bits=w).to_dict()["generation"]
        hd = table_model("headline")
        assert (hd["batch_size"], hd["prompt_len"], hd["w_bits"]) == (batch, prompt, w)
        for k in ("ttft_s", "tpot_s", "e2e_s", "tokens_per_s", "throughput_tokens_per_s"):
            assert _close(hd[k], gen[k]), (batch, prompt, w, k, hd[k], gen[k])
        # every row of the table is the kernel's row for this setting
        ui.state.update(batch_size=batch, prompt_len=prompt, w_bits=w)
        rows = table_model("rows")
        assert len(rows) == len(ui.table.rows)
        for got, want in zip(rows, ui.table.rows):
            assert got["name"] == want["name"] and _close(got["time_s"], want["time_s"]), (got["name"], batch)
            assert _close(got["arithmetic_intensity"], want["arithmetic_intensity"])
        # and the page shows it: the headline text changed, the roofline dots sit at the rows' intensities
        shown = page.inner_text(".lr-headline")
        assert shown != before
        before = shown
        xs = page.evaluate("""() => Array.from(document.querySelectorAll('.lr-roofline .dot'))
            .map(d => d.__data__ && d.__data__.x).filter(x => x != null)""")
        ais = [r["arithmetic_intensity"] for r in ui.table.rows if r.get("dot") is not None]
        assert ais and all(any(_close(x, a, 1e-6) for x in xs) for a in ais)
    ui.close()
    # a value outside the grid: a notice, the figures dimmed, never silently stale
    set_slider(3)
    page.wait_for_function("document.body.dataset.lrExportState === 'offgrid'", timeout=10_000)
    notice = page.inner_text(".lr-export-notice")
    assert "batch size = 3" in notice and "live kernel" in notice and "1, 2, 4, 8" in notice, notice
    assert page.evaluate("document.body.classList.contains('lr-offgrid')")
    assert page.evaluate("getComputedStyle(document.querySelector('.lr-layer-table')).opacity") == "0.35"
    set_slider(8)
    i = grid_index(grid, batch_size=8, prompt_len=2048, w_bits=4)
    page.wait_for_function("(i) => document.body.dataset.lrExportState === i", arg=str(i), timeout=10_000)
    assert not page.evaluate("document.body.classList.contains('lr-offgrid')")
    assert page.locator(".lr-export-notice").is_hidden()
    # controls outside the grid are disabled; the weight drop-down offers only the grid's formats
    assert control("KV cache", "dropdown").locator("select").is_disabled()
    opts = control("weights", "dropdown").locator("select option").all_inner_texts()
    assert [o.replace("\xa0", " ") for o in opts] == list(labels.values())
    switches = page.evaluate("window.__lrExport.switches")
    print(f"state switches: {len(switches)}, median {sorted(switches)[len(switches) // 2]:.1f} ms")
    assert_clean(page)
