"""validation/measure_gpu.py: a CPU smoke test with a tiny random model (the GPU runs are never needed here)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import llmroof_widgets as lr
from llmroof_widgets import validation as v

pytest.importorskip("torch")
pytest.importorskip("transformers")

SCRIPT = Path(__file__).resolve().parent.parent / "validation" / "measure_gpu.py"


def test_measure_tiny_model_on_cpu(tmp_path):
    spec = importlib.util.spec_from_file_location("measure_gpu", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "smoke.json"
    argv = ["--tiny", "--device", "cpu", "--dtype", "fp32", "--hardware", "xeon-8480plus"]
    recs = mod.main([*argv, "--batch", "2", "--prompt", "16", "--gen", "4", "--repeats", "1", "--out", str(out)])
    assert json.loads(out.read_text())["records"] == recs
    assert [r["metric"] for r in recs] == ["prefill_tokens_per_s", "decode_tokens_per_s_per_sequence"]
    for r in recs:
        assert r["value"] > 0 and r["source"].startswith("measured by validation/measure_gpu.py")
    # the records are in the schema validate() reads: mapped, analyzed and compared
    df = v.validate("roofline", records=recs)
    assert len(df) == 2 and (df.predicted > 0).all()
    kw = v.record_settings(recs[1])
    assert kw["prompt_len"] == 16 and kw["gen_len"] == 5 and kw["batch_size"] == 2
    r = lr.analyze(v.record_model(recs[1]), "xeon-8480plus", **kw)
    assert r.model.num_layers == 2
    with pytest.raises(SystemExit):
        mod.main([*argv, "--batch", "0", "--out", str(out)])
