"""The example notebooks: committed without outputs, and each runs top to bottom with nbclient."""

from pathlib import Path

import nbformat
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOKS = ["quickstart", "course_assignment", "choose_hardware", "validation", "serving"]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def read(name):
    return nbformat.read(EXAMPLES / f"{name}.ipynb", as_version=4)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs(name):
    nb = read(name)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    for c in code:
        assert c.outputs == [] and c.execution_count is None, f"{name}: strip the outputs of {c.source[:60]!r}"


_executed: dict = {}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Execute a notebook once (in a temporary folder) and return it with its outputs."""
    from nbclient import NotebookClient

    def _run(name):
        if name not in _executed:
            nb = read(name)
            cwd = tmp_path_factory.mktemp(name)
            NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
            _executed[name] = (nb, cwd)
        return _executed[name]

    return _run


def texts(cell) -> str:
    out = []
    for o in cell.get("outputs", []):
        if o.output_type == "stream":
            out.append(o.text)
        elif o.output_type in ("execute_result", "display_data"):
            out.extend(str(v) for k, v in o.data.items() if k.startswith("text/"))
        elif o.output_type == "error":  # pragma: no cover - execute() raises first
            out.append("\n".join(o.traceback))
    return "\n".join(out)


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_quickstart(run):
    nb, cwd = run("quickstart")
    cells = code_cells(nb)
    # the dashboard is the first thing the notebook shows (browser tests rely on it)
    first_with_output = next(c for c in cells if c.outputs)
    assert "lr.Dashboard(" in first_with_output.source
    assert cells.index(first_with_output) == 1 and cells[0].outputs == []
    assert WIDGET_VIEW in first_with_output.outputs[0].data
    everything = "\n".join(texts(c) for c in cells)
    assert "ridge point" in everything and "decode" in everything
    assert "q_proj in decode :" in everything and "-> memory-bound" in everything
    assert "KV cache per token" in everything and "largest batch that fits" in everything
    assert "TPOT (ms)" in everything  # the device table
    html = cwd / "llama-3.1-8b-on-h100.html"
    assert html.is_file() and html.stat().st_size > 1e6


def test_course_assignment(run):
    nb, _ = run("course_assignment")
    cells = code_cells(nb)
    assert ".pin()" in cells[0].source and "[pinned]" in texts(cells[0])
    worked = next(c for c in cells if c.source.startswith("answer = 2 * 512"))
    assert "✓" in texts(worked) and "correct" in texts(worked)
    exercises = [c for c in cells if c.source.startswith("answer = None")]
    assert len(exercises) >= 9
    for c in exercises:
        assert "no answer yet" in texts(c), c.source
        assert "lr.check(answer" in c.source
    quantities = " ".join(c.source for c in exercises)
    for needle in (
        'op="q_proj", phase="prefill"',
        'op="q_proj", phase="decode"',
        'op="attn_score", phase="decode"',
        'op="lm_head"',
        '"kv_cache_bytes"',
        '"arithmetic_intensity"',
        '"bytes"',
        '"flops"',
    ):
        assert needle in quantities, needle
    hint = next(c for c in cells if "show_formula=True" in c.source)
    assert "formula" in texts(hint)


def test_choose_hardware(run):
    nb, _ = run("choose_hardware")
    cells = code_cells(nb)
    assert "lr.Hardware(" in "".join(c.source for c in cells)
    everything = "\n".join(texts(c) for c in cells)
    assert "<table" in everything  # pandas DataFrames
    for col in ("TTFT (ms)", "TPOT (ms)", "tokens/s (batch)"):
        assert col in everything
    assert "does not fit" in everything and "My accelerator (hypothetical)" in everything


def test_validation_notebook(run):
    nb, _ = run("validation")
    everything = "\n".join(texts(c) for c in code_cells(nb))
    assert "calibrated, out of sample" in everything and "in sample (optimistic)" in everything
    assert "lower bound in 100% of records" in everything
    assert "calibrated estimate" in everything and "measured" in everything  # the trust labels
    assert any(WIDGET_VIEW in o.get("data", {}) for c in code_cells(nb) for o in c.outputs)  # the parity plots


def test_serving(run):
    nb, _ = run("serving")
    cells = code_cells(nb)
    assert any(WIDGET_VIEW in o.get("data", {}) for c in cells for o in c.outputs)  # the ServingView
    everything = "\n".join(texts(c) for c in cells)
    assert "max stable rate of one TP-4 replica" in everything
    assert "Answer:" in everything and "H100s" in everything and "per million generated tokens" in everything
    assert "meets_slo" in everything  # the plan table
