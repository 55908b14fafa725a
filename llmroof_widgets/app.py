"""``llmroof app``: the dashboard as a web page for people who never open a notebook (Voilà).

Voilà (an existing server for notebook apps, https://voila.readthedocs.io) runs a one-cell notebook
that builds an :class:`lr.Dashboard` and serves only its output: the controls recompute on the
server's kernel. Voilà is the optional extra ``app``: ``pip install "llmroof-widgets[app]"``.

    llmroof app                                   # opens http://localhost:8866 in a browser
    llmroof app --model meta-llama/Llama-3.1-8B --hardware h100-sxm --port 8866 --no-browser

The same page by hand: ``voila dashboard.ipynb`` on a notebook whose one cell is
``import llmroof_widgets as lr; lr.Dashboard(model=..., hardware=...)``.
"""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys
import tempfile

__all__ = ["app_notebook", "voila_command", "run_app", "MissingExtraError"]


class MissingExtraError(ImportError):
    """An optional extra is not installed."""


def _require_voila():
    try:
        import voila  # noqa: F401
    except ImportError as e:
        raise MissingExtraError(
            'llmroof app needs Voilà, which is in the optional extra "app": '
            'pip install "llmroof-widgets[app]" (or pip install voila)'
        ) from e


def app_notebook(path, model: str | None = None, hardware: str | None = None, **inputs) -> pathlib.Path:
    """Write the app's notebook: one cell that shows a Dashboard (arguments left out take the
    JupyterLab settings, then the State's defaults)."""
    kwargs = {k: v for k, v in dict(model=model, hardware=hardware, **inputs).items() if v is not None}
    for k, v in kwargs.items():
        if not isinstance(v, (str, int, float)) or isinstance(v, bool):
            raise ValueError(f"llmroof app: {k} must be a string or a number, got {type(v).__name__}")
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    source = f"import llmroof_widgets as lr\n\nui = lr.Dashboard({args})\nui"
    nb = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "id": "app", "metadata": {}, "outputs": [], "source": source}
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = pathlib.Path(path)
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return path


def voila_command(notebook, port: int = 8866, open_browser: bool = True, ip: str = "localhost") -> list[str]:
    """The Voilà command line that serves ``notebook``."""
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"llmroof app: port must be an integer in 1–65535, got {port!r}")
    cmd = [sys.executable, "-m", "voila", str(notebook), f"--port={port}", f"--Voila.ip={ip}"]
    if not open_browser:
        cmd.append("--no-browser")
    return cmd


def run_app(model=None, hardware=None, port: int = 8866, open_browser: bool = True, ip: str = "localhost", **inputs):
    """Serve the dashboard with Voilà until interrupted (Ctrl-C). Returns Voilà's exit status."""
    _require_voila()
    with tempfile.TemporaryDirectory(prefix="llmroof-app-") as d:
        nb = app_notebook(pathlib.Path(d) / "llmroof.ipynb", model=model, hardware=hardware, **inputs)
        cmd = voila_command(nb, port=port, open_browser=open_browser, ip=ip)
        print(f"llmroof app: serving the dashboard at http://{ip}:{port}/ (Ctrl-C stops it)", flush=True)
        proc = subprocess.Popen(cmd, cwd=d)
        # a SIGTERM to this process (a service manager, a test) stops Voilà and its kernel too: by default
        # Python would exit at once and leave them running
        previous = _on_sigterm(lambda *_: sys.exit(128 + signal.SIGTERM))
        try:
            return proc.wait()
        except KeyboardInterrupt:
            return 0
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
            if previous is not None:
                _on_sigterm(previous)


def _on_sigterm(handler):
    """Install ``handler`` for SIGTERM; returns the previous one (None off the main thread, where nothing changes)."""
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # signal handlers can be set from the main thread only
        return None
