"""The esbuild output that the anywidgets ship as their ``_esm`` (``llmroof_widgets/static/``).

The bundles are built from ``js/`` by ``npm run build`` (hatch-jupyter-builder runs it when the
package is installed). They are read when a widget is created, not at import, so that the engine
stays usable without a JavaScript build.
"""

from __future__ import annotations

import pathlib

STATIC_DIR = pathlib.Path(__file__).resolve().parent.parent / "static"

_cache: dict[str, tuple[float, str]] = {}


class MissingBundleError(RuntimeError):
    """The front-end bundle has not been built."""


def bundle_path(name: str) -> pathlib.Path:
    return STATIC_DIR / f"{name}.js"


def load_bundle(name: str) -> str:
    """Text of ``llmroof_widgets/static/<name>.js``; a clear error if it has not been built."""
    path = bundle_path(name)
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        raise MissingBundleError(
            f"The front-end bundle {path} is missing. Build the widgets' JavaScript first: "
            "run `npm install && npm run build` in the repository root "
            "(or reinstall the package with `pip install -e .`, which runs the same build)."
        ) from None
    hit = _cache.get(name)
    if hit is not None and hit[0] == mtime:
        return hit[1]
    text = path.read_text(encoding="utf-8")
    _cache[name] = (mtime, text)
    return text


class BundleESM:
    """Class attribute that yields a bundle's text on instances (read lazily, at widget creation).

    anywidget reads ``_esm`` with ``hasattr(self, "_esm")`` when a widget is created and makes it
    a per-instance synced trait; on the class itself this descriptor returns itself, so anywidget's
    ``__init_subclass__`` leaves it alone and nothing is read at import time.
    """

    def __init__(self, name: str):
        self.name = name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        return load_bundle(self.name)
