"""The model catalog and reading configs: catalog names (Hub ids, aliases, published variants), the
bundled ``config.json`` files, files on disk (bounded, regular files only) and the Hugging Face Hub.

Parsing a config into a :class:`~.models.ModelConfig` is :mod:`.models`' business; this module only finds
and reads the JSON.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import stat
from functools import lru_cache
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
MODELS_DIR = DATA_DIR / "models"
MAX_CONFIG_BYTES = 16 * 2**20  # a config.json is a few kB; larger files are refused before reading


def _short(v) -> str:
    """repr of a value, cut short (a hostile value may be huge)."""
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 200:
        return f"an integer of {v.bit_length()} bits"
    s = repr(v)
    return s if len(s) <= 80 else s[:77] + "..."


@lru_cache(maxsize=1)
def _catalog_index() -> dict:
    """Catalog key → entry (hf_id, aliases, file, family, source_url, provenance), from index.json."""
    out: dict = {}
    # index.json, then index_*.json fragments (sorted) while new entries are being added
    for path in sorted(MODELS_DIR.glob("index*.json"), key=lambda p: (p.name != "index.json", p.name)):
        out.update(json.loads(path.read_text())["models"])
    return out


@lru_cache(maxsize=1)
def _variants_of() -> dict[str, list[str]]:
    """Catalog key → Hub ids of published variants (instruct / chat / base / re-releases) whose config has
    the same architecture: each entry's ``variants`` list, and a fragment's top-level ``variants_of`` map
    for entries listed elsewhere."""
    out: dict[str, list[str]] = {}
    for key, entry in _catalog_index().items():
        out.setdefault(key, []).extend(entry.get("variants", []))
    for path in sorted(MODELS_DIR.glob("index_*.json")):
        for key, names in json.loads(path.read_text()).get("variants_of", {}).items():
            out.setdefault(key, []).extend(names)
    return out


@lru_cache(maxsize=1)
def _name_map() -> dict[str, str]:
    """lowercase hf id / alias / file stem / listed variant → catalog key."""
    out: dict[str, str] = {}
    for key, names in _variants_of().items():
        if key in _catalog_index():
            for v in names:
                out[v.lower()] = key
    for key, entry in _catalog_index().items():
        out[key.lower()] = key
        out[entry["hf_id"].lower()] = key
        for alias in entry.get("aliases", []):
            out[alias.lower()] = key
    return out


# the suffix rule: "<org>/<base><suffix>" resolves to the catalog's "<org>/<base><replacement>" when that
# Hub id is in the catalog (an exact id, never a close match); post-training keeps the architecture
VARIANT_SUFFIXES = (
    ("-chat-hf", "-hf"),  # meta-llama/Llama-2-7b-chat-hf → Llama-2-7b-hf
    ("-instruct-hf", "-hf"),  # codellama/CodeLlama-7b-Instruct-hf → CodeLlama-7b-hf
    ("-instruct-2507", ""),  # Qwen3 2507 re-releases
    ("-thinking-2507", ""),
    ("-instruct", ""),
    ("-chat", ""),
    ("-it", ""),  # gemma instruction-tuned
    ("-base", ""),
)


def _resolve_variant(q: str) -> tuple[str, str] | None:
    """(catalog key, how) for a variant name, or None. ``q`` is lowercase."""
    key = _name_map().get(q)
    if key is not None:
        entry = _catalog_index()[key]
        if q in {key.lower(), entry["hf_id"].lower(), *(a.lower() for a in entry.get("aliases", []))}:
            return None  # the entry itself, not a variant
        return key, "a variant listed in the catalog"
    if q.count("/") != 1:
        return None
    ids = {e["hf_id"].lower(): k for k, e in _catalog_index().items()}
    for suffix, repl in VARIANT_SUFFIXES:
        if q.endswith(suffix) and q[: -len(suffix)] + repl in ids:
            return ids[q[: -len(suffix)] + repl], f"suffix rule {suffix!r}"
    return None


def list_models() -> list[str]:
    """Hugging Face ids of the built-in model catalog."""
    return sorted(entry["hf_id"] for entry in _catalog_index().values())


def catalog_entry(name: str) -> dict | None:
    """The catalog entry of a name (Hub id, alias, or a published variant with the same architecture).

    A variant (``meta-llama/Llama-3.1-405B-Instruct``, ``...-chat-hf``, ``...-Instruct-2507``) resolves,
    offline, to its base entry: from the entry's explicit ``variants`` list, or by the suffix rule
    :data:`VARIANT_SUFFIXES` onto an exact catalog id. ``resolved_name`` then says which config is used.
    """
    q = name.strip().lower()
    variant = _resolve_variant(q)
    key = variant[0] if variant else _name_map().get(q)
    if key is None:
        return None
    entry = dict(_catalog_index()[key], key=key)
    if variant:
        entry["resolved_name"] = f"{name.strip()} (config of {entry['hf_id']}: {variant[1]})"
    return entry


@lru_cache(maxsize=256)
def _load_catalog_config(key: str) -> str:
    entry = _catalog_index()[key]
    return (MODELS_DIR / entry["file"]).read_text()


def read_config(text: str, name: str | None = None) -> tuple[dict, str]:
    """The config of a model named by ``text`` and the name to show: a catalog name (Hub id, alias or
    published variant), a path to a ``config.json`` or to a folder holding one, or a Hub id fetched
    with ``huggingface_hub``; ``name`` overrides the shown name. ``ValueError`` (with the closest catalog
    names) when nothing matches."""
    entry = catalog_entry(text)
    if entry is not None:
        cfg = json.loads(_load_catalog_config(entry["key"]))
        return cfg, name or entry.get("resolved_name") or entry["hf_id"]
    path = Path(os.path.expanduser(text))
    kind = _path_kind(path)
    if kind == "dir":
        path = path / "config.json"
        kind = _path_kind(path)
    if path.suffix == ".json" or kind is not None:
        if kind is None:
            raise ValueError(f"model: no such file {str(path)!r}")
        cfg = read_json_file(path, "model")
        if not isinstance(cfg, dict):
            raise ValueError(f"model: {str(path)!r} does not hold a JSON object")
        return cfg, name or cfg.get("_name_or_path") or path.parent.name or path.stem
    if "/" in text and text.count("/") == 1 and " " not in text:
        return _fetch_hub_config(text), name or text
    close = difflib.get_close_matches(text.lower(), list(_name_map()), n=5, cutoff=0.5)
    hint = f" Closest catalog names: {', '.join(close)}." if close else ""
    raise ValueError(
        f"model: unknown model {text!r}.{hint} Use lr.list_models() for the catalog, or pass a path to "
        "a config.json (or a folder holding one), or a dict of its contents."
    )


def _path_kind(path) -> str | None:
    """ "dir", "file" (anything else that exists) or None (missing, unreachable, or an impossible name)."""
    try:
        return "dir" if stat.S_ISDIR(os.stat(path).st_mode) else "file"
    except (OSError, ValueError):
        return None


def _no_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"{text[:40]} overflows a float")
    return v


def read_text_file(path, what: str = "model", *, max_bytes: int | None = None) -> str:
    """UTF-8 text of a regular file of at most ``max_bytes`` (:data:`MAX_CONFIG_BYTES`); ``ValueError`` naming the path.

    The file is opened without blocking and checked to be a regular file before a byte is read: a FIFO,
    a device (``/dev/zero``) or a directory is refused, never read until memory runs out or forever.
    """
    cap = MAX_CONFIG_BYTES if max_bytes is None else max_bytes
    p = os.fspath(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError) as e:
        raise ValueError(f"{what}: cannot open {p!r} ({getattr(e, 'strerror', None) or e})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{what}: {p!r} is not a regular file (a directory, device or pipe is not read)")
        if st.st_size > cap:
            raise ValueError(f"{what}: {p!r} is {st.st_size:,} bytes; at most {cap:,} are read")
        chunks, size = [], 0
        while size <= cap:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            chunks.append(b)
            size += len(b)
    except OSError as e:
        raise ValueError(f"{what}: cannot read {p!r} ({e.strerror or e})") from None
    finally:
        os.close(fd)
    if size > cap:
        raise ValueError(f"{what}: {p!r} is larger than {cap:,} bytes")
    try:
        return b"".join(chunks).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{what}: {p!r} is not UTF-8 text (invalid byte at offset {e.start})") from None


def read_json_file(path, what: str = "model", *, finite: bool = False) -> Any:
    """JSON from a regular UTF-8 file (see :func:`read_text_file`); ``ValueError`` naming the path.

    ``finite``: only standard JSON numbers (no NaN, Infinity, or literals that overflow a float).
    """
    p = os.fspath(path)
    text = read_text_file(path, what)
    try:
        if finite:
            return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{what}: {p!r} is not valid JSON ({e})") from None
    except RecursionError:
        raise ValueError(f"{what}: {p!r} nests JSON too deeply") from None
    except ValueError as e:  # e.g. an integer literal of more digits than Python converts
        raise ValueError(f"{what}: {p!r} is not valid JSON ({_short(str(e))})") from None


HUB_TIMEOUT_S = 10.0  # a whole Hub lookup (name resolution, connection, download) ends within this


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it (1/true/yes/on)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _fetch_hub_config(repo_id: str) -> dict:
    how = (
        "download its config.json yourself and pass its path (lr.load_model('path/to/config.json')) "
        "or a dict of its contents."
    )
    if _hub_offline():  # honoured before any network probe
        raise ValueError(f"model: {repo_id!r} is not in the catalog and HF_HUB_OFFLINE is set: {how}")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - optional dependency
        raise ValueError(
            f"model: {repo_id!r} is not in the catalog and huggingface_hub is not installed to fetch it: {how}"
        ) from None
    import socket
    import threading

    out: dict = {}

    def fetch():  # in a thread: name resolution has no timeout of its own
        try:
            socket.create_connection(("huggingface.co", 443), timeout=2).close()  # fail fast without a network
            out["path"] = hf_hub_download(repo_id, "config.json")
        except BaseException as e:  # network, gated repo, missing repo, invalid id
            out["error"] = e

    worker = threading.Thread(target=fetch, name="llmroof-hub-lookup", daemon=True)
    worker.start()
    worker.join(HUB_TIMEOUT_S)
    if worker.is_alive() or "path" not in out:
        why = f"no answer within {HUB_TIMEOUT_S:g} s" if worker.is_alive() else type(out.get("error")).__name__
        raise ValueError(
            f"model: {repo_id!r} is not in the catalog and its config.json could not be fetched from the "
            f"Hugging Face Hub ({why}). Without a network, {how}"
        )
    cfg = read_json_file(out["path"], "model")
    if not isinstance(cfg, dict):
        raise ValueError(f"model: the config.json of {repo_id!r} does not hold a JSON object")
    return cfg
