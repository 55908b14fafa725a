"""Defaults from the JupyterLab extension's settings (Settings › LLM Roofline).

The extension (``labextension/``, schema ``labextension/schema/plugin.json``) keeps three settings:
the default device, the default weight bits and the default model. JupyterLab stores what the user
changed in ``<settings dir>/llmroof-widgets/plugin.jupyterlab-settings`` (JSON with comments), where
the settings dir is ``$JUPYTERLAB_SETTINGS_DIR`` or ``<jupyter config dir>/lab/user-settings``
(``~/.jupyter/lab/user-settings``). The kernel usually inherits the server's environment, so it
finds the same file.

>>> from llmroof_widgets.lab_settings import read_lab_settings
>>> read_lab_settings()          # nothing set: the built-in defaults
{'model': 'meta-llama/Llama-3.1-8B', 'hardware': 'h100-sxm', 'w_bits': 16}

Never raises: a missing, unreadable or malformed file, or an invalid value, gives the default (a
bad value also gives a ``UserWarning``). ``LLMROOF_IGNORE_LAB_SETTINGS=1`` ignores the file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from .engine.catalog import read_text_file

PLUGIN_ID = "llmroof-widgets:plugin"
SETTINGS_FILE = Path("llmroof-widgets") / "plugin.jupyterlab-settings"

# The same defaults as the schema (labextension/schema/plugin.json) and the widgets' State.
DEFAULTS: dict[str, Any] = {"model": "meta-llama/Llama-3.1-8B", "hardware": "h100-sxm", "w_bits": 16}
WEIGHT_BITS = (16, 8, 4, 32)

# settings key (schema) → keyword of lr.Dashboard / lr.State / lr.analyze
KEYS = {"model": "model", "device": "hardware", "weightBits": "w_bits"}


def settings_dir() -> Path:
    """JupyterLab's user settings folder, resolved as jupyterlab_server does."""
    env = os.environ.get("JUPYTERLAB_SETTINGS_DIR")
    if env:
        return Path(env).expanduser()
    try:
        from jupyter_core.paths import jupyter_config_dir

        config = Path(jupyter_config_dir())
    except Exception:  # jupyter_core missing (a bare kernel): its rule, by hand
        config = Path(os.environ.get("JUPYTER_CONFIG_DIR") or Path.home() / ".jupyter")
    return config.expanduser() / "lab" / "user-settings"


def settings_path() -> Path:
    """Where the extension's user settings live (the file may not exist)."""
    return settings_dir() / SETTINGS_FILE


MAX_SETTINGS_BYTES = 1 << 20  # a settings file is a few hundred bytes


def strip_json_comments(text: str) -> str:
    """JSON with comments → JSON: drop ``//`` and ``/* */`` comments and trailing commas (outside strings).

    One linear scan (no regular expression, so no backtracking on hostile input); the settings
    themselves are read with a JSON5 parser (:func:`_parse`).
    """
    out: list[str] = []
    i, n = 0, len(text)
    pending_comma = -1  # index in ``out`` of a comma that a following } or ] makes trailing
    while i < n:
        c = text[i]
        if c in "\"'":  # a string, kept whole
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            pending_comma = -1
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            out.append(" ")
            i = n if j < 0 else j + 2
        elif c == ",":
            pending_comma = len(out)
            out.append(c)
            i += 1
        elif c in "}]":
            if pending_comma >= 0:
                out[pending_comma] = ""  # a trailing comma
            pending_comma = -1
            out.append(c)
            i += 1
        else:
            if not c.isspace():
                pending_comma = -1
            out.append(c)
            i += 1
    return "".join(out)


def _parse(text: str) -> dict:
    """The settings file (JSON5: comments, trailing commas, single quotes, unquoted keys) as a dict.

    ``pyjson5`` (a compiled parser: linear time, bounded nesting) reads it.
    """
    import pyjson5

    try:
        data = pyjson5.decode(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except Exception as e:  # pyjson5's Json5DecoderException and its kin: a malformed file
        raise ValueError(f"not JSON5 ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _check(key: str, value: Any) -> Any:
    """A checked value, or raises ValueError."""
    if key == "weightBits":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value not in WEIGHT_BITS:
            raise ValueError(f"weightBits must be one of {', '.join(map(str, WEIGHT_BITS))}, got {value!r}")
        return int(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key} must be a non-empty string, got {value!r}")
    value = value.strip()
    if key == "device":
        from .engine import list_hardware

        if value not in list_hardware():
            raise ValueError(f"device {value!r} is not in lr.list_hardware()")
    return value


def read_lab_settings(path: str | os.PathLike | None = None, *, only_set: bool = False) -> dict[str, Any]:
    """The dashboard defaults from the extension's JupyterLab settings.

    Returns ``{"model": ..., "hardware": ..., "w_bits": ...}`` (keywords of ``lr.Dashboard`` /
    ``lr.State``): the user's settings where set and valid, the built-in :data:`DEFAULTS`
    elsewhere. ``only_set=True`` returns only the keys the user set (validly), e.g. ``{}`` when
    there is no settings file. ``path`` overrides the settings file's location.
    """
    out: dict[str, Any] = {} if only_set else dict(DEFAULTS)
    if path is None and os.environ.get("LLMROOF_IGNORE_LAB_SETTINGS", "") not in ("", "0"):
        return out
    p = Path(path) if path is not None else settings_path()
    try:  # a regular file of at most 1 MiB: a pipe or a device is never read
        text = read_text_file(p, "JupyterLab settings", max_bytes=MAX_SETTINGS_BYTES)
    except ValueError as e:
        if os.path.lexists(p):
            warnings.warn(f"llmroof_widgets: ignoring the JupyterLab settings: {e}", stacklevel=2)
        return out
    try:
        data = _parse(text)
    except ValueError as e:
        warnings.warn(f"llmroof_widgets: ignoring the JupyterLab settings in {p}: {e}", stacklevel=2)
        return out
    for key, kw in KEYS.items():
        if key not in data:
            continue
        try:
            out[kw] = _check(key, data[key])
        except ValueError as e:
            warnings.warn(f"llmroof_widgets: JupyterLab setting ignored ({p}): {e}", stacklevel=2)
    return out


def apply_lab_settings(model: Any = None, hardware: Any = None, w_bits: Any = None) -> dict[str, Any]:
    """Fill what the caller did not give (``None``) from :func:`read_lab_settings`.

    For ``Dashboard``/``State`` constructors: ``model, hardware, w_bits`` come back as a dict with
    only the keys to pass on (``w_bits`` only when the settings or the caller give one).
    """
    given = {"model": model, "hardware": hardware, "w_bits": w_bits}
    missing = [k for k, v in given.items() if v is None]
    settings = read_lab_settings(only_set=True) if missing else {}
    out = {k: v for k, v in given.items() if v is not None}
    for k in missing:
        if k in settings:
            out[k] = settings[k]
    return out
