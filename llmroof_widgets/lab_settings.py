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

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

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


# one pass over the text: strings are kept whole; comments and trailing commas (a comma whose next
# token is } or ]) are what goes
_JSON5_TOKENS = re.compile(
    r""""(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'"""  # double- and single-quoted strings
    r"|//[^\n]*|/\*.*?(?:\*/|\Z)"  # line and block comments
    r"|,(?=(?:\s|//[^\n]*|/\*.*?\*/)*[}\]])",  # trailing commas
    re.S,
)


def strip_json_comments(text: str) -> str:
    """JSON5-ish → JSON: drop ``//`` and ``/* */`` comments and trailing commas (outside strings)."""

    def keep(m: re.Match) -> str:
        t = m.group(0)
        if t[0] in "\"'":
            return t
        return " " if t.startswith("/*") else ""  # a block comment becomes a space

    return _JSON5_TOKENS.sub(keep, text)


def _parse(text: str) -> dict:
    try:
        data = json.loads(strip_json_comments(text))
    except ValueError:
        try:  # full JSON5 (single quotes, unquoted keys ...) when the json5 package is there
            import json5  # type: ignore[import-not-found]

            data = json5.loads(text)
        except Exception:
            raise ValueError("not JSON") from None
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
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
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
