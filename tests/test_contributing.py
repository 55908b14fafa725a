"""CONTRIBUTING.md stays current: its operator → code → test index lists exactly the operator rows the engine
emits for the catalog models, each pointing at a builder function and test modules that exist; the JS files'
header comments name files that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import llmroof_widgets as lr
from llmroof_widgets.engine.catalog import _catalog_index
from llmroof_widgets.engine.models import load_model

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "llmroof_widgets" / "engine"
HW = "h100-sxm"  # has an interconnect: TP / EP / PP collectives get rows
BASE = dict(batch_size=2, prompt_len=64, gen_len=4)
# without and with parallelism, and the settings that add or rename rows (naive MLA, fused element-wise
# operators, FlashAttention, sparsity with offloading, narrow formats)
SETTINGS = [
    {},
    {"tp": 2},
    {"ep": 2},
    {"pp": 2},
    {"mla": "naive"},
    {"fused": True},
    {"flash_attention": "tiled"},
    {"flash_attention": "ideal"},
    {"sparsity": "2:4", "offload": {"weights": 0.5, "kv_cache": 0.25}},
    {"w_bits": 4, "a_bits": 8, "kv_bits": "fp8_e4m3"},
]
ROW = re.compile(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$")


@pytest.fixture(scope="module")
def emitted() -> dict[str, set[str]]:
    """Operator row name → its kinds, over every catalog model's encode (with an image), prefill and decode
    rows under every setting of SETTINGS the model accepts."""
    out: dict[str, set[str]] = {}
    for entry in _catalog_index().values():
        m = load_model(entry["hf_id"])
        for extra in SETTINGS:
            kw = dict(BASE, **extra, **({"images": 1} if m.vision is not None else {}))
            try:
                r = lr.analyze(m, HW, **kw)
            except ValueError:  # e.g. tp = 2 does not divide the heads, ep > 1 without experts
                continue
            phases = [r.prefill, r.decode] + ([r.encode] if r.encode is not None else [])
            for phase in phases:
                for row in phase.rows:
                    out.setdefault(row.name, set()).add(row.kind)
    return out


@pytest.fixture(scope="module")
def index() -> dict[str, tuple[set[str], list[str], list[str]]]:
    """The index table of CONTRIBUTING.md: name → (kinds, builders "file:function", test modules)."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    section = text.split("## Operator → code → test index", 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in section.splitlines():
        m = ROW.match(line.strip())
        if m:
            name, kinds, built, tests = m.groups()
            assert name not in out, f"{name} is listed twice in the index"
            out[name] = (
                {k.strip() for k in kinds.split(",")},
                re.findall(r"`([\w.]+\.py:[\w.]+)`", built),
                [t.strip() for t in tests.split(",") if t.strip()],
            )
    assert len(out) > 100, "the index table was not found (section '## Operator → code → test index')"
    return out


def test_every_emitted_operator_is_in_the_index(emitted, index):
    missing = sorted(set(emitted) - set(index))
    assert not missing, (
        f"operators the engine emits but CONTRIBUTING.md's index does not list: {missing}; add a row "
        "(name | kind | file:function that builds it | test modules that check it)"
    )


def test_the_index_lists_no_operator_the_engine_no_longer_emits(emitted, index):
    stale = sorted(set(index) - set(emitted))
    assert not stale, f"CONTRIBUTING.md's index lists operators no catalog model emits: {stale}"


def test_the_index_gives_each_operators_kinds(emitted, index):
    wrong = {n: (sorted(index[n][0]), sorted(k)) for n, k in emitted.items() if n in index and index[n][0] != k}
    assert not wrong, f"index kind(s) vs emitted kind(s): {wrong}"


def _qualnames(path: Path) -> set[str]:
    names: set[str] = set()

    def walk(node, prefix):
        for ch in ast.iter_child_nodes(node):
            if isinstance(ch, (ast.FunctionDef, ast.ClassDef)):
                names.add(prefix + ch.name)
                walk(ch, prefix + ch.name + ".")

    walk(ast.parse(path.read_text()), "")
    return names


def test_the_index_points_at_builders_and_tests_that_exist(index):
    defined: dict[str, set[str]] = {}
    for name, (_, builders, tests) in index.items():
        assert builders, f"{name}: no builder given"
        for ref in builders:
            file, func = ref.split(":")
            path = ENGINE / file
            assert path.exists(), f"{name}: {file} is not in llmroof_widgets/engine/"
            if file not in defined:
                defined[file] = _qualnames(path)
            assert func in defined[file], f"{name}: {file} defines no {func}"
            assert name.split("_")[0] in path.read_text(), f"{name}: {file} never names it"
        assert tests, f"{name}: no test module given"
        for t in tests:
            assert (ROOT / "tests" / t).exists(), f"{name}: tests/{t} does not exist"


# -- JS header comments ---------------------------------------------------------------------------------

JS_FILES = sorted(
    [*ROOT.glob("js/*.js"), *ROOT.glob("labextension/src/*.js"), *ROOT.glob("scripts/*.mjs")]
    + [ROOT / "labextension" / "build.mjs"]
)
# a repository path in a comment: llmroof_widgets/…, js/…, tests/…, labextension/…, schema/…, scripts/…
PATH_REF = re.compile(r"\b((?:llmroof_widgets|js|tests|labextension|schema|scripts|examples)/[\w./-]*\w)")
BUILT = ("llmroof_widgets/static/", "llmroof_widgets/labextension/")  # build outputs (gitignored)


def _header(path: Path) -> str:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("//"):
            break
        lines.append(line)
    return "\n".join(lines)


@pytest.mark.parametrize("path", JS_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_js_header_comments_name_files_that_exist(path):
    header = _header(path)
    assert header, f"{path.name} has no header comment saying what it is"
    for ref in PATH_REF.findall(header):
        if ref.startswith(BUILT):
            continue
        # a reference is to the repository root, or relative to the file's own folder (schema/plugin.json)
        candidates = [ROOT / ref, path.parent / ref, path.parent.parent / ref]
        assert any(c.exists() for c in candidates), f"{path.relative_to(ROOT)}: its header names {ref}, not found"
