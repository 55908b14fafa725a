"""Measure prefill and decode speed of a model with random weights, and write records in the schema of
``llmroof_widgets/data/measurements.json`` (so that ``lr.validate(records=...)`` and the calibration fit
can use them).

Runs with ``transformers`` + ``torch`` (eager PyTorch, the "generic" framework family) on any device, and
with vLLM (``--engine vllm``, dummy weights) where vLLM installs. Weights are random: speed does not depend
on their values. Nothing in the tests needs a GPU; ``--tiny`` builds a 2-layer model for a CPU smoke test.

Examples::

    python validation/measure_gpu.py --model meta-llama/Llama-3.1-8B --hardware h200-sxm \\
        --batch 1,8,32 --prompt 128,1024 --gen 64 --out measured-h200.json
    python validation/measure_gpu.py --tiny --device cpu --hardware xeon-8480plus --out /tmp/smoke.json

Each measurement: the prefill of ``batch × prompt`` tokens (``prefill_tokens_per_s``) and ``gen`` decode
steps after it (``decode_tokens_per_s_per_sequence``, KV cache growing from ``prompt``), the median of
``--repeats`` timed runs after one warm-up, with the device synchronized around every timed region.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}
TINY = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 256,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-5,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "rope_theta": 10000.0,
}


def _ints(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected whole numbers ≥ 1, got {text!r}")
    return vals


def model_config(name: str | None, tiny: bool) -> tuple[str, dict]:
    """(model name, config.json dict): the tiny test model, a catalog model, or a config.json path."""
    if tiny:
        return "tiny-llama-2l-64h (random)", dict(TINY)
    sys.path.insert(0, str(ROOT))
    from llmroof_widgets.engine import models

    path = Path(name)
    if path.exists():
        return name, json.loads((path / "config.json" if path.is_dir() else path).read_text())
    entry = models.catalog_entry(name)
    if entry is None:
        raise SystemExit(f"--model {name!r}: not a catalog model (lr.list_models()) nor a config.json path")
    return entry["hf_id"], json.loads(models._load_catalog_config(entry["key"]))


def _sync(torch, device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn, torch, device: str, repeats: int) -> float:
    fn()  # warm-up (kernel selection, allocator)
    ts = []
    for _ in range(repeats):
        _sync(torch, device)
        t0 = time.perf_counter()
        fn()
        _sync(torch, device)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def measure_transformers(cfg: dict, device: str, dtype: str, batch: int, prompt: int, gen: int, repeats: int):
    """(prefill seconds, decode seconds for ``gen`` steps) with random weights."""
    import torch
    import transformers

    conf = transformers.AutoConfig.for_model(**{k: v for k, v in cfg.items() if k not in ("architectures",)})
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.AutoModelForCausalLM.from_config(conf, torch_dtype=getattr(torch, DTYPES[dtype]))
    model.eval()
    ids = torch.randint(0, conf.vocab_size, (batch, prompt), device=device)

    @torch.inference_mode()
    def prefill():
        return model(input_ids=ids, use_cache=True, logits_to_keep=1)

    @torch.inference_mode()
    def decode():
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        past, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
        _sync(torch, device)
        t0 = time.perf_counter()
        for _ in range(gen):
            out = model(input_ids=tok, past_key_values=past, use_cache=True)
            past, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
        _sync(torch, device)
        return time.perf_counter() - t0

    t_pre = _timed(prefill, torch, device, repeats)
    decode()  # warm-up
    t_dec = statistics.median(decode() for _ in range(repeats))
    return t_pre, t_dec


def measure_vllm(name: str, dtype: str, batch: int, prompt: int, gen: int, repeats: int):  # pragma: no cover
    """(end-to-end seconds of one static batch) with vLLM and dummy weights (needs a GPU and vLLM)."""
    from vllm import LLM, SamplingParams

    llm = LLM(model=name, load_format="dummy", dtype=DTYPES[dtype], enforce_eager=False)
    prompts = [{"prompt_token_ids": [1 + (i * 7 + j) % 1000 for j in range(prompt)]} for i in range(batch)]
    sp = SamplingParams(max_tokens=gen, ignore_eos=True, temperature=0.0)
    llm.generate(prompts, sp, use_tqdm=False)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        llm.generate(prompts, sp, use_tqdm=False)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(0)
    return platform.processor() or platform.machine()


def records(args) -> list[dict]:
    name, cfg = model_config(args.model, args.tiny)
    today = datetime.date.today().isoformat()
    dev_name = _device_name(args.device)
    import torch

    if args.engine == "vllm":  # pragma: no cover - GPU only
        import vllm

        fw, fw_version, family = f"vLLM {vllm.__version__} (LLM.generate, dummy weights)", vllm.__version__, "vLLM"
    else:
        import transformers

        fw = f"transformers {transformers.__version__} / torch {torch.__version__} (eager, random weights)"
        fw_version, family = f"transformers {transformers.__version__}, torch {torch.__version__}", "generic"
    base = {
        "model": name,
        "hardware": args.hardware,
        "num_devices": 1,
        "framework": fw,
        "framework_family": family,
        "framework_version": fw_version,
        "backend": "cuda" if args.device.startswith("cuda") else args.device,
        "precision": f"{args.dtype} weights / {args.dtype} activations / {args.dtype} kv",
        "weights": args.dtype,
        "activations": args.dtype,
        "kv_cache": args.dtype,
        "source": f"measured by validation/measure_gpu.py on {dev_name} ({today})",
        "verification": "this script's own measurement; median of the timed runs after a warm-up",
    }
    if args.tiny or Path(args.model).exists():
        base["model_config"] = cfg  # not a catalog model: the record carries its config.json
        base["engine_model"] = None
    else:
        base["engine_model"] = name
    out = []
    for B in args.batch:
        for P in args.prompt:
            tag = f"{name.split('/')[-1].split(' ')[0]}-{args.hardware}-{args.engine}-{args.dtype}-b{B}-p{P}"
            batching = "single-stream" if B == 1 else "static-batch"
            if args.engine == "vllm":  # pragma: no cover - GPU only
                t = measure_vllm(name, args.dtype, B, P, args.gen, args.repeats)
                out.append(
                    {
                        "id": f"{tag}-g{args.gen}-e2e",
                        **base,
                        "batching": batching,
                        "batch_size": B,
                        "prompt_len": P,
                        "gen_len": args.gen,
                        "metric": "e2e_s",
                        "value": t,
                        "unit": "s",
                        "notes": "one static batch through LLM.generate (prefill + gen_len decode steps)",
                    }
                )
                continue
            t_pre, t_dec = measure_transformers(cfg, args.device, args.dtype, B, P, args.gen, args.repeats)
            common = {**base, "batching": batching, "batch_size": B, "prompt_len": P}
            out.append(
                {
                    "id": f"{tag}-prefill",
                    **common,
                    "gen_len": 0,
                    "metric": "prefill_tokens_per_s",
                    "value": B * P / t_pre,
                    "unit": "tokens/s",
                    "notes": f"one forward pass over {B}×{P} prompt tokens (logits of the last position)",
                }
            )
            out.append(
                {
                    "id": f"{tag}-decode{args.gen}",
                    **common,
                    "decode_context": "after-prompt",
                    "gen_len": args.gen,
                    "metric": "decode_tokens_per_s_per_sequence",
                    "value": args.gen / t_dec,
                    "unit": "tokens/s",
                    "notes": f"{args.gen} one-token steps after the {P}-token prefill (KV cache {P}→{P + args.gen})",
                }
            )
    return out


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="meta-llama/Llama-3.1-8B", help="catalog model or config.json path")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer random model (CPU smoke test)")
    ap.add_argument("--hardware", required=True, help="catalog device id the records are for (lr.list_hardware())")
    ap.add_argument("--device", default="cuda", help="torch device: cuda, cuda:0, cpu")
    ap.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    ap.add_argument("--engine", default="transformers", choices=("transformers", "vllm"))
    ap.add_argument("--batch", type=_ints, default=[1, 8, 32])
    ap.add_argument("--prompt", type=_ints, default=[128, 1024])
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write ({'records': [...]})")
    args = ap.parse_args(argv)
    recs = records(args)
    args.out.write_text(json.dumps({"schema": 2, "records": recs}, indent=1) + "\n")
    for r in recs:
        print(f"{r['id']}: {r['metric']} = {r['value']:.4g} {r['unit']}")
    return recs


if __name__ == "__main__":
    main()
