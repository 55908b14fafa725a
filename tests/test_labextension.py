"""The JupyterLab extension, without a kernel or a browser: its settings schema, the Python reader of
its settings (``llmroof_widgets.lab_settings``), the built output, the wheel's shared-data and the
install in this environment. Browser tests: ``tests/browser/test_labextension_ui.py``."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import llmroof_widgets as lr
from llmroof_widgets import lab_settings
from llmroof_widgets.lab_settings import DEFAULTS, apply_lab_settings, read_lab_settings, strip_json_comments

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "labextension"
BUILT = REPO / "llmroof_widgets" / "labextension"
SCHEMA = SRC / "schema" / "plugin.json"
NAME = "llmroof-widgets"


# -- the settings schema ------------------------------------------------------------------------------


def test_schema_is_valid_json_schema_with_the_three_settings():
    schema = json.loads(SCHEMA.read_text())
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft7Validator.check_schema(schema)
    props = schema["properties"]
    assert set(props) == {"device", "weightBits", "model"}
    assert schema["additionalProperties"] is False
    for key in props:
        assert props[key]["title"] and props[key]["description"]
    # defaults: the schema, the Python reader and the JS settings module agree
    assert props["device"]["default"] == DEFAULTS["hardware"]
    assert props["weightBits"]["default"] == DEFAULTS["w_bits"]
    assert props["model"]["default"] == DEFAULTS["model"]
    assert sorted(props["weightBits"]["enum"]) == sorted(lab_settings.WEIGHT_BITS)
    js = (SRC / "src" / "settings.js").read_text()
    block = re.search(r"DEFAULTS = Object\.freeze\(\{(.*?)\}\)", js, re.S).group(1)
    assert f"device: '{DEFAULTS['hardware']}'" in block
    assert f"weightBits: {DEFAULTS['w_bits']}" in block
    assert f"model: '{DEFAULTS['model']}'" in block
    # an instance with every setting validates; a wrong weight width does not
    v = jsonschema.Draft7Validator(schema)
    assert not list(v.iter_errors({"device": "a100-80gb-sxm", "weightBits": 4, "model": "llama-2-7b"}))
    assert list(v.iter_errors({"weightBits": 3}))


def test_schema_defaults_are_the_widgets_defaults():
    import llmroof_widgets as lr
    from llmroof_widgets.widgets.state import BITS, State

    traits = State.class_traits()
    assert traits["model"].default_value == DEFAULTS["model"]
    assert traits["hardware"].default_value == DEFAULTS["hardware"]
    assert traits["w_bits"].default_value == DEFAULTS["w_bits"]
    assert set(lab_settings.WEIGHT_BITS) == set(BITS)  # the dashboard's weight-bits dropdown
    assert DEFAULTS["hardware"] in lr.list_hardware()


# -- read_lab_settings ----------------------------------------------------------------------------------


def _write(settings_dir: Path, text: str) -> Path:
    p = settings_dir / NAME / "plugin.jupyterlab-settings"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


@pytest.fixture
def settings_dir(tmp_path, monkeypatch):
    d = tmp_path / "user-settings"
    d.mkdir()
    monkeypatch.setenv("JUPYTERLAB_SETTINGS_DIR", str(d))
    monkeypatch.delenv("LLMROOF_IGNORE_LAB_SETTINGS", raising=False)
    return d


def test_read_lab_settings_defaults_without_a_file(settings_dir):
    assert read_lab_settings() == DEFAULTS
    assert read_lab_settings(only_set=True) == {}
    assert lab_settings.settings_path() == settings_dir / NAME / "plugin.jupyterlab-settings"


def test_read_lab_settings_reads_what_lab_writes(settings_dir):
    # what the Settings Editor's JSON view saves: comments, trailing commas
    _write(
        settings_dir,
        """{
    // LLM Roofline
    // Defaults of llmroof_widgets dashboards
    /* the device, "quoted" */
    "device": "a100-80gb-sxm", // a comment after a value
    "weightBits": 4,
    "model": "http://example.org//not-a-comment/* neither */, }",
}
""",
    )
    assert read_lab_settings() == {
        "hardware": "a100-80gb-sxm",
        "w_bits": 4,
        "model": "http://example.org//not-a-comment/* neither */, }",
    }
    assert read_lab_settings(only_set=True) == read_lab_settings()


def test_read_lab_settings_partial_and_explicit_path(settings_dir, tmp_path):
    _write(settings_dir, '{"weightBits": 8}')
    assert read_lab_settings() == {**DEFAULTS, "w_bits": 8}
    assert read_lab_settings(only_set=True) == {"w_bits": 8}
    other = tmp_path / "other.json"
    other.write_text('{"device": "t4"}')
    assert read_lab_settings(other) == {**DEFAULTS, "hardware": "t4"}


def test_read_lab_settings_never_raises(settings_dir):
    _write(settings_dir, '{"device": "no-such-device", "weightBits": 3, "model": "", "unknown": 1}')
    with pytest.warns(UserWarning) as rec:
        assert read_lab_settings() == DEFAULTS
    text = " ".join(str(w.message) for w in rec)
    assert "no-such-device" in text and "weightBits" in text and "model" in text
    _write(settings_dir, '{"weightBits": true}')
    with pytest.warns(UserWarning):
        assert read_lab_settings() == DEFAULTS
    _write(settings_dir, "[1, 2]")
    with pytest.warns(UserWarning, match="not a JSON object"):
        assert read_lab_settings() == DEFAULTS
    _write(settings_dir, "{ this is not json")
    with pytest.warns(UserWarning):
        assert read_lab_settings() == DEFAULTS
    (settings_dir / NAME / "plugin.jupyterlab-settings").write_bytes(b"\xff\xfe\x00garbage")
    assert read_lab_settings() == DEFAULTS


def test_read_lab_settings_can_be_ignored(settings_dir, monkeypatch):
    _write(settings_dir, '{"device": "t4"}')
    monkeypatch.setenv("LLMROOF_IGNORE_LAB_SETTINGS", "1")
    assert read_lab_settings() == DEFAULTS
    monkeypatch.setenv("LLMROOF_IGNORE_LAB_SETTINGS", "0")
    assert read_lab_settings()["hardware"] == "t4"


def test_settings_dir_follows_jupyter_config_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("JUPYTERLAB_SETTINGS_DIR", raising=False)
    monkeypatch.delenv("LLMROOF_IGNORE_LAB_SETTINGS", raising=False)
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "cfg"))
    assert lab_settings.settings_dir() == tmp_path / "cfg" / "lab" / "user-settings"
    _write(tmp_path / "cfg" / "lab" / "user-settings", '{"model": "llama-2-7b"}')
    assert read_lab_settings()["model"] == "llama-2-7b"


def test_apply_lab_settings_fills_only_what_is_missing(settings_dir):
    assert apply_lab_settings() == {}  # nothing set: the widgets keep their own defaults
    _write(settings_dir, '{"device": "t4", "weightBits": 8, "model": "llama-2-7b"}')
    assert apply_lab_settings() == {"model": "llama-2-7b", "hardware": "t4", "w_bits": 8}
    assert apply_lab_settings("gpt2", None, 16) == {"model": "gpt2", "hardware": "t4", "w_bits": 16}
    assert apply_lab_settings("gpt2", "h100-sxm", 4) == {"model": "gpt2", "hardware": "h100-sxm", "w_bits": 4}


def test_strip_json_comments_keeps_strings():
    text = '{"a": "x // y", "b": "/* z */", "c": [1, 2, ], /* gone */ "d": "\\" // still a string",}'
    assert json.loads(strip_json_comments(text)) == {
        "a": "x // y",
        "b": "/* z */",
        "c": [1, 2],
        "d": '" // still a string',
    }


# -- the dashboard cell the Launcher and the palette insert ------------------------------------------


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_dashboard_cell_is_safe_python_for_any_setting():
    """settings.js writes the settings as Python string literals: a hostile model name stays data."""
    hostile = [
        'x")\nimport os; os.system("echo pwned")\n("',
        "a\\\"b'c",
        "é\u2028\u0000\U0001f600",
        "</script><img src=x onerror=alert(1)>",
    ]
    script = (
        "import(process.argv[1]).then(m => { const out = JSON.parse(process.argv[2]).map(model => "
        "m.dashboardCode({device: 'a100-80gb-sxm', weightBits: 8, model})); "
        "out.push(m.dashboardCode({device: '', weightBits: 3, model: null})); "
        "console.log(JSON.stringify(out)); })"
    )
    r = subprocess.run(
        ["node", "-e", script, (SRC / "src" / "settings.js").as_uri(), json.dumps(hostile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    codes = json.loads(r.stdout)
    for model, code in zip(hostile + [DEFAULTS["model"]], codes):
        tree = ast.parse(code)
        assert [type(n).__name__ for n in tree.body] == ["Import", "Assign", "Expr"]
        call = tree.body[1].value
        assert ast.unparse(call.func) == "lr.Dashboard"
        kw = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        assert kw["model"] == model
        if model == DEFAULTS["model"]:  # the invalid settings fell back to the defaults
            assert kw == {"model": DEFAULTS["model"], "hardware": DEFAULTS["hardware"], "w_bits": DEFAULTS["w_bits"]}
        else:
            assert kw["hardware"] == "a100-80gb-sxm" and kw["w_bits"] == 8


# -- the built extension, the wheel and this environment's install -------------------------------------


@pytest.fixture(scope="module")
def built(labextension_built):
    """The built extension (llmroof_widgets/labextension/, gitignored); rebuilt when its sources changed."""
    return labextension_built


def test_built_extension_has_package_install_and_remote_entry(built):
    assert built["name"] == NAME
    # one version source: the build stamps the Python package's version into the built package.json
    assert built["version"] == lr.__version__
    b = built["jupyterlab"]["_build"]
    assert re.fullmatch(r"static/remoteEntry\.[0-9a-f]+\.js", b["load"])
    assert (BUILT / b["load"]).is_file()
    assert b["extension"] == "./extension" and b["style"] == "./style"
    assert (BUILT / "static" / "style.js").is_file()
    install = json.loads((BUILT / "install.json").read_text())
    assert install == {**install, "packageManager": "python", "packageName": NAME}
    # the schema is shipped as the Settings Editor reads it
    assert json.loads((BUILT / "schemas" / NAME / "plugin.json").read_text()) == json.loads(SCHEMA.read_text())
    # JupyterLab packages are shared with the app (not bundled): the bundle stays small
    size = sum(f.stat().st_size for f in (BUILT / "static").iterdir())
    assert size < 400_000, f"static/ holds {size} bytes: a JupyterLab package got bundled?"


def test_packaging_config():
    tomllib = pytest.importorskip("tomllib")
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert any(r.replace(" ", "").startswith("jupyterlab>=4") for r in cfg["build-system"]["requires"])
    shared = cfg["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
    assert shared["llmroof_widgets/labextension"] == f"share/jupyter/labextensions/{NAME}"
    hook = cfg["tool"]["hatch"]["build"]["hooks"]["jupyter-builder"]
    assert "llmroof_widgets/labextension/package.json" in hook["ensured-targets"]
    assert "llmroof_widgets/labextension/package.json" in hook["skip-if-exists"]
    assert "labextension/build.mjs" in json.loads((REPO / "package.json").read_text())["scripts"]["build"]
    assert "llmroof_widgets/labextension/" in (REPO / ".gitignore").read_text().split()


def test_wheel_ships_the_extension_as_shared_data(built, tmp_path):
    pytest.importorskip("hatchling")
    pytest.importorskip("hatch_jupyter_builder")
    env = dict(os.environ, SKIP_JUPYTER_BUILDER="1")  # already built: pack only
    r = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(whl).namelist()
    prefix = f"llmroof_widgets-{built['version']}.data/data/share/jupyter/labextensions/{NAME}/"
    for rel in (
        "package.json",
        "install.json",
        built["jupyterlab"]["_build"]["load"],
        "static/style.js",
        f"schemas/{NAME}/plugin.json",
    ):
        assert prefix + rel in names
    assert not [n for n in names if n.startswith("llmroof_widgets/labextension/")], "shipped twice"


def test_installed_in_this_environment(built):
    """What `jupyter labextension list` checks, without its slow start: this environment's JupyterLab
    finds the extension, it is the current build and compatible with this JupyterLab."""
    pytest.importorskip("jupyterlab")
    from jupyter_core.paths import jupyter_path
    from jupyterlab_server.config import get_federated_extensions

    exts = get_federated_extensions(jupyter_path("labextensions"))
    assert NAME in exts, f"{NAME} is not installed in {sys.prefix}: run `pip install -e .` (or ./test.sh, which does)"
    ext = exts[NAME]
    assert ext["jupyterlab"]["_build"]["load"] == built["jupyterlab"]["_build"]["load"], (
        f"the installed {NAME} in {ext['ext_path']} is an older build: rerun `pip install -e .` (or "
        "scripts/bootstrap.sh, which links it to llmroof_widgets/labextension)"
    )
    assert json.loads((Path(ext["ext_path"]) / "install.json").read_text())["packageName"] == NAME
    from jupyterlab.commands import _validate_compatibility, get_app_info

    core = get_app_info()["core_data"]
    assert _validate_compatibility(NAME, ext["dependencies"], core) == []
