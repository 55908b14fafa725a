"""Static export: one self-contained HTML file that renders the widgets with no kernel and no network.

    import llmroof_widgets as lr
    ui = lr.Dashboard(model="meta-llama/Llama-3.1-8B", hardware="h100-sxm")
    lr.export_html(ui, "llama-on-h100.html")

The page holds everything it needs (widgets recipe §2.5):

- the widget state (``embed_data`` with ``drop_defaults=False`` everywhere, so anywidget's per-instance
  ``_esm`` / ``_css`` travel along, pitfall P10);
- the AMD bundles of every third-party widget module the state uses (anywidget, bqplot, bqscales, read
  from ``<prefix>/share/jupyter/nbextensions/<module>/index.js``), each registered with require.js under
  its module name from a Blob URL, so the HTML manager finds them locally and never asks a CDN;
- require.js and ``@jupyter-widgets/html-manager``'s ``embed-amd.js`` (the widget manager itself, with
  ``@jupyter-widgets/base`` and ``controls``), copied into ``llmroof_widgets/static/embed/`` by the JS build.

Every inlined text is escaped for a ``<script>`` element (``</script`` and ``<!--`` cannot end or
confuse it), so no text from a model name or a config can become markup.

A dashboard's page also carries precomputed states (``grid=``, :mod:`llmroof_widgets.export_states`):
its controls switch between the settings of a grid around the exported one with no kernel; values
outside the grid are offered nowhere or flagged as needing a live kernel. Selections linked on the
front end (table row ↔ roofline dot ↔ formula) keep working.
"""

from __future__ import annotations

import functools
import html
import json
import os
import pathlib
import re
import sys
from collections.abc import Iterable
from typing import Any

from .engine.files import write_text_atomic

__all__ = ["export_html", "html_bundle_paths", "MissingEmbedAssetError"]

HERE = pathlib.Path(__file__).resolve().parent
EMBED_DIR = HERE / "static" / "embed"
REPO_ROOT = HERE.parent

# modules the HTML manager defines itself (embed-amd.js)
BUILTIN_MODULES = {"@jupyter-widgets/base", "@jupyter-widgets/controls", "@jupyter-widgets/output"}

_SCRIPT_END = re.compile(r"</(script)", re.IGNORECASE)
_SOURCE_MAP = re.compile(r"^//[#@] sourceMappingURL=\S*\s*$", re.MULTILINE)


class MissingEmbedAssetError(RuntimeError):
    """A script the static page must inline was not found."""


# -- escaping -----------------------------------------------------------------------------------
def escape_js(text: str) -> str:
    """JavaScript source made safe as the content of a ``<script>`` element.

    ``</script`` becomes ``<\\/script`` (the same string, regular expression or comment to the JS
    parser) and ``<!--`` becomes ``\\x3C!--`` (likewise), so the element cannot be closed early or
    switched into the HTML parser's "double escaped" state.
    """
    return _SCRIPT_END.sub(r"<\\/\1", text).replace("<!--", "\\x3C!--")


def escape_json(data: Any) -> str:
    """JSON for a ``<script type="application/...+json">`` element: ``<``, ``>`` and ``&`` as ``\\u`` escapes.

    In JSON these characters can only occur inside strings, where the escapes mean the same thing,
    so the text is still valid JSON that parses to the same data.
    """
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_json_default)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _json_default(obj):
    # numpy scalars that slipped into a trait
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (bytes, bytearray, memoryview)):
        raise TypeError("binary buffers must go through embed_data's buffer encoding")
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


# -- locating the scripts -------------------------------------------------------------------------
def _nbextension_dirs() -> list[pathlib.Path]:
    dirs = [pathlib.Path(sys.prefix) / "share" / "jupyter" / "nbextensions"]
    try:
        from jupyter_core.paths import jupyter_path

        dirs += [pathlib.Path(p) for p in jupyter_path("nbextensions")]
    except Exception:  # pragma: no cover - jupyter_core is a dependency of ipywidgets' kernels
        pass
    seen, out = set(), []
    for d in dirs:
        key = os.path.normcase(str(d))
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def _package_nbextension(module: str) -> pathlib.Path | None:
    """``<site-packages>/<module>/nbextension/index.js`` (anywidget and bqscales ship one there)."""
    if not module.replace("-", "_").isidentifier():
        return None
    try:
        import importlib.util

        spec = importlib.util.find_spec(module.replace("-", "_"))
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = pathlib.Path(loc) / "nbextension" / "index.js"
        if p.is_file():
            return p
    return None


def module_bundle_path(module: str) -> pathlib.Path:
    """The AMD bundle of a widget module (e.g. ``"bqplot"``): its classic-notebook extension ``index.js``."""
    for d in _nbextension_dirs():
        p = d / module / "index.js"
        if p.is_file():
            return p
    p = _package_nbextension(module)
    if p is not None:
        return p
    raise MissingEmbedAssetError(
        f"export_html: no AMD bundle for the widget module {module!r}: looked for "
        f"{', '.join(str(d / module / 'index.js') for d in _nbextension_dirs())}. "
        f"Install the Python package that provides it (e.g. `pip install {module}`) in this environment."
    )


def embed_asset_path(name: str) -> pathlib.Path:
    """``require.js``, ``embed-amd.js`` or a widget schema: from ``llmroof_widgets/static/embed/`` (the JS build),
    else from the repository's ``node_modules`` (a development checkout after ``npm install``)."""
    p = EMBED_DIR / name
    if p.is_file():
        return p
    fallback = {
        "embed-amd.js": REPO_ROOT / "node_modules" / "@jupyter-widgets" / "html-manager" / "dist" / "embed-amd.js",
        "require.js": REPO_ROOT / "node_modules" / "requirejs" / "require.js",
        "state.schema.json": REPO_ROOT / "node_modules" / "@jupyter-widgets" / "schema" / "v2" / "state.schema.json",
        "view.schema.json": REPO_ROOT / "node_modules" / "@jupyter-widgets" / "schema" / "v2" / "view.schema.json",
    }.get(name)
    if fallback is not None and fallback.is_file():
        return fallback
    raise MissingEmbedAssetError(
        f"export_html: {p} is missing. Build the front end first: run `npm install && npm run build` in the "
        "repository root (or reinstall with `pip install -e .`, which runs the same build)."
    )


def html_bundle_paths(modules: Iterable[str] = ("anywidget", "bqplot", "bqscales")) -> dict[str, pathlib.Path]:
    """Where each inlined script comes from (for checks and for the curious)."""
    out = {"require.js": embed_asset_path("require.js"), "embed-amd.js": embed_asset_path("embed-amd.js")}
    for m in modules:
        out[m] = module_bundle_path(m)
    return out


def _read_script(path: pathlib.Path) -> str:
    text = path.read_text(encoding="utf-8")
    # the .map files are not inlined: drop the references so nothing tries to fetch them
    return _SOURCE_MAP.sub("", text)


# html-manager compiles ipywidgets' state and view JSON schemas with ajv when its module loads (code
# generation: a tenth of a second or more of every page opening) and checks the page's state against them.
# The exported state is checked against the same schemas once, here, at export (:func:`validate_state`), and
# the page's copy of the manager skips ajv: the two compile sites of html-manager's embed-amd.js (pinned in
# package-lock.json) are replaced. If a new html-manager no longer matches, the page keeps ajv (still correct).
_AJV_SITES = (
    # the module whose compiled validators are unused: `x=new(A());x.compile(s),x.compile(v);`
    (re.compile(r"\b(\w+)=new\((\w+)\(\)\);\1\.compile\((\w+)\),\1\.compile\((\w+)\);"), r"\1=null;"),
    # renderManager's validators: `k=new(A()),E=k.compile(s),$=k.compile(v);` → always valid (checked at export)
    (
        re.compile(
            r"\b([\w$]+)=new\(([\w$]+)\(\)\),([\w$]+)=\1\.compile\(([\w$]+)\),([\w$]+)=\1\.compile\(([\w$]+)\);"
        ),
        r"\1=null,\3=function(){return!0},\5=function(){return!0};",
    ),
)


def embed_script() -> tuple[str, int]:
    """html-manager's embed-amd.js with its schema compilation removed; (text, sites replaced)."""
    path = embed_asset_path("embed-amd.js")
    return _patched_embed(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _patched_embed(path: str, mtime_ns: int) -> tuple[str, int]:
    """embed_script for the file as of ``mtime_ns`` (read and patched once per version of the file)."""
    text = _read_script(pathlib.Path(path))
    n = 0
    for pattern, repl in _AJV_SITES:
        # the sites sit right before a ".compile(": match only in windows there (a 3.6 MB text)
        at = text.find(".compile(")
        while at >= 0:
            m = pattern.search(text, max(0, at - 80), at + 120)
            if m is not None:
                text = text[: m.start()] + m.expand(repl) + text[m.end() :]
                n += 1
                break
            at = text.find(".compile(", at + 1)
    return text, n


# embed-amd.js also defines ipywidgets 7's base and controls ("@jupyter-widgets/base7", "controls7": 0.8 MB of the
# 3.6 MB), which the manager loads only for models saved by ipywidgets 7 (module version 1.x). A state whose
# base/controls models are all version 2 never needs them: the page leaves them out (less to parse at every opening).
_V7_START = "/*! For license information please see base7.js.LICENSE.txt */\n"
_V7_END = "/*! For license information please see index.js.LICENSE.txt */\n"
_V7_MODULES = ("@jupyter-widgets/base7", "@jupyter-widgets/controls7")


def needs_widgets_v7(manager_state: dict) -> bool:
    """Whether a model of the state is an ipywidgets 7 base/controls model (module version not 2.x)."""
    for m in manager_state["state"].values():
        for side in ("model", "view"):
            mod = m.get(f"{side}_module") or m["state"].get(f"_{side}_module")
            ver = m.get(f"{side}_module_version") or m["state"].get(f"_{side}_module_version") or ""
            if mod in ("@jupyter-widgets/base", "@jupyter-widgets/controls") and not str(ver).startswith("2."):
                return True
    return False


def without_widgets_v7(text: str) -> str:
    """embed-amd.js without the ipywidgets 7 modules (unchanged if their boundaries are not found as expected)."""
    a = text.find(_V7_START)
    b = text.find(_V7_END, a + 1) if a >= 0 else -1
    if a < 0 or b < 0:
        return text
    span = text[a:b]
    defined = re.findall(r'(?m)^define\("([^"]+)"', span)
    if sorted(defined) != sorted(_V7_MODULES):
        return text
    return text[:a] + "/* ipywidgets 7 base/controls left out: every model of this page is ipywidgets 8 */\n" + text[b:]


_JSON_TYPES = {
    "object": dict,
    "array": (list, tuple),
    "string": str,
    "number": (int, float),
    "integer": int,
    "boolean": bool,
    "null": type(None),
}
# the draft-07 keywords the widget schemas use (jsonschema itself takes seconds to import: its URI grammars)
_SCHEMA_KEYWORDS = {"$schema", "description", "type", "properties", "additionalProperties", "required", "items"}
_SCHEMA_KEYWORDS |= {"minimum", "maximum", "const", "oneOf"}


def schema_errors(value, schema: dict, path: str = ""):
    """The first error of ``value`` against a draft-07 ``schema`` that uses only :data:`_SCHEMA_KEYWORDS`
    (a schema with another keyword raises: a new html-manager's schema is never checked half-way); None if valid."""
    unknown = set(schema) - _SCHEMA_KEYWORDS
    if unknown:
        raise ValueError(f"export_html: the widget schema uses keywords this checker does not know: {sorted(unknown)}")
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else types
        ok = any(
            isinstance(value, _JSON_TYPES[t]) and not (t in ("number", "integer") and isinstance(value, bool))
            for t in names
        )
        if not ok:
            return f"{path or '/'}: expected {' or '.join(names)}, got {type(value).__name__}"
    if "const" in schema and value != schema["const"]:
        return f"{path or '/'}: must be {schema['const']!r}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{path or '/'}: {value} is less than the minimum of {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{path or '/'}: {value} is greater than the maximum of {schema['maximum']}"
    if "oneOf" in schema and sum(schema_errors(value, s, path) is None for s in schema["oneOf"]) != 1:
        return f"{path or '/'}: must match exactly one of {len(schema['oneOf'])} alternatives"
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                return f"{path or '/'}: {key!r} is required"
        props, extra = schema.get("properties", {}), schema.get("additionalProperties", True)
        for key, v in value.items():
            sub = props.get(key, extra)
            if sub is False:
                return f"{path}/{key}: no such property"
            if isinstance(sub, dict) and sub:
                err = schema_errors(v, sub, f"{path}/{key}")
                if err:
                    return err
    if isinstance(value, (list, tuple)) and isinstance(schema.get("items"), dict):
        for k, v in enumerate(value):
            err = schema_errors(v, schema["items"], f"{path}/{k}")
            if err:
                return err
    return None


def validate_state(data: dict) -> None:
    """The exported widget state and view specs against the JSON schemas html-manager's ajv checked on every
    page opening (@jupyter-widgets/schema v2, copied by the JS build next to embed-amd.js). Raises
    ``ValueError`` naming the first error."""
    for name, items in (("state", [data["manager_state"]]), ("view", data["view_specs"])):
        schema = json.loads(embed_asset_path(f"{name}.schema.json").read_text(encoding="utf-8"))
        for item in items:
            err = schema_errors(item, schema)
            if err:
                raise ValueError(f"export_html: the widget {name} does not match the widget schema at {err}")


# -- the widgets ------------------------------------------------------------------------------------
def _as_widgets(obj) -> list:
    """The ipywidgets to show for ``obj``: a widget (a Dashboard is one), an object exposing one
    (``.widget`` / ``.ui`` / ``.box``), or a list of those."""
    import ipywidgets as W

    if isinstance(obj, W.Widget):
        return [obj]
    if isinstance(obj, (list, tuple)):
        out = []
        for o in obj:
            out.extend(_as_widgets(o))
        if not out:
            raise ValueError("export_html: nothing to export (empty list)")
        return out
    for attr in ("widget", "ui", "box"):
        w = getattr(obj, attr, None)
        if isinstance(w, W.Widget):
            return [w]
    raise TypeError(
        f"export_html: expected a Dashboard, an ipywidgets widget or a list of them, got {type(obj).__name__}"
    )


def _state_modules(state: dict) -> list[str]:
    mods = []
    for s in state.values():
        for key in ("model_module", "view_module"):
            m = s.get(key) or s.get("state", {}).get(f"_{key}")
            if m and m not in BUILTIN_MODULES and m not in mods:
                mods.append(m)
    return mods


def widget_data(widgets) -> dict:
    """``{"manager_state", "view_specs", "modules"}`` for the views: every model they reference,
    with every trait (defaults included: anywidget's ``_esm`` is a per-instance trait)."""
    from ipywidgets.embed import dependency_state, embed_data

    views = _as_widgets(widgets)
    state = dependency_state(views, drop_defaults=False)
    data = embed_data(views=views, drop_defaults=False, state=state)
    data["modules"] = _state_modules(data["manager_state"]["state"])
    return data


# -- the page --------------------------------------------------------------------------------------
_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="llmroof_widgets {version}">
<title>{title}</title>
<style>
body {{ margin: 0; padding: 16px 20px; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #1a1a1a; background: #fff; }}
.lr-export-header {{ font-size: 13px; color: #555; margin: 0 0 12px; }}
.lr-export-header h1 {{ font-size: 18px; color: #1a1a1a; margin: 0 0 4px; unicode-bidi: isolate; }}
.lr-export-view {{ margin-bottom: 16px; }}
.lr-export-states {{ font-size: 13px; color: #444; }}
.lr-export-states .lr-export-notice {{ margin-top: 6px; padding: 6px 10px; border: 1px solid #d08700;
       background: #fff4d6; color: #5a3b00; border-radius: 4px; }}
.lr-export-view:has(.lr-export-view-states) {{ position: sticky; top: 0; z-index: 20; background: #fff; padding: 4px 0; }}
body.lr-offgrid .lr-export-figure {{ opacity: 0.35; }}
body.lr-export .lr-export-view .widget-hbox.lr-export {{ display: none; }}
</style>
</head>
<body class="lr-export">
<div class="lr-export-header"><h1 dir="auto">{title}</h1>{note}</div>
{modules}
<script>{requirejs}</script>
<script>
(function () {{
  // register each inlined AMD bundle under its module name (they are anonymous define()s)
  var paths = {{}};
  var nodes = document.querySelectorAll('script[type="text/plain"][data-amd-module]');
  for (var i = 0; i < nodes.length; i++) {{
    var s = nodes[i];
    paths[s.getAttribute("data-amd-module")] = URL.createObjectURL(new Blob([s.textContent], {{ type: "text/javascript" }}));
  }}
  window.require.config({{ paths: paths, waitSeconds: 0 }});
}})();
</script>
<script type="application/vnd.jupyter.widget-state+json">{state}</script>
<script>
(function () {{
  // start inflating a dashboard's precomputed states now, while the widget manager loads (js/export_states.js
  // picks the promise up): the payload is the one "payload" string of the state above (base64: no escapes)
  if (typeof DecompressionStream === "undefined" || typeof fetch === "undefined") return;
  var el = document.querySelector('script[type="application/vnd.jupyter.widget-state+json"]');
  var text = el ? el.textContent : "";
  var at = text.indexOf('"payload":"');
  if (at < 0) return;
  var start = at + 11, end = text.indexOf('"', start);
  if (end <= start) return;
  var b64 = text.slice(start, end);
  var key = b64.length + ":" + b64.slice(0, 64) + b64.slice(-64);
  var promise = fetch("data:application/gzip;base64," + b64)
    .then(function (r) {{ return new Response(r.body.pipeThrough(new DecompressionStream("gzip"))).text(); }})
    .then(function (t) {{ return JSON.parse(t); }});
  promise.catch(function () {{}});
  window.__lrInflating = {{ key: key, promise: promise }};
}})();
</script>
{views}
<script>{embed}</script>
{fonts}
</body>
</html>
"""

NOTE = (
    "Exported from a notebook with llmroof_widgets: the figures are those of the last computation; "
    "selections work, controls that recompute need a live kernel."
)
NOTE_STATES = (
    "Exported from a notebook with llmroof_widgets. Every figure was computed by the engine in the notebook: "
    "the controls switch between the precomputed settings listed below, with no kernel; greyed-out controls "
    "and values outside the grid need a live kernel. Selections work."
)


def _is_dashboard(obj) -> bool:
    return hasattr(obj, "state") and hasattr(obj, "controls") and hasattr(getattr(obj, "state", None), "update")


def _with_states(widgets, grid):
    """(views to export, ExportStates widget or None, capture) for ``grid`` (see export_states)."""
    if grid is False:
        return widgets, None, None
    if not _is_dashboard(widgets):
        if grid is None:
            return widgets, None, None
        raise ValueError("export_html: grid= needs an lr.Dashboard (its State and controls); pass grid=None")
    from . import export_states as es

    axes = es.default_grid(widgets) if grid is None else es.check_grid(widgets, grid)
    cap = es.capture_states(widgets, axes)
    switcher = es.ExportStates(payload=es.encode(cap["payload"]), summary=es.summary(axes, cap["states"]))
    switcher.add_class("lr-export-view-states")
    return [switcher, widgets], switcher, cap


def _patch_state(manager_state: dict, cap: dict, switcher_id: str) -> None:
    """Put the capture's control patches into the exported models and mark the changing views."""
    models = manager_state["state"]
    for mid, traits in cap["manager_patch"].items():
        if mid in models:
            models[mid]["state"].update(traits)
    changed = set(cap["figures"])
    missing = sorted(changed - set(models))
    if missing:
        raise RuntimeError(f"export_html: a recomputation changed models that the page does not hold: {missing}")
    # the views whose figures change get a class (dimmed while a control is off the grid)
    for mid, m in models.items():
        st = m["state"]
        if "_dom_classes" not in st or mid == switcher_id:
            continue
        refs = json.dumps({k: st.get(k) for k in ("marks", "axes", "children")})
        if mid in changed or any(f"IPY_MODEL_{c}" in refs for c in changed):
            if m.get("model_name") in ("HBoxModel", "VBoxModel", "BoxModel", "AccordionModel"):
                continue
            if "lr-export-figure" not in st["_dom_classes"]:
                st["_dom_classes"] = [*st["_dom_classes"], "lr-export-figure"]


def render_html(widgets, title: str | None = None, grid=None) -> str:
    """The page as a string (see :func:`export_html`)."""
    from . import __version__

    views, switcher, cap = _with_states(widgets, grid)
    try:
        data = widget_data(views)
        if cap is not None:
            _patch_state(data["manager_state"], cap, switcher.model_id)
        validate_state(data)
    finally:
        if switcher is not None:
            switcher.close()
    modules = []
    for m in data["modules"]:
        src = _read_script(module_bundle_path(m))
        modules.append(
            f'<script type="text/plain" data-amd-module="{html.escape(m, quote=True)}">{escape_js(src)}</script>'
        )
    views = "\n".join(
        f'<div class="lr-export-view"><script type="application/vnd.jupyter.widget-view+json">'
        f"{escape_json(spec)}</script></div>"
        for spec in data["view_specs"]
    )
    if title is None:
        title = _default_title(widgets)
    embed = embed_script()[0]
    return _PAGE.format(
        version=html.escape(__version__),
        title=html.escape(str(title)),
        note=html.escape(NOTE if cap is None else NOTE_STATES),
        modules="\n".join(modules),
        requirejs=escape_js(_read_script(embed_asset_path("require.js"))),
        state=escape_json(data["manager_state"]),
        views=views,
        embed=escape_js(embed if needs_widgets_v7(data["manager_state"]) else without_widgets_v7(embed)),
        fonts=_font_style(),
    )


FONTS = (("fa-solid-900.woff2", 900), ("fa-regular-400.woff2", 400))


def _font_style() -> str:
    """Font Awesome faces as data URLs (the manager's CSS points them at files next to the page).

    A ``<style>`` at the end of ``<body>`` comes after the manager's injected ``<head>`` styles in
    document order, so these faces win and nothing is requested. Empty if the fonts were not built.
    """
    import base64

    faces = []
    for name, weight in FONTS:
        p = EMBED_DIR / name
        if not p.is_file():
            continue
        b64 = base64.b64encode(p.read_bytes()).decode("ascii")
        faces.append(
            f'@font-face{{font-family:"Font Awesome 5 Free";font-style:normal;font-weight:{weight};'
            f'font-display:block;src:url(data:font/woff2;base64,{b64}) format("woff2")}}'
        )
    return f"<style>{''.join(faces)}</style>" if faces else ""


def _default_title(widgets) -> str:
    state = getattr(widgets, "state", None)
    result = getattr(state, "result", None)
    if result is not None:
        try:
            # each name isolated (U+2068 … U+2069): a right-to-left override in a name cannot reverse the rest
            return f"\u2068{result.model.name}\u2069 on \u2068{result.hardware.name}\u2069 — roofline"
        except Exception:  # pragma: no cover - any result-like object
            pass
    return "llmroof_widgets export"


def export_html(widget_or_dashboard, path, title: str | None = None, grid=None) -> pathlib.Path:
    """Write ONE self-contained HTML file that shows the widget(s) with no kernel and no network.

    Parameters
    ----------
    widget_or_dashboard : an ``lr.Dashboard``, any ipywidgets widget (an anywidget, a bqplot
        Figure, a box of them), or a list of those (shown one below the other)
    path : file to write (``.html``)
    title : page title; by default "<model> on <device> — roofline" for a dashboard
    grid : for a dashboard, the settings its page can switch between with no kernel: ``None`` (the
        default grid around the current setting, :func:`llmroof_widgets.export_states.default_grid`:
        batch sizes 1, 2, 4, … up to the largest that fits, three prompt lengths, two generation
        lengths, weights 16/8/4 bits, KV cache 16/8 bits, each enabled technique knob off and on), a
        dict ``{axis: [values]}`` (axes: the State's inputs such as ``batch_size``, ``prompt_len``,
        ``gen_len``, ``w_bits``, ``kv_bits``, ``a_bits``, ``hardware``, ``logits``, ``attention``,
        ``phase`` and the technique knobs such as ``tp``; every combination is computed; axes left
        out stay at the current value) or ``False`` (figures of the current setting only).

    Returns the path written. The file is a few MB (the widget manager and the plotting library are
    inlined; the default grid adds a few MB) and opens from disk (``file://``), from any static web
    server or as an e-mail attachment. Front-end links (table row ↔ roofline dot ↔ formula) work in
    it; a dashboard's controls switch between the grid's settings (drop-downs offer only those,
    other controls are greyed out, a value typed outside the grid shows a notice and dims the
    figures). The dashboard's sweep and serving sections are not recomputed per setting.
    """
    page = render_html(widget_or_dashboard, title=title, grid=grid)
    path = pathlib.Path(path)
    write_text_atomic(path, page, "export_html")  # a failure leaves no partial page (ValueError naming the path)
    return path
