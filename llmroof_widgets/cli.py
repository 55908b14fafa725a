"""Command line: ``llmroof analyze | models | hardware | app``.

``analyze`` has one flag per :func:`llmroof_widgets.analyze` argument, taking the same values
(``--w-bits 8`` or ``--w-bits fp8_e4m3``; ``--sparsity 2:4`` or ``--sparsity 0.5``; ``--offload
weights=0.5,kv_cache=0.25``; ``--efficiency calibrated`` or ``--efficiency compute=0.7,memory=0.85``).
The engine validates every value; a bad one ends with its ``ValueError`` message and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from .engine import Speculative, analyze, hardware_catalog, list_models, load_hardware
from .engine.catalog import catalog_entry
from .engine.options import FLASH
from .engine.precision import ALLOWED_BITS, FORMATS
from .format import fmt_bytes, fmt_flops, fmt_time


def _table(rows: list[list], header: list[str], numeric: set[int] = frozenset()) -> str:
    """A plain-text table: columns in ``numeric`` right-aligned (header too), the others left-aligned."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def line(r):
        cells = [str(x).rjust(w) if i in numeric else str(x).ljust(w) for i, (x, w) in enumerate(zip(r, widths))]
        return "  ".join(cells).rstrip()

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
    return _table(
        rows, ["operator", "count", "FLOPs", "bytes", "FLOP/B", "time", "share", "bound"], numeric={1, 2, 3, 4, 5, 6}
    )


def _time_words(efficiency) -> str:
    """What the times are: lower bounds only in roofline mode (settings["efficiency"])."""
    if efficiency == "calibrated":
        return (
            "Times are calibrated estimates of real kernels (achievable bandwidth, GEMM efficiency, launch "
            "overheads), not bounds."
        )
    if isinstance(efficiency, dict) and any(v != 1.0 for v in efficiency.values()):
        shares = ", ".join(f"{k} {v:g}" for k, v in efficiency.items())
        return f"Times are roofline times at the given shares of the peaks ({shares}): lower bounds for kernels reaching them."
    return "Times are roofline lower bounds (each operator at peak compute or peak bandwidth)."


def report(d: dict) -> str:
    s, g, mem = d["settings"], d["generation"], d["memory"]
    devices = int(g.get("devices", 1) or 1)
    per_device = g.get("throughput_per_device_tokens_per_s", g["throughput_tokens_per_s"] / devices)
    out = [
        f"{d['model']['name']} on {d['hardware']['name']}: batch {s['batch_size']}, prompt {s['prompt_len']}, "
        f"generate {s['gen_len']}, W{s['w_bits']}A{s['a_bits']}KV{s['kv_bits']}"
        + (f", {devices} devices (tp {s['tp']} × pp {s['pp']} × ep {s['ep']})" if devices > 1 else ""),
        f"params {d['model']['params_total'] / 1e9:.3f} B total, {d['model']['params_active'] / 1e9:.3f} B active per token",
        "",
        f"prefill ({s['batch_size']}×{s['prompt_len']} tokens, logits={s['logits']}, attention={s['attention']})",
        _phase_table(d["prefill"]),
        "",
        f"decode (first step: {s['prompt_len']} cached tokens + 1 new)",
        _phase_table(d["decode"]),
        "",
        f"TTFT {fmt_time(g['ttft_s'])}   TPOT {fmt_time(g['tpot_s'])}   end-to-end {fmt_time(g['e2e_s'])}   "
        f"{g['tokens_per_s']:.4g} tok/s per sequence   {g['throughput_tokens_per_s']:.4g} tok/s for the whole batch"
        + (f" ({per_device:.4g} per device)" if devices > 1 else ""),
        f"memory{' per device' if devices > 1 else ''}: weights {fmt_bytes(mem['weights_bytes'])} + "
        f"KV cache {fmt_bytes(mem['kv_cache_bytes'])} + activations {fmt_bytes(mem['activations_bytes'])}"
        + (f" + draft {fmt_bytes(mem['draft_bytes'])}" if mem.get("draft_bytes") else "")
        + f" = {fmt_bytes(mem['total_bytes'])} of {fmt_bytes(mem['capacity_bytes'])} — "
        f"{'fits' if mem['fits'] else 'DOES NOT FIT'}; max batch {mem['max_batch_size']}",
        _time_words(s.get("efficiency"))
        + " TTFT = prefill time (+ encode, draft prefill, request overhead); TPOT = mean time per output token after the first.",
    ]
    return "\n".join(out)


# -- argument values: the same values analyze() takes, as text ----------------------------------------
def _number_or_text(text: str):
    """'8' -> 8, '0.5' -> 0.5, anything else stays text (the engine says what is allowed)."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def _bits(text: str):
    """A bit width ('8') or a format name ('fp8_e4m3'), as analyze's w_bits / a_bits / kv_bits."""
    return _number_or_text(text.strip())


def _sparsity(text: str):
    """'2:4', a share of zero weights ('0.5'), or 'none'."""
    t = text.strip().lower()
    return None if t in ("none", "off", "0") else _number_or_text(t)


def _shares(flag: str, keys: tuple[str, ...]):
    """'k=v,k=v' -> {k: float(v)}; the engine checks the keys and the values."""

    def parse(text: str) -> dict:
        out = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            k, sep, v = part.partition("=")
            if not sep:
                raise argparse.ArgumentTypeError(f"{flag} takes key=value pairs ({', '.join(keys)}), got {part!r}")
            try:
                out[k.strip()] = float(v)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{flag} {k.strip()}: {v!r} is not a number") from None
        return out

    return parse


def _efficiency(text: str):
    t = text.strip()
    return t if t in ("roofline", "calibrated") else _shares("--efficiency", ("compute", "memory", "communication"))(t)


def _add_analyze_flags(a: argparse.ArgumentParser) -> None:
    fmt_help = f"bits ({', '.join(map(str, ALLOWED_BITS))}) or a format name ({', '.join(FORMATS)})"
    a.add_argument("--model", required=True, help="catalog name, Hugging Face id, or path to a config.json")
    a.add_argument("--hardware", required=True, help="device id (see `llmroof hardware`)")
    a.add_argument("--batch-size", type=int, default=1, help="sequences processed together (default 1)")
    a.add_argument("--prompt-len", type=int, default=1024, help="prompt tokens per sequence (default 1024)")
    a.add_argument("--gen-len", type=int, default=256, help="tokens generated per sequence (default 256)")
    a.add_argument("--w-bits", type=_bits, default=16, help=f"weights: {fmt_help}")
    a.add_argument("--a-bits", type=_bits, default=16, help="activations: bits or a format name")
    a.add_argument("--kv-bits", type=_bits, default=16, help="KV cache: bits or a format name")
    a.add_argument("--group-size", type=int, default=None, help="group-wise quantization: weights per scale")
    a.add_argument("--logits", choices=["last", "all"], default="last")
    a.add_argument("--attention", choices=["causal", "full"], default="causal")
    a.add_argument("--mla", choices=["absorbed", "naive"], default="absorbed")
    t = a.add_argument_group("techniques (each at its default gives the plain analysis)")
    t.add_argument("--flash-attention", choices=list(FLASH), default="off")
    t.add_argument("--fused", action="store_true", help="element-wise operators fused into their neighbours")
    t.add_argument("--kv-keep-ratio", type=float, default=1.0, help="KV eviction: share of tokens kept, (0, 1]")
    t.add_argument("--kv-budget", type=int, default=None, help="KV eviction: most tokens kept")
    t.add_argument(
        "--speculative",
        metavar="DRAFT",
        default=None,
        help="speculative decoding with this draft model (a catalog name) or 'mtp' heads",
    )
    t.add_argument("--gamma", type=int, default=None, help="speculative: tokens drafted per round (default 4)")
    t.add_argument("--acceptance", type=float, default=None, help="speculative: acceptance rate α (default 0.7)")
    t.add_argument("--early-exit-fraction", type=float, default=1.0, help="mean share of layers a decode token runs")
    t.add_argument("--sparsity", type=_sparsity, default=None, help="'2:4' or the share of zero weights in [0, 1)")
    t.add_argument(
        "--offload",
        type=_shares("--offload", ("weights", "kv_cache", "experts")),
        default=None,
        metavar="K=F,...",
        help="shares held in host memory, e.g. weights=0.5,kv_cache=0.25,experts=1",
    )
    t.add_argument("--tp", type=int, default=1, help="tensor-parallel degree")
    t.add_argument("--pp", type=int, default=1, help="pipeline-parallel degree")
    t.add_argument("--ep", type=int, default=1, help="expert-parallel degree")
    t.add_argument(
        "--efficiency",
        type=_efficiency,
        default=None,
        metavar="MODE",
        help="'roofline' (default), 'calibrated', or shares of the peaks: compute=0.7,memory=0.85,communication=0.8",
    )
    t.add_argument(
        "--framework",
        default="generic",
        help="calibrated mode: the serving framework whose kernels are modelled "
        "(generic, llama.cpp, MLX, vLLM, SGLang, TensorRT-LLM)",
    )
    v = a.add_argument_group("vision-language models")
    v.add_argument("--images", type=int, default=0, help="images per sequence")
    v.add_argument("--image-size", default=None, help="HxW pixels of each image, e.g. 448x448")
    a.add_argument("--json", action="store_true", help="print to_dict() as JSON")


def _one_line(text: str) -> str:
    """A message on one line, cut short (an error may quote hostile input)."""
    text = " ".join(text.split())
    return text if len(text) <= 500 else text[:497] + "..."


def _image_args(args) -> dict:
    """--images / --image-size as analyze() arguments (0 images and no size: a text-only analysis)."""
    out: dict = {"images": args.images, "image_size": None}
    if args.image_size:
        try:
            h, w = (int(x) for x in args.image_size.lower().split("x"))
        except ValueError:
            raise ValueError(f"--image-size must be HxW in pixels, e.g. 448x448, got {args.image_size!r}") from None
        out["image_size"] = (h, w)
    return out


def analyze_kwargs(args: argparse.Namespace) -> dict:
    """The keyword arguments of analyze() given by the parsed flags."""
    if args.speculative is None and (args.gamma is not None or args.acceptance is not None):
        raise ValueError("--gamma and --acceptance need --speculative DRAFT (a draft model or 'mtp')")
    spec = None
    if args.speculative is not None:
        spec = Speculative(
            draft=args.speculative,
            gamma=4 if args.gamma is None else args.gamma,
            acceptance=0.7 if args.acceptance is None else args.acceptance,
        )
    return dict(
        batch_size=args.batch_size,
        prompt_len=args.prompt_len,
        gen_len=args.gen_len,
        w_bits=args.w_bits,
        a_bits=args.a_bits,
        kv_bits=args.kv_bits,
        logits=args.logits,
        attention=args.attention,
        mla=args.mla,
        group_size=args.group_size,
        flash_attention=args.flash_attention,
        fused=args.fused,
        kv_keep_ratio=args.kv_keep_ratio,
        kv_budget=args.kv_budget,
        speculative=spec,
        early_exit_fraction=args.early_exit_fraction,
        sparsity=args.sparsity,
        offload=args.offload,
        tp=args.tp,
        pp=args.pp,
        ep=args.ep,
        efficiency=args.efficiency,
        framework=args.framework,
        **_image_args(args),
    )


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="llmroof", description="Roofline analysis of LLM inference")
    sub = ap.add_subparsers(dest="cmd", required=True)
    _add_analyze_flags(sub.add_parser("analyze", help="analyze one model on one device"))
    m = sub.add_parser("models", help="list the model catalog")
    m.add_argument("--json", action="store_true")
    h = sub.add_parser("hardware", help="list the device catalog")
    h.add_argument("--json", action="store_true")
    p = sub.add_parser("app", help="serve the dashboard as a web page (Voilà; the optional extra 'app')")
    p.add_argument("--model", default=None, help="catalog name or hf id (default: the settings' or Llama-3.1-8B)")
    p.add_argument("--hardware", default=None, help="device id (default: the settings' or h100-sxm)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--prompt-len", type=int, default=None)
    p.add_argument("--gen-len", type=int, default=None)
    p.add_argument("--port", type=int, default=8866)
    p.add_argument("--ip", default="localhost", help="address to listen on (default: localhost only)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    return ap


def models_table() -> str:
    rows = []
    for n in list_models():
        e = catalog_entry(n)
        rows.append([n, ", ".join(e.get("aliases", [])), e.get("published_params") or ""])
    return _table(rows, ["model", "aliases", "published params"])


def hardware_table() -> str:
    rows = []
    for d in hardware_catalog():
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
    return _table(rows, ["id", "name", "memory", "bandwidth", "fp16/bf16 peak"], numeric={2, 3, 4})


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.cmd == "app":
            from .app import MissingExtraError, run_app

            inputs = {k: getattr(args, k) for k in ("batch_size", "prompt_len", "gen_len")}
            try:
                return run_app(
                    args.model, args.hardware, port=args.port, open_browser=not args.no_browser, ip=args.ip, **inputs
                )
            except MissingExtraError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
        if args.cmd == "analyze":
            d = analyze(args.model, args.hardware, **analyze_kwargs(args)).to_dict()
            print(json.dumps(d) if args.json else report(d))
        elif args.cmd == "models":
            print(json.dumps([catalog_entry(n) for n in list_models()]) if args.json else models_table())
        else:
            print(json.dumps(hardware_catalog()) if args.json else hardware_table())
    except ValueError as e:
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `llmroof models | head`
        sys.stderr.close()
        return 0
    except (OverflowError, RecursionError, OSError, KeyError, MemoryError, TypeError) as e:  # never a traceback
        print(f"error: {type(e).__name__}: {_one_line(str(e))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
