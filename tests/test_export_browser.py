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
