"""The command line: readable table, --json equal to to_dict(), catalogs, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import llmroof_widgets as lr


def run(*args):
    return subprocess.run([sys.executable, "-m", "llmroof_widgets.cli", *args], capture_output=True, text=True)


def test_analyze_table():
    p = run(
        "analyze",
        "--model",
        "llama-2-7b",
        "--hardware",
        "a100-80gb-sxm",
        "--batch-size",
        "4",
        "--prompt-len",
        "512",
        "--gen-len",
        "64",
    )
    assert p.returncode == 0, p.stderr
    assert "decoder.q_proj" in p.stdout and "TTFT" in p.stdout and "lower bounds" in p.stdout


def test_analyze_json_is_to_dict():
    p = run(
        "analyze",
        "--model",
        "gpt2",
        "--hardware",
        "rtx-4090",
        "--batch-size",
        "2",
        "--prompt-len",
        "100",
        "--gen-len",
        "10",
        "--w-bits",
        "8",
        "--logits",
        "all",
        "--attention",
        "full",
        "--json",
    )
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    want = lr.analyze(
        "gpt2", "rtx-4090", batch_size=2, prompt_len=100, gen_len=10, w_bits=8, logits="all", attention="full"
    ).to_dict()
    assert got == json.loads(json.dumps(want))


def test_catalog_listings():
    p = run("models")
    assert p.returncode == 0 and "meta-llama/Llama-2-7b-hf" in p.stdout
    p = run("hardware")
    assert p.returncode == 0 and "h100-sxm" in p.stdout
    assert len(json.loads(run("hardware", "--json").stdout)) >= 25


def test_bad_input_is_a_clear_error():
    p = run("analyze", "--model", "llama-2-7b", "--hardware", "h100-sxm", "--prompt-len", "0")
    assert p.returncode == 2
    assert "prompt_len" in p.stderr and "Traceback" not in p.stderr
    p = run("analyze", "--model", "no-such-model", "--hardware", "h100-sxm")
    assert p.returncode == 2 and "unknown model" in p.stderr
