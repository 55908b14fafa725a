"""The command line: readable table, --json equal to to_dict(), catalogs, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

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


# -- every analyze() knob has a flag that takes the same values ----------------------------------------
def main_out(capsys, *args):
    from llmroof_widgets import cli

    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_every_analyze_argument_has_a_flag():
    import inspect

    from llmroof_widgets import cli

    names = [p for p in inspect.signature(lr.analyze).parameters if p not in ("model", "hardware")]
    flags = {a.dest for a in cli.parser()._subparsers._group_actions[0].choices["analyze"]._actions}
    assert [n for n in names if n not in flags] == []
    args = cli.parser().parse_args(["analyze", "--model", "gpt2", "--hardware", "h100-sxm"])
    # the defaults of the flags are analyze()'s defaults (None where analyze takes None for "off")
    kw = cli.analyze_kwargs(args)
    assert set(kw) == set(names)
    for n in names:
        default = inspect.signature(lr.analyze).parameters[n].default
        assert kw[n] == default or (kw[n] is None and default in (None, {}, "roofline")), n


@pytest.mark.parametrize(
    "flags, kwargs",
    [
        (["--w-bits", "fp8"], dict(w_bits="fp8")),
        (
            ["--w-bits", "int4", "--group-size", "128", "--kv-bits", "fp8_e5m2"],
            dict(w_bits="int4", group_size=128, kv_bits="fp8_e5m2"),
        ),
        (["--w-bits", "q4_k", "--a-bits", "bf16"], dict(w_bits="q4_k", a_bits="bf16")),
        (
            ["--flash-attention", "tiled", "--fused", "--kv-keep-ratio", "0.5"],
            dict(flash_attention="tiled", fused=True, kv_keep_ratio=0.5),
        ),
        (["--kv-budget", "512", "--early-exit-fraction", "0.75"], dict(kv_budget=512, early_exit_fraction=0.75)),
        (["--sparsity", "2:4"], dict(sparsity="2:4")),
        (["--sparsity", "0.5"], dict(sparsity=0.5)),
        (["--offload", "weights=0.5,kv_cache=0.25"], dict(offload={"weights": 0.5, "kv_cache": 0.25})),
        (["--tp", "2", "--pp", "2"], dict(tp=2, pp=2)),
        (["--efficiency", "calibrated"], dict(efficiency="calibrated")),
        (["--efficiency", "compute=0.7,memory=0.85"], dict(efficiency={"compute": 0.7, "memory": 0.85})),
        (
            ["--speculative", "mtp", "--gamma", "3", "--acceptance", "0.6"],
            dict(speculative=lr.Speculative("mtp", 3, 0.6)),
        ),
    ],
)
def test_technique_flags_equal_analyze(capsys, flags, kwargs):
    base = dict(batch_size=2, prompt_len=128, gen_len=8)
    code, out, err = main_out(
        capsys, "analyze", "--model", "llama-2-7b", "--hardware", "h100-sxm",
        "--batch-size", "2", "--prompt-len", "128", "--gen-len", "8", *flags, "--json",
    )  # fmt: skip
    assert code == 0, err
    want = lr.analyze("llama-2-7b", "h100-sxm", **base, **kwargs).to_dict()
    assert json.loads(out) == json.loads(json.dumps(want))
    code, text, err = main_out(
        capsys,
        "analyze",
        "--model",
        "llama-2-7b",
        "--hardware",
        "h100-sxm",
        "--prompt-len",
        "128",
        "--gen-len",
        "8",
        *flags,
    )
    assert code == 0, err
    assert ("lower bounds" in text) == (kwargs.get("efficiency") != "calibrated")
    assert ("calibrated estimates" in text) == (kwargs.get("efficiency") == "calibrated")


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--w-bits", "3"], ["w_bits", "fp8_e4m3"]),
        (["--kv-bits", "fp9"], ["kv_bits"]),
        (["--flash-attention", "on"], ["--flash-attention", "ideal"]),
        (["--offload", "weights"], ["--offload", "key=value"]),
        (["--offload", "host=0.5"], ["offload", "host"]),
        (["--efficiency", "fast"], ["--efficiency", "key=value"]),
        (["--efficiency", "compute=2"], ["efficiency", "compute"]),
        (["--sparsity", "1.5"], ["sparsity"]),
        (["--gamma", "3"], ["--speculative"]),
        (["--tp", "3"], ["tp"]),
    ],
)
def test_bad_technique_values_are_clear_errors(flags, words):
    p = run("analyze", "--model", "llama-2-7b", "--hardware", "h100-sxm", *flags)
    assert p.returncode == 2, p.stdout
    assert "Traceback" not in p.stderr
    for w in words:
        assert w in p.stderr, (w, p.stderr)


def test_report_says_whole_batch_and_per_device_throughput(capsys):
    code, text, _ = main_out(
        capsys, "analyze", "--model", "llama-2-7b", "--hardware", "h100-sxm", "--batch-size", "8", "--tp", "2"
    )
    assert code == 0
    assert "tok/s for the whole batch" in text and "per device)" in text and "2 devices" in text
    assert "tok/s per device   " not in text


def _columns_aligned(text: str) -> None:
    """Every cell of every row starts where its header starts (the dashes row gives the columns)."""
    lines = text.splitlines()
    header, dashes, rows = lines[0], lines[1], lines[2:]
    starts = [i for i, ch in enumerate(dashes) if ch == "-" and (i == 0 or dashes[i - 1] == " ")]
    ends = [i + 1 for i, ch in enumerate(dashes) if ch == "-" and (i + 1 == len(dashes) or dashes[i + 1] == " ")]
    assert len(starts) == len(header.split("  ")) or len(starts) >= 3
    for line in [header, *rows]:
        for s, e in zip(starts, ends):
            cell = line[s:e]
            assert cell.strip(), (line, s, e)  # a value inside each column's span
            assert s == 0 or line[s - 1] == " ", (line, s)
            assert e >= len(line) or line[e] == " ", (line, e)


def test_catalog_tables_are_aligned(capsys):
    from llmroof_widgets import cli

    hw = cli.hardware_table()
    _columns_aligned(hw)
    lines = hw.splitlines()
    # text columns left-aligned, numbers right-aligned: the header starts / ends where its column does
    assert lines[0].startswith("id  ") and lines[2].startswith(lr.hardware_catalog()[0]["id"])
    assert lines[0].rstrip().endswith("fp16/bf16 peak") and all(ln.endswith("TFLOP/s") for ln in lines[2:])
    models = cli.models_table()
    ml = models.splitlines()
    col = [i for i in range(1, len(ml[1])) if ml[1][i] == "-" and ml[1][i - 1] == " "]
    assert [ml[0].index("aliases"), ml[0].index("published params")] == col
    assert all(ln.split("  ")[0].strip() in lr.list_models() for ln in ml[2:])
