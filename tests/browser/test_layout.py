"""The dashboard read on a laptop and on a desktop screen, in a real JupyterLab (Debian's Chromium).

At 1366×768 and 1920×1080, with JupyterLab's file browser open (what a new user sees), this module
opens a copy of the quickstart notebook, runs it and checks what a student reads:

- the layer table shows every column without a horizontal scroll;
- no label is cut (widget labels, toggle buttons, figure titles, the sweep's status line);
- no two roofline marks sit on the same spot (operators at one point share one dot whose tooltip
  names them all; clicking it selects them all);
- selecting an operator without a dot (the embedding lookup) says so in the roofline;
- opening the formula panel does not move the plots below it;
- every memory segment is readable (the exact figures under the chart), no legend over the bars,
  and the headline's memory figure is the total of the chart's "fits check" bar;
- zero console errors while opening every section (techniques, the memory chart by batch size, the
  sweep), including after an error.

The JupyterLab server's own log has no error dump either (a clean start).
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = "quickstart.ipynb"
UI_TIMEOUT_MS = 30_000  # one kernel round trip or front-end update; generous for shared CI

DASH = ".lr-dashboard"
LAYOUT_NB = "layout.ipynb"
VIEWPORTS = {"1366x768": (1366, 768), "1920x1080": (1920, 1080)}

DOT_CENTRES_JS = f"""() => [...document.querySelectorAll('{DASH} .lr-roofline .dot')].map(d => {{
    const data = d.__data__ || (d.closest('.object_grp') || d.parentNode).__data__ || {{}};
    const r = d.getBoundingClientRect();
    return {{name: data.name || '', x: r.x + r.width / 2, y: r.y + r.height / 2, w: r.width}};
  }}).filter(d => /^(prefill|decode) · /.test(d.name))"""

# elements whose text must not be cut: their content is no wider than their box
CUT_LABELS_JS = f"""() => {{
    const sel = ['.widget-label', '.widget-toggle-button', '.lr-sweep-status', '.widget-button',
                 '.jupyter-widget-Collapse-header', '.lr-figure-label', '.lr-figure-value'];
    const out = [];
    for (const el of document.querySelectorAll(sel.map(s => '{DASH} ' + s).join(', '))) {{
      if (!el.offsetParent || !el.textContent.trim()) continue;        // hidden, or an empty label
      if (el.scrollWidth > el.clientWidth + 1) out.push(el.textContent.trim());
    }}
    // bqplot titles and axis labels: inside their figure
    for (const svg of document.querySelectorAll('{DASH} .bqplot svg.svg-figure, {DASH} .bqplot > svg')) {{
      const box = svg.getBoundingClientRect();
      if (!box.width) continue;
      for (const t of svg.querySelectorAll('text.mainheading, .axislabel')) {{
        const r = t.getBoundingClientRect();
        if (!t.textContent.trim() || !r.width) continue;
        if (r.left < box.left - 1 || r.right > box.right + 1) out.push(t.textContent.trim());
      }}
    }}
    return out;
  }}"""


# what a figure's legend box covers: markers (their centres) and text labels (any overlap)
LEGEND_OVER_JS = f"""() => {{
    const out = [];
    for (const fig of document.querySelectorAll('{DASH} .bqplot')) {{
      const boxes = [...fig.querySelectorAll('g.g_legend')].map(g => g.getBoundingClientRect()).filter(r => r.width > 0);
      for (const b of boxes) {{
        for (const d of fig.querySelectorAll('.dot')) {{
          if (d.closest('g.g_legend')) continue;  // the legend's own samples
          const r = d.getBoundingClientRect(), x = r.x + r.width / 2, y = r.y + r.height / 2;
          if (r.width && x > b.left && x < b.right && y > b.top && y < b.bottom) out.push('marker ' + ((d.__data__ || {{}}).name || ''));
        }}
        for (const t of fig.querySelectorAll('text.label')) {{
          const r = t.getBoundingClientRect();
          if (!r.width || !t.textContent.trim()) continue;
          if (r.left < b.right && r.right > b.left && r.top < b.bottom && r.bottom > b.top) out.push('label ' + t.textContent);
        }}
      }}
    }}
    return out;
  }}"""


@pytest.fixture(scope="module", params=list(VIEWPORTS), ids=list(VIEWPORTS))
def dashboard(request, browser, lab, lab_notebook):
    """The quickstart notebook (a copy of its own, so its kernel is this module's) at one viewport,
    file browser open, run to the end."""
    width, height = VIEWPORTS[request.param]
    if not (lab["root"] / LAYOUT_NB).exists():
        shutil.copy(REPO / "examples" / NOTEBOOK, lab["root"] / LAYOUT_NB)
    ctx = browser.new_context(viewport={"width": width, "height": height})
    page = ctx.new_page()
    nb = lab_notebook(page, lab, LAYOUT_NB)
    try:
        nb.open()
        page.evaluate("() => jupyterapp.commands.execute('filebrowser:activate')")  # a new user's layout
        nb.run_all()
        nb.wait(f"""() => document.querySelectorAll('{DASH} .lr-table tr.lr-row').length > 0
                     && document.querySelectorAll('{DASH} .lr-roofline .dot').length > 0
                     && document.querySelectorAll('{DASH} .lr-memory .bar').length > 0""")
        nb.viewport = request.param
        yield nb
    except Exception:
        (REPO / "test-artifacts").mkdir(exist_ok=True)
        page.screenshot(path=str(REPO / "test-artifacts" / f"layout-{request.param}-failure.png"))
        raise
    finally:
        ctx.close()


SHOT_AT = {
    "table": ".lr-table-scroll",
    "nodot": ".lr-formula",
    "memory": ".lr-memory",
    "error-sections": ".lr-sweep-section",
    "sections": ".lr-sweep-section",
}


def _shot(nb, what: str) -> None:
    """A screenshot (test-artifacts/, gitignored) with the part the test looked at in view."""
    nb.page.evaluate(f"() => document.querySelector('{DASH} {SHOT_AT[what]}').scrollIntoView({{block: 'start'}})")
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    nb.page.screenshot(path=str(REPO / "test-artifacts" / f"layout-{nb.viewport}-{what}.png"))


def assert_roofline_labels_clear(page, dots=None) -> list[str]:
    """No text of the roofline (key, notes, roof labels) covers a dot's centre or another text; returns the texts."""
    dots = page.evaluate(DOT_CENTRES_JS) if dots is None else dots
    texts = page.evaluate(f"""() => [...document.querySelectorAll('{DASH} .lr-roofline text.label')]
        .filter(t => t.textContent.trim()).map(t => {{ const r = t.getBoundingClientRect();
          return [t.textContent, r.left, r.top, r.right, r.bottom]; }})""")
    for name, left, top, right, bottom in texts:
        under = [d["name"] for d in dots if left <= d["x"] <= right and top <= d["y"] <= bottom]
        assert under == [], f"{name!r} covers {under}"
    for i in range(len(texts)):
        for j in range(i):
            a, b = texts[i], texts[j]
            overlap = a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]
            assert not overlap, f"labels overlap: {a[0]!r} and {b[0]!r}"
    return [t[0] for t in texts]


def test_table_fits_without_horizontal_scroll(dashboard):
    nb, page = dashboard, dashboard.page
    assert nb.cell_errors() == []
    page.evaluate(f"() => document.querySelector('{DASH} .lr-table-scroll').scrollIntoView({{block: 'start'}})")
    m = page.evaluate(f"""() => {{
        const s = document.querySelector('{DASH} .lr-table-scroll');
        const cols = [...s.querySelectorAll('thead th')].filter(t => t.offsetParent).map(t => t.dataset.key);
        return {{scroll: s.scrollWidth, client: s.clientWidth, cols}};
      }}""")
    assert m["scroll"] <= m["client"] + 1, m
    # the most-read columns are all on screen: time, share and bound included
    for key in ("name", "count", "flops", "bytes", "arithmetic_intensity", "time_s", "share", "bound"):
        assert key in m["cols"], (key, m["cols"])
    _shot(nb, "table")
    nb.assert_no_errors(since=0)


def test_no_label_is_cut(dashboard):
    cut = dashboard.page.evaluate(CUT_LABELS_JS)
    assert cut == [], cut


def test_no_two_roofline_marks_on_the_same_spot(dashboard):
    nb, page = dashboard, dashboard.page
    dots = page.evaluate(DOT_CENTRES_JS)
    assert len(dots) > 5
    for i in range(len(dots)):
        for j in range(i):
            a, b = dots[i], dots[j]
            d = math.hypot(a["x"] - b["x"], a["y"] - b["y"])
            assert d >= 0.5, f"two marks on one spot: {a['name']!r} and {b['name']!r}"
    # every operator with FLOPs is named by exactly one dot (a shared dot names all of its operators)
    rows = nb.probe("[(r['phase'], r['layer_type'], r['name'], r['count']) for r in ui.table.rows if r['dot']]")
    named = [f"{ph} · {lt} · {n} ×{c}" for ph, lt, n, c in rows]
    for label in named:
        owners = [d for d in dots if re.search(re.escape(label) + r"(\s|$)", d["name"])]
        assert len(owners) == 1, (label, [d["name"] for d in owners])
    assert any(" + " in d["name"] for d in dots), "the quickstart has coincident operators: one dot must list several"
    # the key (shape = phase, colour = bound) is there, and no label covers a dot or another label
    shown = assert_roofline_labels_clear(page, dots)
    assert any("prefill" in t and "decode" in t for t in shown) and "memory-bound" in shown, shown


def test_a_shared_dot_selects_all_its_operators(dashboard):
    nb, page = dashboard, dashboard.page
    nb.mark()
    nb.run_code("ui.selected = []")
    target = page.evaluate(f"""() => {{
        for (const d of document.querySelectorAll('{DASH} .lr-roofline .dot')) {{
          const name = (d.__data__ || {{}}).name || '';
          if (!name.includes(' + ')) continue;
          d.scrollIntoView({{block: 'center'}});
          const r = d.getBoundingClientRect();
          const x = r.x + r.width / 2, y = r.y + r.height / 2;
          const hit = document.elementFromPoint(x, y);
          if (hit === d) return {{x, y, name}};
        }}
        return null;
      }}""")
    assert target is not None, "no shared dot can be clicked at its centre"
    page.mouse.click(target["x"], target["y"])
    members = [m.split(" (")[0].rsplit(" ×", 1)[0] for m in target["name"].split(" — ")[0].split(" + ")]
    nb.wait(
        f"""(want) => {{
        const got = [...document.querySelectorAll('{DASH} tr.lr-row.selected')]
          .map(t => `${{t.dataset.phase}} · ${{t.dataset.layerType}} · ${{t.dataset.op}}`);
        return got.length === want.length && want.every(w => got.includes(w));
      }}""",
        arg=members,
    )
    nb.wait(f"() => (document.querySelector('{DASH} .lr-formula-same') || {{}}).textContent")
    assert len(nb.probe("ui.selected")) == len(members)
    nb.run_code("ui.selected = []")
    nb.assert_no_errors()


def test_operator_without_dot_is_flagged_and_formula_does_not_move_the_plots(dashboard):
    nb, page = dashboard, dashboard.page
    nb.mark()
    nb.run_code("ui.selected = []")
    nb.wait(f"() => !document.querySelector('{DASH} tr.lr-row.selected')")

    def plots_offset():
        return page.evaluate(f"""() => {{
            const d = document.querySelector('{DASH}').getBoundingClientRect();
            return ['.lr-roofline', '.lr-memory', '.lr-timeline']
              .map(s => document.querySelector('{DASH} ' + s).getBoundingClientRect().top - d.top);
          }}""")

    before = plots_offset()
    row = page.locator(f'{DASH} tr.lr-row[data-phase="prefill"][data-op="embed_tokens"]').first
    row.click()
    nb.wait(f"() => (document.querySelector('{DASH} .lr-formula-nodot') || {{}}).textContent")
    # the roofline says the selected operator has no dot, and why
    note = nb.wait(
        f"""() => [...document.querySelectorAll('{DASH} .lr-roofline text')]
              .map(t => t.textContent).find(t => t.includes('no dot')) || null"""
    )
    assert "embed_tokens" in note and "0 FLOPs" in note
    assert_roofline_labels_clear(page)
    assert "∅" in row.text_content()  # the table marks rows without a dot too
    assert plots_offset() == before  # the formula panel opened without pushing the plots down
    _shot(nb, "nodot")
    # a row with a dot clears the note; the plots still have not moved
    page.locator(f'{DASH} tr.lr-row[data-phase="decode"][data-op="down_proj"]').first.click()
    nb.wait(
        f"""() => ![...document.querySelectorAll('{DASH} .lr-roofline text')]
              .some(t => t.textContent.includes('no dot'))"""
    )
    assert plots_offset() == before
    nb.run_code("ui.selected = []")
    nb.assert_no_errors()


def test_memory_segments_readable_and_headline_is_a_bar(dashboard):
    nb, page = dashboard, dashboard.page
    nb.mark()
    m = nb.probe("ui.result.memory")
    page.evaluate(f"() => document.querySelector('{DASH} .lr-memory').scrollIntoView({{block: 'start'}})")
    table = page.evaluate(f"""() => [...document.querySelectorAll('{DASH} .lr-mem-table tbody tr')].map(tr =>
        [tr.querySelector('th').textContent, ...[...tr.querySelectorAll('td')].map(td => td.textContent)])""")
    # one row per bar: weights, KV cache, activations and the total, each readable however thin its segment
    assert [r[0] for r in table] == ["prefill", "end of decode", "fits check"]
    assert all(len(r) == 5 and all(c.strip() for c in r) for r in table), table
    headline = page.evaluate(
        f"() => document.querySelector('{DASH} .lr-figure[data-key=\"memory\"] .lr-figure-value').textContent"
    )
    assert headline.split(" / ")[0] == table[-1][-1]  # the headline's memory is the fits-check bar's total
    assert m["total_bytes"] == pytest.approx(m["weights_bytes"] + m["kv_cache_bytes"] + m["activations_bytes"])
    # no legend drawn over the bars or the capacity line (the table's swatches are the legend)
    legend_widths = page.evaluate(
        f"() => [...document.querySelectorAll('{DASH} .lr-memory g.g_legend')].map(g => g.getBoundingClientRect().width)"
    )
    assert all(w == 0 for w in legend_widths), legend_widths
    _shot(nb, "memory")
    nb.assert_no_errors()


def test_every_section_opens_without_console_errors_including_after_an_error(dashboard):
    nb, page = dashboard, dashboard.page
    nb.mark()
    inputs = nb.probe("ui.state.inputs()")
    # an error first, then open every section: the sweep must not draw empty axes
    nb.run_code("ui.state.model = 'no-such-model'")
    page.wait_for_selector(f"{DASH} .lr-error", timeout=UI_TIMEOUT_MS)
    page.locator(f"{DASH} .lr-sweep-section .jupyter-widget-Collapse-header").first.click()
    nb.wait(f"() => (document.querySelector('{DASH} .lr-sweep-message') || {{}}).textContent")
    assert page.locator(f"{DASH} .lr-sweep .bqplot").count() == 0  # a sentence, not empty axes
    techniques = page.locator(f"{DASH} .lr-controls .jupyter-widget-Collapse-header").first
    techniques.click()
    page.locator(f"{DASH} .lr-memory-by .widget-toggle-button").nth(1).click()
    _shot(nb, "error-sections")
    # back to valid inputs: the sweep draws, the memory chart shows batch sizes
    nb.run_code(f"ui.state.model = {inputs['model']!r}")
    page.wait_for_selector(f"{DASH} .lr-error", state="detached", timeout=UI_TIMEOUT_MS)
    nb.wait(f"() => document.querySelectorAll('{DASH} .lr-sweep .bqplot .line').length > 0")
    nb.wait(f"() => document.querySelectorAll('{DASH} .lr-mem-table tbody tr').length > 3")
    # in every figure now drawn (sweep included), the legend covers no marker and no label
    covered = page.evaluate(LEGEND_OVER_JS)
    assert covered == [], covered
    # an error while the sweep is shown: the last valid sweep stays, labelled
    nb.run_code("ui.state.w_bits = 3")
    page.wait_for_selector(f"{DASH} .lr-error", timeout=UI_TIMEOUT_MS)
    nb.wait(
        f"() => (document.querySelector('{DASH} .lr-sweep-status') || {{}}).textContent.includes('last valid sweep')"
    )
    assert page.evaluate(CUT_LABELS_JS) == []
    _shot(nb, "sections")
    nb.run_code("ui.state.w_bits = 16")
    page.wait_for_selector(f"{DASH} .lr-error", state="detached", timeout=UI_TIMEOUT_MS)
    page.locator(f"{DASH} .lr-memory-by .widget-toggle-button").nth(0).click()
    techniques.click()
    page.locator(f"{DASH} .lr-sweep-section .jupyter-widget-Collapse-header").first.click()
    nb.wait(f"() => document.querySelectorAll('{DASH} .lr-mem-table tbody tr').length === 3")
    nb.assert_no_errors()
    nb.assert_no_errors(since=0)


def test_lab_log_is_clean(lab, dashboard):
    """JupyterLab started from the project's set-up prints no Node error dump (a root package.json
    with "type": "module" made JupyterLab's CommonJS tools fail in an in-repo .venv) and no traceback."""
    log = lab["log"].read_text(errors="replace")
    for bad in ("require is not defined", "ES module scope", "Traceback (most recent call last)", "ReferenceError"):
        assert bad not in log, f"{bad!r} in the JupyterLab log:\n{log[-3000:]}"
