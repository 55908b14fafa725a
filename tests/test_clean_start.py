"""A clean start from the README's set-up: run.sh / bootstrap.sh behaviour and JupyterLab's Node tools.

The README's set-up puts ``.venv`` inside the repository, so every ``.js`` file of the installed
JupyterLab sits below the repository's ``package.json``. If that file said ``"type": "module"``,
Node would load JupyterLab's CommonJS tools (``node-version-check.js``, run at every Lab start) as
ES modules and print "require is not defined in ES module scope". The browser tests' Lab server
checks its own log too (tests/browser/test_layout.py).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _jupyterlab_dir() -> Path:
    import jupyterlab

    return Path(jupyterlab.__file__).parent


def test_repository_package_json_keeps_es_module_scope_away_from_an_in_repo_venv():
    # no package.json at the root says "type": "module" (the build scripts are .mjs)
    assert json.loads((REPO / "package.json").read_text()).get("type", "commonjs") == "commonjs"


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_jupyterlab_node_check_runs_from_a_venv_inside_the_repository():
    """Node runs JupyterLab's own start-up check as CommonJS from a .venv-like folder in the repo."""
    lab = _jupyterlab_dir()
    probe = Path(tempfile.mkdtemp(prefix=".lr-venv-probe-", dir=REPO))
    try:
        site = probe / "lib" / "site-packages" / "jupyterlab"
        (site / "staging").mkdir(parents=True)
        shutil.copy(lab / "node-version-check.js", site)
        shutil.copy(lab / "staging" / "package.json", site / "staging")
        r = subprocess.run(["node", "node-version-check.js"], cwd=site, capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(probe)
    assert "ES module" not in r.stderr and "require is not defined" not in r.stderr, r.stderr
    assert r.returncode == 0 and r.stdout.startswith("Node v"), (r.stdout, r.stderr)


def _executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def fake_checkout(tmp_path):
    """A copy of run.sh and scripts/bootstrap.sh next to a stand-in .venv whose python logs its calls
    (and, as pip, prints pip-like progress), so the scripts' own behaviour runs in seconds."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "run.sh", root)
    shutil.copy(REPO / "scripts" / "bootstrap.sh", root / "scripts")
    for f in ("pyproject.toml", "package.json"):
        shutil.copy(REPO / f, root)
    (root / "labextension").mkdir()
    shutil.copy(REPO / "labextension" / "package.json", root / "labextension")
    (root / "examples").mkdir()
    for nb in sorted((REPO / "examples").glob("*.ipynb")):
        shutil.copy(nb, root / "examples")
    log = tmp_path / "calls.log"
    _executable(
        root / ".venv" / "bin" / "python",
        f"""#!/usr/bin/env bash
echo "$*" >> {log}
if [ "$1 $2 $3" = "-m pip install" ] && [[ "$*" == *" -e "* ]]; then
  echo "Collecting anywidget"
  echo "Requirement already satisfied: numpy"
  echo "Successfully installed anywidget-0.9 llmroof-widgets-0.1.0"
  mkdir -p llmroof_widgets/static llmroof_widgets/labextension
  touch llmroof_widgets/static/layer_table.js llmroof_widgets/labextension/package.json
fi
""",
    )
    return root, log


def test_run_sh_prints_progress_and_opens_working_copies(fake_checkout):
    root, log = fake_checkout
    before = {p.name: p.read_bytes() for p in (root / "examples").glob("*.ipynb")}
    env = dict(os.environ, PATH=os.environ["PATH"])
    r = subprocess.run(
        ["bash", "run.sh", "--no-browser"], cwd=root, capture_output=True, text=True, timeout=120, env=env
    )
    assert r.returncode == 0, r.stderr
    # progress while installing: the steps and pip's per-package lines, not its "already satisfied" noise
    assert "bootstrap: installing llmroof_widgets[lab]" in r.stderr
    assert "  Collecting anywidget" in r.stderr and "Successfully installed" in r.stderr
    assert "Requirement already satisfied" not in r.stderr
    # Lab opens the working copy; the tracked examples are untouched and every example has a copy
    lab_call = log.read_text().splitlines()[-1]
    assert lab_call.startswith("-m jupyter lab notebooks/quickstart.ipynb") and "--no-browser" in lab_call
    assert {p.name for p in (root / "notebooks").glob("*.ipynb")} == set(before)
    assert {p.name: p.read_bytes() for p in (root / "examples").glob("*.ipynb")} == before
    assert "copied examples/quickstart.ipynb" in r.stderr

    # a second run keeps the user's edits in the working copy and does not reinstall
    (root / "notebooks" / "quickstart.ipynb").write_text("{}")
    r2 = subprocess.run(["bash", "run.sh"], cwd=root, capture_output=True, text=True, timeout=120, env=env)
    assert r2.returncode == 0, r2.stderr
    assert (root / "notebooks" / "quickstart.ipynb").read_text() == "{}"
    assert "bootstrap: up to date" in r2.stderr and "copied" not in r2.stderr
    assert sum("pip install" in c for c in log.read_text().splitlines()) == 2  # pip upgrade + install, once


def test_notebooks_working_copies_are_gitignored():
    r = subprocess.run(
        ["git", "check-ignore", "-q", "notebooks/quickstart.ipynb"], cwd=REPO, capture_output=True, text=True
    )
    assert r.returncode == 0, "notebooks/ (run.sh's working copies) must be gitignored"
