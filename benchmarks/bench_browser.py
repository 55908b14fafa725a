"""Benchmark: latency of the dashboard in a real JupyterLab (Debian's Chromium through Playwright).

    .venv/bin/python benchmarks/bench_browser.py [pytest options]

Starts the same JupyterLab server and Chromium as the browser tests (the fixtures of ``tests/conftest.py``
and ``tests/browser/conftest.py``), opens and runs ``examples/quickstart.ipynb``, then measures:

- control → marks: an arrow key on the batch-size slider (a kernel round trip and a recomputation) until
  the first roofline mark mutates;
- row click → dot: a table-row click until the selected dot is restyled (a front-end link, no kernel);
- notebook open → kernel idle, and "run all" → dashboard rendered.

Prints medians (and writes them to ``test-artifacts/bench_browser.json``); no threshold is asserted — shared
machines are noisy. What these interactions must *do* is checked by ``tests/browser/test_lab.py``.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "tests" / "browser"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from test_lab import DASH, control, engine, headline_texts, wait_headline  # noqa: E402

ARTIFACTS = ROOT / "test-artifacts"  # gitignored
SAMPLES = 16

OBSERVE_JS = f"""(filter) => {{
    const fig = document.querySelector('{DASH} .lr-roofline');
    if (window.__lrObs) window.__lrObs.disconnect();
    window.__lrMut = [];
    window.__lrLast = performance.now();
    window.__lrObs = new MutationObserver((muts) => {{
      const t = performance.now();
      window.__lrLast = t;
      for (const m of muts) {{
        const el = m.target;
        const isDot = el.classList && (el.classList.contains('dot') ||
                      (el.classList.contains('object_grp') && el.querySelector('.dot')));
        if (!isDot) continue;
        if (filter === 'style' && m.attributeName !== 'style') continue;
        window.__lrMut.push(t);
      }}
    }});
    window.__lrObs.observe(fig, {{subtree: true, attributes: true, childList: true,
                                  attributeFilter: ['transform', 'style', 'd']}});
    window.__lrInput = [];
    if (!window.__lrInputHooked) {{
      window.__lrInputHooked = true;
      for (const type of ['keydown', 'click'])
        window.addEventListener(type, (ev) => window.__lrInput.push(ev.timeStamp), true);
    }}
  }}"""

QUIET_JS = "(ms) => performance.now() - window.__lrLast > ms"
LATENCY_JS = """() => {
    const t0 = window.__lrInput[window.__lrInput.length - 1];
    const t1 = window.__lrMut.find(t => t >= t0);
    return t1 === undefined ? null : t1 - t0;
  }"""


def _median_ms(samples):
    s = [x for x in samples if x is not None]
    return (statistics.median(s), min(s), max(s), len(s)) if s else (float("nan"), float("nan"), float("nan"), 0)


def test_bench_latency(quickstart, capsys):
    """(a) batch-size keypress → first roofline mark mutation; (b) table row click → roofline dot restyled."""
    nb, page = quickstart, quickstart.page
    inputs = nb.probe("ui.state.inputs()")
    b0 = inputs["batch_size"]
    b1 = b0 + 1 if b0 < 256 else b0 - 1  # one slider step
    tpot = {b: headline_texts(engine(dict(inputs, batch_size=b)))["tpot"] for b in (b0, b1)}
    step = {b1: "ArrowRight" if b1 > b0 else "ArrowLeft", b0: "ArrowLeft" if b1 > b0 else "ArrowRight"}

    # (a) arrow keys on the slider's handle: batch b0 <-> b0 ± 1, each a recomputation
    handle = control(nb, "batch size", ".widget-slider").locator(".noUi-handle")
    handle.scroll_into_view_if_needed()
    handle.focus()
    page.evaluate(OBSERVE_JS, "any")
    recompute, batch = [], b0
    for _ in range(SAMPLES):
        page.evaluate("() => { window.__lrMut = []; window.__lrInput = []; }")
        batch = b1 if batch == b0 else b0
        page.keyboard.press(step[batch])
        wait_headline(nb, {"tpot": tpot[batch]})
        nb.wait("() => window.__lrMut.length > 0")
        nb.wait(QUIET_JS, arg=150)  # the recomputation's last updates have landed
        recompute.append(page.evaluate(LATENCY_JS))
    if batch != b0:
        nb.run_code(f"ui.state.batch_size = {b0}")
        wait_headline(nb, {"tpot": tpot[b0]})

    # (b) clicks alternating between two rows whose dots are in different marks
    rows = [
        page.locator(f'{DASH} tr.lr-row[data-phase="{ph}"][data-op="{op}"]').first
        for ph, op in (("prefill", "down_proj"), ("decode", "q_proj"))
    ]
    page.evaluate(OBSERVE_JS, "style")
    restyle = []
    for i in range(SAMPLES):
        page.evaluate("() => { window.__lrMut = []; window.__lrInput = []; }")
        rows[i % 2].click()
        nb.wait("() => window.__lrMut.length > 0")
        nb.wait(QUIET_JS, arg=100)
        restyle.append(page.evaluate(LATENCY_JS))
    page.evaluate("() => window.__lrObs.disconnect()")

    res = {
        "control_to_mark_mutation_ms": _median_ms(recompute),
        "row_click_to_dot_restyle_ms": _median_ms(restyle),
        "open_to_kernel_idle_s": nb.timings["open_to_kernel_idle_s"],
        "run_all_to_rendered_s": nb.timings["run_all_to_rendered_s"],
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "bench_browser.json").write_text(
        json.dumps({**res, "samples_ms": {"control": recompute, "row_click": restyle}}, indent=1)
    )
    with capsys.disabled():
        for k in ("control_to_mark_mutation_ms", "row_click_to_dot_restyle_ms"):
            med, lo, hi, n = res[k]
            print(f"\n[bench] {k}: median {med:.1f} ms (min {lo:.1f}, max {hi:.1f}, n={n})", end="")
        print(
            f"\n[bench] notebook open -> kernel idle {res['open_to_kernel_idle_s']:.1f} s; "
            f"run all -> dashboard rendered {res['run_all_to_rendered_s']:.1f} s"
        )


if __name__ == "__main__":
    import importlib.util
    import os

    # the venv's tools (jupyter, for a bundle rebuild) first on PATH, as in ./test.sh
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    # the browser tests' fixtures (Lab server, Chromium, the quickstart notebook) as plugins
    args = [__file__, "-q", "-s", "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    args += ["-p", "conftest_root", "-p", "conftest_browser"]

    for name, path in (
        ("conftest_root", ROOT / "tests" / "conftest.py"),
        ("conftest_browser", ROOT / "tests" / "browser" / "conftest.py"),
    ):
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    sys.exit(pytest.main(args + sys.argv[1:]))
