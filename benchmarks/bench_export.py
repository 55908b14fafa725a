"""Benchmark: the exported page with precomputed states (printed, nothing asserted).

    .venv/bin/python benchmarks/bench_export.py [--model meta-llama/Llama-3.1-8B] [--hardware h100-sxm]

1. export time for the default grid (``lr.export_html(ui, path)``; target < 5 s) and the page size
   (target < 15 MB), with the capture time and the number of states;
2. opening the page in Debian's Chromium from file:// with every network request refused, until the
   state switcher is ready (payload decompressed with DecompressionStream, every model resolved;
   target < 2 s);
3. switching a control to a new state in the page: the batch-size slider moved through the grid's
   values, from the control's change event until every model holds the new state's traits
   (``window.__lrExport.switches``; target < 50 ms), and the same until the next animation frame
   after it (the redraw).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="meta-llama/Llama-3.1-8B")
    ap.add_argument("--hardware", default="h100-sxm")
    ap.add_argument("--prompt-len", type=int, default=2048)
    ap.add_argument("--gen-len", type=int, default=256)
    args = ap.parse_args()

    import llmroof_widgets as lr
    from llmroof_widgets import export_states as es

    ui = lr.Dashboard(model=args.model, hardware=args.hardware, prompt_len=args.prompt_len, gen_len=args.gen_len)
    grid = es.default_grid(ui)
    n = 1
    for v in grid.values():
        n *= len(v)
    out = Path(tempfile.mkdtemp()) / "export.html"
    t0 = time.perf_counter()
    lr.export_html(ui, out)
    took = time.perf_counter() - t0
    size = out.stat().st_size
    print(f"default grid: {n} states ({', '.join(f'{k} {len(v)}' for k, v in grid.items())})")
    print(f"export: {took:.2f} s (target < 5 s), page {size / 1e6:.2f} MB (target < 15 MB)")
    static = Path(tempfile.mkdtemp()) / "static.html"
    t0 = time.perf_counter()
    lr.export_html(ui, static, grid=False)
    print(
        f"  for reference, the page without states: {time.perf_counter() - t0:.2f} s, {static.stat().st_size / 1e6:.2f} MB"
    )
    batches = grid["batch_size"]
    ui.close()

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        opens = []
        for _ in range(3):
            ctx = b.new_context(viewport={"width": 1400, "height": 1000})
            page = ctx.new_page()
            page.route("http://**/*", lambda r: r.abort())
            page.route("https://**/*", lambda r: r.abort())
            t0 = time.perf_counter()
            page.goto(out.resolve().as_uri())
            page.wait_for_function("document.body.dataset.lrExportReady === '1'", timeout=60_000)
            opens.append(time.perf_counter() - t0)
            if len(opens) < 3:
                ctx.close()
        t = page.evaluate("window.__lrExport.timings")
        rows = page.evaluate("document.querySelectorAll('tr.lr-row').length")
        print(
            f"  in the last page: switcher rendered at {t['render']:.0f} ms, payload inflated at {t['inflated']:.0f} ms, ready at {t['ready']:.0f} ms; {rows} table rows"
        )
        ctx2 = b.new_context(viewport={"width": 1400, "height": 1000})
        p2 = ctx2.new_page()
        t0 = time.perf_counter()
        p2.goto(static.resolve().as_uri())
        p2.wait_for_function("document.querySelectorAll('tr.lr-row').length > 0", timeout=60_000)
        print(
            f"  for reference, the page without states: open → table rendered {(time.perf_counter() - t0) * 1000:.0f} ms"
        )
        ctx2.close()
        print(f"open → switcher ready: median {statistics.median(opens) * 1000:.0f} ms of {len(opens)} (target < 2 s)")
        # move the slider through the grid's batch sizes, as a reader would (model change events)
        frames = page.evaluate(
            """async (batches) => {
              const api = window.__lrExport;
              const t = api.payload.sig.traits.findIndex(t => t.label === 'batch size');
              const slider = await api.get(api.payload.sig.traits[t].model);
              const out = [];
              for (let round = 0; round < 3; round++) for (const b of batches) {
                if (slider.get('value') === b) continue;
                const n = api.switches.length;
                const t0 = performance.now();
                slider.set('value', b);
                while (api.switches.length === n) await new Promise(r => setTimeout(r, 0));
                await new Promise(r => requestAnimationFrame(() => r()));
                out.push(performance.now() - t0);
              }
              return out;
            }""",
            batches,
        )
        sw = page.evaluate("window.__lrExport.switches")
        print(
            f"switch a control to a new state: median {statistics.median(sw):.1f} ms, max {max(sw):.1f} ms "
            f"of {len(sw)} (target < 50 ms); until the next frame: median {statistics.median(frames):.1f} ms"
        )
        b.close()


if __name__ == "__main__":
    main()
