"""Real-browser tests in JupyterLab: one Lab server and one Chromium per test session.

- ``lab``: a session fixture that starts ``jupyter lab`` (``--allow-root``, a random token, a free
  loopback port, ``--LabApp.expose_app_in_browser=True`` so ``window.jupyterapp`` drives Lab) on a
  temp root dir holding a copy of ``examples/quickstart.ipynb``, with fresh workspaces and settings
  dirs (news toast off, pitfall P4; notebook windowing off so every cell stays in the DOM), and
  terminates it at the end.
- ``browser`` comes from ``tests/conftest.py`` (Debian's Chromium, installed with apt-get when
  missing; the session skips only when that fails).
- ``quickstart``: a module fixture: a page with the quickstart notebook opened and run (every
  cell), the dashboard rendered, and the page's console errors / page errors collected.

Every wait is on a condition (``wait_for_function``), with generous timeouts for shared CI
machines; nothing sleeps a fixed time.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
NOTEBOOK = "quickstart.ipynb"

LAB_START_TIMEOUT_S = 90
KERNEL_TIMEOUT_MS = 90_000
RUN_ALL_TIMEOUT_MS = 150_000
UI_TIMEOUT_MS = 30_000  # one kernel round trip or one front-end update; generous for shared CI

# Console errors that are not ours and not the page's: a missing favicon or web font (404s the
# browser logs as "Failed to load resource"). Nothing else is ignored.
IGNORED_CONSOLE = ("favicon", ".woff", ".woff2", ".ttf")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bundle_state() -> str:
    """'ok', 'missing' or 'stale' (a source under js/ is newer than the bundles in static/)."""
    bundle = REPO / "llmroof_widgets" / "static" / "layer_table.js"
    if not bundle.exists():
        return "missing"
    newest = max((f.stat().st_mtime for f in (REPO / "js").iterdir() if f.is_file()), default=0.0)
    return "stale" if newest > bundle.stat().st_mtime else "ok"


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """A JupyterLab server for the whole session: yields {url, token, root}."""
    # the widgets' JS bundles (gitignored) come from `npm run build` (esbuild, well under a second):
    # build them when missing, rebuild them when js/ changed, so the browser sees the sources
    state = _bundle_state()
    if state != "ok":
        npm = shutil.which("npm")
        if npm is None and state == "missing":
            pytest.fail("llmroof_widgets/static/*.js is missing and npm is not installed to build it")
        if npm is not None:
            built = subprocess.run([npm, "run", "build"], cwd=REPO, capture_output=True, text=True, timeout=300)
            if built.returncode != 0:
                pytest.fail(f"npm run build failed:\n{built.stdout[-2000:]}\n{built.stderr[-2000:]}")

    base = tmp_path_factory.mktemp("lab")
    root, settings, workspaces, runtime = (base / n for n in ("root", "settings", "workspaces", "runtime"))
    for d in (root, settings, workspaces, runtime):
        d.mkdir()
    shutil.copy(REPO / "examples" / NOTEBOOK, root / NOTEBOOK)
    # P4: no "get notified about Jupyter news?" toast over the page
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    # every cell in the DOM (no virtual scrolling): the dashboard and the probe cells are always there
    (settings / "@jupyterlab" / "notebook-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"})
    )

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
        "jupyterlab",
        ["--LabApp.expose_app_in_browser=True", "--LabApp.news_url="],
        root=root,
        env=env,
        port=port,
        token=token,
        log_path=base / "lab.log",
        timeout_s=LAB_START_TIMEOUT_S,
    ) as server:
        yield server


@contextlib.contextmanager
def jupyter_server(module, args, *, root, env, port, token, log_path, timeout_s):
    """``python -m <module>`` (jupyterlab, notebook) on a loopback port with a token, answered on
    ``/api/status`` before this yields ``{url, token, root, log}``; terminated afterwards."""
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            module,
            "--no-browser",
            "--allow-root",
            f"--port={port}",
            "--ServerApp.ip=127.0.0.1",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            *args,
        ],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{module} exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                req = urllib.request.Request(f"{url}/api/status", headers={"Authorization": f"token {token}"})
                with urllib.request.urlopen(req, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{module} did not answer in {timeout_s} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)  # polling interval for the server's port (no event to wait on)
        yield {"url": url, "token": token, "root": root, "log": log_path}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


class LabNotebook:
    """A notebook open in JupyterLab, driven through ``window.jupyterapp`` and the DOM."""

    def __init__(self, page, lab, name):
        self.page, self.lab, self.name = page, lab, name
        self.errors: list[str] = []  # every console error and page error since the page opened
        self.ignored: list[str] = []
        self._mark = 0
        page.on("console", self._on_console)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def _on_console(self, msg):
        if msg.type != "error":
            return
        text = msg.text
        where = (msg.location or {}).get("url", "")
        if any(s in text or s in where for s in IGNORED_CONSOLE):
            self.ignored.append(text)
        else:
            self.errors.append(f"console.error: {text}" + (f" ({where})" if where else ""))

    # -- Lab ---------------------------------------------------------------------------------
    def open(self):
        lab = self.lab
        self.page.goto(f"{lab['url']}/lab/tree/{self.name}?token={lab['token']}&reset")
        self.wait_kernel_idle()
        self.page.evaluate("() => { jupyterapp.shell.collapseLeft(); jupyterapp.shell.collapseRight(); }")

    def wait_kernel_idle(self, timeout=KERNEL_TIMEOUT_MS):
        self.page.wait_for_function(
            """(name) => {
                 const w = window.jupyterapp && jupyterapp.shell.currentWidget;
                 if (!w || !w.context || w.context.path !== name) return false;
                 const k = w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
                 return !!k && k.connectionStatus === 'connected' && k.status === 'idle';
               }""",
            arg=self.name,
            timeout=timeout,
        )

    def run_all(self):
        """Run every cell; returns when each code cell has run and the kernel is idle again."""
        self.page.evaluate("() => { jupyterapp.commands.execute('notebook:run-all-cells'); }")
        self.page.wait_for_function(
            """() => {
                 const nb = jupyterapp.shell.currentWidget;
                 const k = nb.sessionContext.session.kernel;
                 return k.status === 'idle' && nb.content.widgets.every(
                   c => c.model.type !== 'code' || c.model.executionCount != null);
               }""",
            timeout=RUN_ALL_TIMEOUT_MS,
        )

    def cell_errors(self) -> list[str]:
        """The error outputs of the notebook's cells (ename: evalue)."""
        return self.page.evaluate(
            """() => jupyterapp.shell.currentWidget.content.widgets.flatMap(c =>
                 c.model.type === 'code' ? c.model.outputs.toJSON().filter(o => o.output_type === 'error')
                   .map(o => `${o.ename}: ${o.evalue}`) : [])"""
        )

    def run_code(self, code: str, timeout=UI_TIMEOUT_MS) -> str:
        """Append a code cell, run it in the notebook's kernel and return its text output."""
        return self.page.evaluate(
            """async ([code, timeout]) => {
                 const nb = jupyterapp.shell.currentWidget;
                 const n = nb.content.model.cells.length;
                 nb.content.model.sharedModel.insertCell(n, {cell_type: 'code', source: code});
                 nb.content.activeCellIndex = n;
                 await jupyterapp.commands.execute('notebook:run-cell');
                 const cell = nb.content.widgets[n];
                 const t0 = performance.now();
                 while (cell.model.executionCount == null && performance.now() - t0 < timeout)
                   await new Promise(r => setTimeout(r, 20));
                 return cell.model.outputs.toJSON().map(o =>
                   o.output_type === 'stream' ? o.text :
                   o.output_type === 'error' ? `${o.ename}: ${o.evalue}` :
                   (o.data && o.data['text/plain']) || '').join('');
               }""",
            [code, timeout],
        )

    def probe(self, expr: str):
        """The JSON value of a Python expression evaluated in the notebook's kernel."""
        marker = "LRPROBE:"
        out = self.run_code(f"import json as _j\nprint({marker!r} + _j.dumps({expr}, default=str))")
        line = next((ln for ln in out.splitlines() if ln.startswith(marker)), None)
        assert line is not None, f"no probe output for {expr!r}: {out!r}"
        return json.loads(line[len(marker) :])

    def wait(self, js: str, arg=None, timeout=UI_TIMEOUT_MS):
        return self.page.wait_for_function(js, arg=arg, timeout=timeout).json_value()

    def mark(self):
        """Start a new span for :meth:`assert_no_errors` (each test checks its own span)."""
        self._mark = len(self.errors)

    def assert_no_errors(self, since: int | None = None):
        """No console error / page error since the last :meth:`mark` (or since index ``since``)."""
        errs = self.errors[self._mark if since is None else since :]
        assert errs == [], f"{len(errs)} console/page error(s):\n" + "\n".join(errs)


@pytest.fixture(scope="module")
def quickstart(browser, lab):
    """The quickstart notebook opened in Lab and run; the dashboard is rendered."""
    ctx = browser.new_context(viewport={"width": 1600, "height": 1500})
    page = ctx.new_page()
    nb = LabNotebook(page, lab, NOTEBOOK)
    try:
        t0 = time.perf_counter()
        nb.open()
        t1 = time.perf_counter()
        nb.run_all()
        nb.wait("""() => document.querySelectorAll('.lr-dashboard .lr-table tr.lr-row').length > 0
                     && document.querySelectorAll('.lr-dashboard .lr-roofline .dot').length > 0
                     && document.querySelectorAll('.lr-dashboard .lr-memory .bar').length > 0""")
        nb.timings = {"open_to_kernel_idle_s": t1 - t0, "run_all_to_rendered_s": time.perf_counter() - t1}
        yield nb
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "lab-setup-failure.png"), full_page=True)
        raise
    finally:
        ctx.close()


@pytest.fixture(scope="session")
def lab_notebook():
    """The :class:`LabNotebook` class, for modules that open notebooks of their own."""
    return LabNotebook
