import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# widget tests must not pick up a developer's ~/.jupyter Lab settings for default model/device
os.environ.setdefault("LLMROOF_IGNORE_LAB_SETTINGS", "1")


# -- browser tests: one Debian Chromium per test session (shared by every browser test file) ------
import shutil  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _ensure_chromium() -> str | None:
    """Debian's chromium: installed with apt-get when missing (as ./test.sh does); None if that fails."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if shutil.which("apt-get") and not os.environ.get("LLMROOF_SKIP_BROWSER"):
        sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
        if sudo is not None:
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            subprocess.run(sudo + ["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
            subprocess.run(
                sudo + ["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True, timeout=900
            )
    return CHROMIUM if os.path.exists(CHROMIUM) else None


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium (Playwright, Debian's binary). Skips only when Chromium cannot be installed."""
    path = _ensure_chromium()
    if path is None:
        pytest.skip("Debian's chromium is not installed and could not be installed with apt-get")
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
    except Exception:
        pw.stop()
        raise
    yield b
    b.close()
    pw.stop()


LABEXT_SRC = ROOT / "labextension"
LABEXT_BUILT = ROOT / "llmroof_widgets" / "labextension"


@pytest.fixture(scope="session")
def labextension_built() -> dict:
    """The built JupyterLab extension's package.json (llmroof_widgets/labextension/, gitignored),
    rebuilt with ``node labextension/build.mjs`` when it is missing or older than its sources."""
    import json

    built = LABEXT_BUILT / "package.json"
    files = [LABEXT_SRC / "package.json", LABEXT_SRC / "install.json", ROOT / "README.md"]
    for sub in ("src", "style", "schema"):
        files += [f for f in (LABEXT_SRC / sub).rglob("*") if f.is_file()]
    if not built.exists() or any(f.stat().st_mtime > built.stat().st_mtime for f in files):
        node = shutil.which("node")
        if node is None:
            pytest.fail("llmroof_widgets/labextension is missing or stale and node is not installed to build it")
        r = subprocess.run(
            [node, str(LABEXT_SRC / "build.mjs")], cwd=LABEXT_SRC, capture_output=True, text=True, timeout=600
        )
        if r.returncode != 0:
            pytest.fail(f"node labextension/build.mjs failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return json.loads(built.read_text())
