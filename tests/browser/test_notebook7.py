"""The quickstart in Notebook 7 (``jupyter notebook``): the same dashboard, the same engine numbers,
a control that recomputes on the kernel. One Notebook 7 server for this module; the checks and
helpers are those of ``test_lab.py`` (Notebook 7 is built on JupyterLab's components and exposes
``window.jupyterapp`` the same way)."""

from __future__ import annotations

import os
import secrets
import shutil
import time

import pytest
from conftest import NOTEBOOK, REPO, LabNotebook, _free_port, jupyter_server
from test_lab import (
    DOTS_JS,
    HEADLINE_JS,
    ROWS_JS,
    assert_same_dots,
    control,
    engine,
    expected_dots,
    expected_rows,
    headline_texts,
    shown_dots,
    wait_dots,
    wait_headline,
)

pytestmark = pytest.mark.browser
START_TIMEOUT_S = 90


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory):
    pytest.importorskip("notebook", minversion="7", reason="Notebook 7 (notebook>=7, in the test extra) is needed")
    base = tmp_path_factory.mktemp("nb7")
    root, settings, workspaces, runtime = (base / n for n in ("root", "settings", "workspaces", "runtime"))
    for d in (root, settings, workspaces, runtime):
        d.mkdir()
    shutil.copy(REPO / "examples" / NOTEBOOK, root / NOTEBOOK)
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(
        os.environ,
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(workspaces),
        JUPYTER_RUNTIME_DIR=str(runtime),
        HF_HUB_OFFLINE="1",
        PYTHONPATH=str(REPO),
    )
    with jupyter_server(
        "notebook",
        ["--JupyterNotebookApp.expose_app_in_browser=True"],
        root=root,
        env=env,
        port=port,
        token=token,
        log_path=base / "notebook.log",
        timeout_s=START_TIMEOUT_S,
    ) as server:
        yield server


class Notebook7(LabNotebook):
    """Notebook 7.6 itself throws one error while it loads its settings (in its own
    ``static/notebook/notebook_core`` bundle, with every federated extension disabled too): that
    one, recognised by its stack, is set aside (printed); every other error fails the test."""

    def __init__(self, page, server, name):
        super().__init__(page, server, name)
        self.core_errors: list[str] = []
        page.on("pageerror", self._core_error)

    def _core_error(self, e):
        stack = e.stack or ""
        first = next((ln for ln in stack.splitlines() if " at " in ln), "")
        if "/static/notebook/notebook_core." in first and f"pageerror: {e}" in self.errors:
            self.errors.remove(f"pageerror: {e}")
            self.core_errors.append(str(e))

    def open(self):
        s = self.lab
        self.page.goto(f"{s['url']}/notebooks/{self.name}?token={s['token']}")
        self.wait_kernel_idle()


def test_quickstart_in_notebook7(browser, notebook7):
    ctx = browser.new_context(viewport={"width": 1600, "height": 1500})
    page = ctx.new_page()
    nb = Notebook7(page, notebook7, NOTEBOOK)
    t0 = time.perf_counter()
    nb.open()
    nb.run_all()
    nb.wait("""() => document.querySelectorAll('.lr-dashboard .lr-table tr.lr-row').length > 0
                 && document.querySelectorAll('.lr-dashboard .lr-roofline .dot').length > 0""")
    print(f"\nNotebook 7: quickstart open → dashboard rendered {time.perf_counter() - t0:.1f} s")
    assert nb.cell_errors() == []
    inputs = nb.probe("ui.state.inputs()")
    r = engine(inputs)
    got = page.evaluate(HEADLINE_JS)
    want = headline_texts(r)
    assert {k: got.get(k) for k in want} == want
    rows = page.evaluate(ROWS_JS)
    assert [(x["phase"], x["layer_type"], x["name"], x["count"], x["flops"], x["bytes"], x["time"]) for x in rows] == (
        expected_rows(r.to_dict())
    )
    assert_same_dots(shown_dots(page.evaluate(DOTS_JS)), expected_dots(r.to_dict()))
    # a control recomputes on the kernel: the figures become the engine's for the new batch size
    b1 = 16 if inputs["batch_size"] != 16 else 8
    r1 = engine(dict(inputs, batch_size=b1))
    readout = control(nb, "batch size", ".widget-slider").locator(".widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(str(b1))
    page.keyboard.press("Enter")
    wait_headline(nb, headline_texts(r1))
    wait_dots(nb, expected_dots(r1.to_dict()))
    assert nb.probe("ui.state.batch_size") == b1
    if nb.core_errors:
        print(f"[browser] Notebook 7's own load error, set aside: {nb.core_errors}")
    nb.assert_no_errors(since=0)
    ctx.close()
