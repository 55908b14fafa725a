"""Command line: ``llmroof analyze | models | hardware``."""

from __future__ import annotations

import argparse
import json
import sys

from .engine import analyze, hardware_catalog, list_models, load_hardware
from .engine.models import catalog_entry
from .format import fmt_bytes, fmt_flops, fmt_time


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _phase_table(phase: dict) -> str:
    rows = []
    for o in phase["ops"]:
        rows.append(
            [
                f"{o['layer_type']}.{o['name']}",
                o["count"],
                fmt_flops(o["flops"]),
                fmt_bytes(o["bytes"]),
                f"{o['arithmetic_intensity']:.3g}",
                fmt_time(o["time_s"]),
                f"{o['share'] * 100:.1f}%",
                o["bound"],
            ]
        )
    rows.append(
        [
            "total",
            "",
            fmt_flops(phase["flops"]),
            fmt_bytes(phase["bytes"]),
            f"{phase['arithmetic_intensity']:.3g}",
            fmt_time(phase["time_s"]),
            "100%",
            phase["bound"],
        ]
    )
    return _table(rows, ["operator", "count", "FLOPs", "bytes", "FLOP/B", "time", "share", "bound"])


def report(d: dict) -> str:
    s, g, mem = d["settings"], d["generation"], d["memory"]
    out = [
        f"{d['model']['name']} on {d['hardware']['name']}: batch {s['batch_size']}, prompt {s['prompt_len']}, "
        f"generate {s['gen_len']}, W{s['w_bits']}A{s['a_bits']}KV{s['kv_bits']}",
        f"params {d['model']['params_total'] / 1e9:.3f} B total, {d['model']['params_active'] / 1e9:.3f} B active per token",
        "",
        f"prefill ({s['batch_size']}×{s['prompt_len']} tokens, logits={s['logits']}, attention={s['attention']})",
        _phase_table(d["prefill"]),
        "",
        f"decode (first step: {s['prompt_len']} cached tokens + 1 new)",
        _phase_table(d["decode"]),
        "",
        f"TTFT {fmt_time(g['ttft_s'])}   TPOT {fmt_time(g['tpot_s'])}   end-to-end {fmt_time(g['e2e_s'])}   "
        f"{g['tokens_per_s']:.4g} tok/s per sequence   {g['throughput_tokens_per_s']:.4g} tok/s per device",
        f"memory: weights {fmt_bytes(mem['weights_bytes'])} + KV cache {fmt_bytes(mem['kv_cache_bytes'])} + "
        f"activations {fmt_bytes(mem['activations_bytes'])} = {fmt_bytes(mem['total_bytes'])} of "
        f"{fmt_bytes(mem['capacity_bytes'])} — {'fits' if mem['fits'] else 'DOES NOT FIT'}; "
        f"max batch {mem['max_batch_size']}",
        "Times are roofline lower bounds (each operator at peak compute or peak bandwidth). TTFT = prefill time; "
        "TPOT = mean time per output token after the first.",
    ]
    return "\n".join(out)


def _one_line(text: str) -> str:
    """A message on one line, cut short (an error may quote hostile input)."""
    text = " ".join(text.split())
    return text if len(text) <= 500 else text[:497] + "..."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="llmroof", description="Roofline analysis of LLM inference")
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("analyze", help="analyze one model on one device")
    a.add_argument("--model", required=True, help="catalog name, hf id, or path to config.json")
    a.add_argument("--hardware", required=True, help="device id (llmroof hardware)")
    a.add_argument("--batch-size", type=int, default=1)
    a.add_argument("--prompt-len", type=int, default=1024)
    a.add_argument("--gen-len", type=int, default=256)
    a.add_argument("--w-bits", type=int, default=16)
    a.add_argument("--a-bits", type=int, default=16)
    a.add_argument("--kv-bits", type=int, default=16)
    a.add_argument("--logits", choices=["last", "all"], default="last")
    a.add_argument("--attention", choices=["causal", "full"], default="causal")
    a.add_argument("--mla", choices=["absorbed", "naive"], default="absorbed")
    a.add_argument("--json", action="store_true", help="print to_dict() as JSON")
    m = sub.add_parser("models", help="list the model catalog")
    m.add_argument("--json", action="store_true")
    h = sub.add_parser("hardware", help="list the device catalog")
    h.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "analyze":
            r = analyze(
                args.model,
                args.hardware,
                batch_size=args.batch_size,
                prompt_len=args.prompt_len,
                gen_len=args.gen_len,
                w_bits=args.w_bits,
                a_bits=args.a_bits,
                kv_bits=args.kv_bits,
                logits=args.logits,
                attention=args.attention,
                mla=args.mla,
            )
            d = r.to_dict()
            print(json.dumps(d) if args.json else report(d))
        elif args.cmd == "models":
            names = list_models()
            if args.json:
                print(json.dumps([catalog_entry(n) for n in names]))
            else:
                rows = [
                    [n, ", ".join(catalog_entry(n).get("aliases", [])), catalog_entry(n).get("published_params") or ""]
                    for n in names
                ]
                print(_table(rows, ["model", "aliases", "published params"]))
        else:
            cat = hardware_catalog()
            if args.json:
                print(json.dumps(cat))
            else:
                rows = []
                for d in cat:
                    hw = load_hardware(d["id"])
                    rows.append(
                        [
                            d["id"],
                            hw.name,
                            fmt_bytes(hw.memory_bytes),
                            f"{hw.memory_bandwidth / 1e9:.4g} GB/s",
                            f"{hw.matrix_peak('fp16')[1] / 1e12:.4g} TFLOP/s",
                        ]
                    )
                print(_table(rows, ["id", "name", "memory", "bandwidth", "fp16/bf16 peak"]))
    except ValueError as e:
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except (OverflowError, RecursionError, OSError, KeyError, MemoryError, TypeError) as e:  # never a traceback
        print(f"error: {type(e).__name__}: {_one_line(str(e))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
