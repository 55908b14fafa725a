"""The JupyterLab extension in a real JupyterLab and Chromium: the Launcher card, the palette
commands, the settings and the saved-analysis viewer.

Uses the session fixtures ``lab`` (tests/browser/conftest.py) and ``browser`` (tests/conftest.py).
The module sets the extension's settings through Lab's REST API before it opens its page (and
resets them afterwards), so the page and its kernels see them as a user's saved settings.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
NAME = "llmroof-widgets"
PLUGIN = f"{NAME}:plugin"
UI_TIMEOUT_MS = 30_000
KERNEL_TIMEOUT_MS = 120_000  # kernel start + import + first analysis, on a shared CI machine

# a non-default device, weight width and a small model: what the Launcher notebook must use
SETTINGS = {"device": "a100-80gb-sxm", "weightBits": 8, "model": "meta-llama/Llama-3.2-1B"}
HOSTILE = '<img src=x onerror="window.__lr_pwned=1">Llama"); alert(1); //'
SAVED = "hostile.llmroof.json"
IGNORED_CONSOLE = ("favicon", ".woff", ".woff2", ".ttf")


def _api(lab, method: str, path: str, body: dict | None = None):
    req = urllib.request.Request(
        f"{lab['url']}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {lab['token']}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        data = r.read()
        return json.loads(data) if data else None


@pytest.fixture(scope="module")
def labext(lab, labextension_built):
    """The settings saved (as the Settings Editor would), a saved analysis in the root dir."""
    from jupyter_core.paths import jupyter_path
    from jupyterlab_server.config import get_federated_extensions

    exts = get_federated_extensions(jupyter_path("labextensions"))
    if NAME not in exts:
        pytest.fail(f"the {NAME} labextension is not installed in this environment: run `pip install -e .`")
    built = labextension_built["jupyterlab"]["_build"]["load"]
    if exts[NAME]["jupyterlab"]["_build"]["load"] != built:
        pytest.fail(
            f"the installed {NAME} ({exts[NAME]['ext_path']}) is not the current build: rerun "
            "`pip install -e .` or scripts/bootstrap.sh (which links it to llmroof_widgets/labextension)"
        )
    raw = "// set by tests/browser/test_labextension_ui.py\n" + json.dumps(SETTINGS, indent=2)
    _api(lab, "PUT", f"/lab/api/settings/{PLUGIN}", {"raw": raw})

    import llmroof_widgets as lr

    d = lr.analyze("meta-llama/Llama-3.2-1B", "h100-sxm", batch_size=4, prompt_len=512, gen_len=32).to_dict()
    d["model"]["name"] = HOSTILE
    (Path(lab["root"]) / SAVED).write_text(json.dumps(d))
    try:
        yield {"analysis": d}
    finally:
        _api(lab, "PUT", f"/lab/api/settings/{PLUGIN}", {"raw": "{}"})


@pytest.fixture(scope="module")
def page(browser, lab, labext):
    """One Lab page for the module (its console errors collected in page.lr_errors)."""
    ctx = browser.new_context(viewport={"width": 1500, "height": 1100})
    pg = ctx.new_page()
    pg.lr_errors = []

    def on_console(msg):
        if msg.type == "error" and not any(s in msg.text for s in IGNORED_CONSOLE):
            pg.lr_errors.append(msg.text)

    pg.on("console", on_console)
    pg.on("pageerror", lambda e: pg.lr_errors.append(f"pageerror: {e}"))
    pg.goto(f"{lab['url']}/lab?token={lab['token']}&reset")
    pg.wait_for_function(
        "() => window.jupyterapp && jupyterapp.started && "
        f"jupyterapp.hasPlugin('{PLUGIN}') && jupyterapp.isPluginActivated('{PLUGIN}')",
        timeout=UI_TIMEOUT_MS,
    )
    pg.wait_for_selector("#jupyterlab-splash", state="detached", timeout=UI_TIMEOUT_MS)
    try:
        yield pg
    finally:
        ctx.close()


@pytest.fixture
def clean(page, request):
    """Each test: no new console error; a screenshot of the page in test-artifacts/ at its end."""
    start = len(page.lr_errors)
    try:
        yield page
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"labext-{request.node.name}.png"))
    errs = page.lr_errors[start:]
    assert errs == [], "console errors:\n" + "\n".join(errs)


def _kernel_exec(page, code: str) -> str:
    """Run code in the current notebook's kernel (no cell added) and return its stdout."""
    return page.evaluate(
        """async (code) => {
             const k = jupyterapp.shell.currentWidget.sessionContext.session.kernel;
             let out = '';
             const future = k.requestExecute({code, silent: false, store_history: false});
             future.onIOPub = msg => {
               if (msg.header.msg_type === 'stream') out += msg.content.text;
               if (msg.header.msg_type === 'error') out += msg.content.ename + ': ' + msg.content.evalue;
             };
             await future.done;
             return out;
           }""",
        code,
    )


def test_launcher_card_opens_a_running_dashboard_with_the_settings(clean):
    page = clean
    page.evaluate("async () => { await jupyterapp.commands.execute('launcher:create'); }")
    card = page.locator(".jp-Launcher-body .jp-LauncherCard", has_text="LLM Roofline").first
    card.wait_for(timeout=UI_TIMEOUT_MS)
    card.click()
    # a new notebook whose only cell is the dashboard cell, with the settings passed explicitly
    source = page.wait_for_function(
        """() => { const w = jupyterapp.shell.currentWidget;
                   return w && w.context && w.content && w.content.model && w.context.path.endsWith('.ipynb')
                     && w.content.model.cells.length === 1 && w.content.model.cells.get(0).sharedModel.getSource(); }""",
        timeout=UI_TIMEOUT_MS,
    ).json_value()
    assert source == (
        "import llmroof_widgets as lr\n\n"
        'ui = lr.Dashboard(model="meta-llama/Llama-3.2-1B", hardware="a100-80gb-sxm", w_bits=8)\nui'
    )
    # ... and it runs: the dashboard renders, for the device of the settings
    page.wait_for_function(
        """() => { const n = jupyterapp.shell.currentWidget.node;
                   const hw = n.querySelector('.lr-dashboard .lr-hardware-name');
                   return n.querySelectorAll('.lr-dashboard .lr-table tr.lr-row').length > 0
                     && hw && hw.textContent.includes('A100'); }""",
        timeout=KERNEL_TIMEOUT_MS,
    )
    errors = page.evaluate("""() => jupyterapp.shell.currentWidget.content.model.cells.get(0).toJSON()
                                .outputs.filter(o => o.output_type === 'error').map(o => o.evalue)""")
    assert errors == []
    # the kernel sees the same settings through the Python default path
    out = _kernel_exec(
        page,
        "import json, os\nos.environ.pop('LLMROOF_IGNORE_LAB_SETTINGS', None)\n"
        "from llmroof_widgets.lab_settings import read_lab_settings\n"
        "print(json.dumps([read_lab_settings(), ui.state.hardware, ui.state.w_bits]))",
    )
    settings, hardware, w_bits = json.loads(out.strip().splitlines()[-1])
    assert settings == {"model": "meta-llama/Llama-3.2-1B", "hardware": "a100-80gb-sxm", "w_bits": 8}
    assert (hardware, w_bits) == ("a100-80gb-sxm", 8)


PALETTE_OPEN = (
    "() => { const e = document.querySelector('.lm-CommandPalette-input'); "
    "return !!e && e.offsetParent !== null && document.activeElement === e; }"
)


def _palette(page, query: str) -> list[dict]:
    """Open the (modal) command palette, type ``query``; the visible items."""
    from playwright.sync_api import TimeoutError as PWTimeout

    for _ in range(5):  # the modal palette closes when something takes the focus (a kernel starting)
        page.evaluate("() => { jupyterapp.commands.execute('apputils:activate-command-palette'); }")
        try:
            page.wait_for_function(PALETTE_OPEN, timeout=2000)
            break
        except PWTimeout:
            continue
    box = page.locator(".lm-CommandPalette-input").first
    box.fill(query)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.lm-CommandPalette-item')].some(e => e.offsetParent !== null)",
        timeout=UI_TIMEOUT_MS,
    )
    return page.evaluate(
        """() => [...document.querySelectorAll('.lm-CommandPalette-item')].filter(e => e.offsetParent !== null)
                 .map(e => ({label: e.querySelector('.lm-CommandPalette-itemLabel').textContent,
                             disabled: e.classList.contains('lm-mod-disabled')}))"""
    )


def test_palette_inserts_a_dashboard_cell_and_opens_the_docs(clean):
    page = clean
    # a plain notebook, active
    page.evaluate("async () => { await jupyterapp.commands.execute('notebook:create-new', {kernelName: 'python3'}); }")
    page.wait_for_function(
        """() => { const w = jupyterapp.shell.currentWidget;
                                      const k = w && w.sessionContext && w.sessionContext.session
                                        && w.sessionContext.session.kernel;
                                      return w.content && w.content.activeCell && w.content.model.cells.length === 1
                                        && k && k.status === 'idle'; }""",
        timeout=KERNEL_TIMEOUT_MS,
    )
    page.evaluate("""() => { jupyterapp.shell.currentWidget.content.model.cells.get(0)
                               .sharedModel.setSource('x = 1'); }""")
    items = _palette(page, "roofline")
    labels = {i["label"]: i for i in items}
    for label in ("New roofline notebook", "Insert roofline dashboard cell", "Open llmroof_widgets documentation"):
        assert label in labels, f"{label!r} not in the palette: {sorted(labels)}"
    assert not labels["Insert roofline dashboard cell"]["disabled"]
    _palette(page, "Insert roofline dashboard")
    page.locator(".lm-CommandPalette-item", has_text="Insert roofline dashboard cell").first.click()
    cells = page.wait_for_function(
        """() => { const m = jupyterapp.shell.currentWidget.content.model;
                   return m.cells.length === 2 && [0, 1].map(i => m.cells.get(i).sharedModel.getSource()); }""",
        timeout=UI_TIMEOUT_MS,
    ).json_value()
    assert cells[0] == "x = 1"  # inserted below the active cell, which it left alone
    assert 'hardware="a100-80gb-sxm", w_bits=8' in cells[1] and cells[1].startswith("import llmroof_widgets as lr")
    assert page.evaluate("() => jupyterapp.shell.currentWidget.content.activeCellIndex") == 1

    # the documentation command: the README bundled with the extension, in a Lab tab
    _palette(page, "llmroof_widgets documentation")
    page.locator(".lm-CommandPalette-item", has_text="Open llmroof_widgets documentation").first.click()
    page.wait_for_function(
        """() => { const d = document.querySelector('#llmroof-widgets-docs .lr-doc-readme');
                                      return d && d.offsetParent !== null && d.textContent.includes('roofline'); }""",
        timeout=UI_TIMEOUT_MS,
    )
    assert page.evaluate("() => jupyterapp.shell.currentWidget.id") == "llmroof-widgets-docs"


def test_saved_analysis_opens_read_only_in_its_viewer_without_a_kernel(clean, labext, lab):
    page = clean
    d = labext["analysis"]
    assert (
        page.evaluate(f"() => jupyterapp.docRegistry.defaultWidgetFactory('{SAVED}').name") == "LLM Roofline Analysis"
    )
    page.evaluate(f"async () => {{ await jupyterapp.commands.execute('docmanager:open', {{path: '{SAVED}'}}); }}")
    n_pre, n_dec = len(d["prefill"]["ops"]), len(d["decode"]["ops"])
    view = page.wait_for_function(
        """([pre, dec]) => {
             const w = jupyterapp.shell.currentWidget, n = w && w.node;
             if (!n || !n.querySelector('.lr-doc')) return false;
             const rows = p => n.querySelectorAll(`.lr-doc-table[data-phase=${p}] tbody tr.lr-doc-row`).length;
             if (rows('prefill') !== pre || rows('decode') !== dec) return false;
             const text = s => [...n.querySelectorAll(s)].map(e => e.textContent);
             return {
               model: text('.lr-doc-model-name')[0], hardware: text('.lr-doc-hardware-name')[0],
               figures: Object.fromEntries([...n.querySelectorAll('.lr-doc-figure')].map(
                 f => [f.dataset.key, f.querySelector('.lr-doc-figure-value').textContent])),
               dots: n.querySelectorAll('.lr-doc-dot[data-index]').length,
               roofs: n.querySelectorAll('.lr-doc-roof').length,
               segments: [...n.querySelectorAll('.lr-doc-seg')].map(e => e.dataset.part),
               capacity: n.querySelectorAll('.lr-doc-capacity').length,
               imgs: n.querySelectorAll('img').length,
               pwned: window.__lr_pwned === undefined ? null : window.__lr_pwned,
               readOnly: w.context.model.readOnly === undefined ? null : w.context.model.readOnly,
               kernel: !!(w.context.sessionContext && w.context.sessionContext.session),
               path: w.context.path,
             };
           }""",
        arg=[n_pre, n_dec],
        timeout=UI_TIMEOUT_MS,
    ).json_value()
    assert view["path"] == SAVED
    # a hostile model name is text, never markup
    assert view["model"] == HOSTILE and view["imgs"] == 0 and view["pwned"] is None
    assert view["hardware"] == d["hardware"]["name"]
    assert view["figures"]["fits"] == ("yes" if d["memory"]["fits"] else "no")
    assert {"ttft", "tpot", "memory", "tokens_per_s"} <= set(view["figures"])
    computing = sum(
        1
        for ph in ("prefill", "decode")
        for o in d[ph]["ops"]
        if o["arithmetic_intensity"] > 0 and o["attained_flops"] > 0
    )
    assert view["dots"] == computing > 0
    assert view["roofs"] == len(d["roofs"]["peaks"])
    assert view["segments"][:2] == ["weights", "kv"] and "activations" in view["segments"]
    assert view["capacity"] == 1
    assert view["kernel"] is False
    # one colour meaning with the dashboard: the bound (the dot's fill, the table's bound cell), and the
    # phase as the marker's shape (prefill ●, decode ▲); the figures say what they are
    look = page.evaluate(
        """() => { const n = jupyterapp.shell.currentWidget.node;
             return {
               dots: [...n.querySelectorAll('.lr-doc-dot[data-index]')].map(e =>
                 [e.dataset.phase, e.dataset.bound, e.tagName, getComputedStyle(e).fill]),
               bounds: [...n.querySelectorAll('.lr-doc-table[data-phase=decode] tbody tr.lr-doc-row')].map(tr =>
                 [tr.querySelector('.lr-doc-col-bound').textContent, getComputedStyle(tr.querySelector('.lr-doc-col-bound')).color]),
               labels: Object.fromEntries([...n.querySelectorAll('.lr-doc-figure')].map(
                 f => [f.dataset.key, f.querySelector('.lr-doc-figure-label').textContent])),
               note: n.querySelector('.lr-doc-note[data-mode]').textContent,
             }; }"""
    )
    fill = {"memory": "rgb(31, 119, 180)", "compute": "rgb(217, 95, 2)"}
    assert {(ph, tag) for ph, _, tag, _ in look["dots"]} <= {("prefill", "circle"), ("decode", "path")}
    assert all(color == fill[b] for _, b, _, color in look["dots"]), look["dots"]
    assert [b for b, _ in look["bounds"]] == [o["bound"] for o in d["decode"]["ops"]]
    assert all(color == fill[b] for b, color in look["bounds"])
    assert look["labels"]["throughput"] == "throughput, whole batch" and "lower bounds" in look["note"]
    sessions = _api(lab, "GET", "/api/sessions")
    assert not [s for s in sessions if s.get("path", "").endswith(SAVED)]

    # linked: a table row selects its roofline dot
    page.locator(".lr-doc-table[data-phase=decode] tbody tr.lr-doc-row").nth(2).click()
    page.wait_for_function(
        """() => { const n = jupyterapp.shell.currentWidget.node;
                                      const dot = n.querySelector('.lr-doc-dot.lr-doc-selected');
                                      const row = n.querySelector('tr.lr-doc-row.lr-doc-selected');
                                      return !row || !dot ? false : dot.dataset.phase === row.dataset.phase
                                        && dot.dataset.index === row.dataset.index; }""",
        timeout=UI_TIMEOUT_MS,
    )
