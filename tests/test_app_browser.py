"""``llmroof app`` in a real browser: Voilà serves the dashboard; changing a control recomputes on
the server's kernel and the figures change."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

START_TIMEOUT_S = 90
UI_TIMEOUT_MS = 120_000  # kernel start + the dashboard's first computation, on a shared CI machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    pytest.importorskip("voila", reason="Voilà (the optional extra 'app') is not installed")
    port = _free_port()
    log = tmp_path_factory.mktemp("app") / "voila.log"
    # the app's kernel imports this checkout of llmroof_widgets (not another installed copy)
    repo = str(Path(__file__).resolve().parents[1])
    env = dict(
        os.environ,
        JUPYTER_PLATFORM_DIRS="1",
        PYTHONPATH=os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])),
    )
    cmd = [sys.executable, "-m", "llmroof_widgets.cli", "app", "--model", "gpt2", "--hardware", "rtx-4090"]
    cmd += ["--prompt-len", "64", "--gen-len", "8", "--port", str(port), "--ip", "127.0.0.1", "--no-browser"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}/"
        t0 = time.monotonic()
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()  # the server listens
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() - t0 > START_TIMEOUT_S:
                    proc.kill()
                    pytest.fail(f"llmroof app did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.3)
        yield url
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        # stopping `llmroof app` stops Voilà too: nothing listens on its port any more
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_app_serves_the_dashboard_and_recomputes(browser, app_url):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    t0 = time.perf_counter()
    page.goto(app_url)
    page.wait_for_function(
        "document.querySelectorAll('tr.lr-row').length > 5 && document.querySelector('.lr-headline')",
        timeout=UI_TIMEOUT_MS,
    )
    print(f"\nllmroof app: dashboard rendered {time.perf_counter() - t0:.1f} s after opening the page")
    before = page.inner_text(".lr-headline")
    ro = page.locator(".widget-slider", has=page.locator("label:text-is('batch size')")).locator(".widget-readout")
    ro.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("32")
    page.keyboard.press("Enter")
    # the kernel recomputes: the headline (throughput, memory) changes
    page.wait_for_function("(b) => document.querySelector('.lr-headline').innerText !== b", arg=before, timeout=30_000)
    after = page.inner_text(".lr-headline")
    assert after != before
    assert errors == [], errors
    ctx.close()


def test_app_without_voila_is_a_clear_error(monkeypatch, capsys):
    import builtins

    from llmroof_widgets import cli

    real = builtins.__import__

    def no_voila(name, *a, **k):
        if name == "voila":
            raise ImportError("No module named 'voila'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_voila)
    assert cli.main(["app", "--no-browser"]) == 2
    assert 'extra "app"' in capsys.readouterr().err
