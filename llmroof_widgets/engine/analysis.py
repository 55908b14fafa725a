"""``analyze``: settings → operators → roofline times → memory → a :class:`Result`."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import calibration, generation, memory, trust
from .catalog import _short, read_json_file
from .families_ssm import not_applicable
from .files import write_text_atomic
from .generation import Speculative
from .hardware import Hardware, load_hardware
from .models import ModelConfig, _is_number, load_model
from .ops import PassBuilder, Row
from .options import Options, make_options, validate_for
from .precision import Precision
from .roofline import Roof, pass_time, roofs, row_dict

LOGITS = ("last", "all")
SAVED_SECTIONS = ("model", "hardware", "settings", "prefill", "decode", "generation", "memory")


def _json_scalar(v):
    """numpy scalars and arrays as plain JSON values (anything else is an error)."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"{type(v).__name__} is not JSON serialisable")


ATTENTION = ("causal", "full")
MLA = ("absorbed", "naive")


def _check_count(field: str, value, minimum: int = 1, maximum: int = 10**9) -> int:
    """A whole number in [minimum, maximum]: Python or numpy ints, integral finite floats; else ValueError."""
    if not _is_number(value) or (
        isinstance(value, (float, np.floating)) and not (math.isfinite(value) and float(value).is_integer())
    ):
        raise ValueError(f"{field} must be a whole number ≥ {minimum}, got {_short(value)}")
    if value < minimum:
        raise ValueError(f"{field} must be ≥ {minimum}, got {_short(value)}")
    if value > maximum:
        raise ValueError(f"{field} must be ≤ {maximum:.0e}, got {_short(value)}")
    return int(value)


def _check_choice(field: str, value, allowed) -> str:
    if value not in allowed:
        raise ValueError(f"{field} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


@dataclass
class Phase:
    """One forward pass: the prefill, or one decode step."""

    name: str
    tokens: int  # new tokens per sequence
    context: int  # tokens attended by the last new token (cached + new)
    rows: list[Row]
    time_s: float
    roof: Roof

    @property
    def flops(self) -> float:
        return float(sum(r.count * r.flops for r in self.rows))

    @property
    def matmul_flops(self) -> float:
        return float(sum(r.count * r.matmul_flops for r in self.rows))

    @property
    def bytes(self) -> float:
        return float(sum(r.count * r.bytes for r in self.rows))

    @property
    def ops(self) -> list[dict]:
        return [row_dict(r, self.roof, self.time_s) for r in self.rows]

    def to_dict(self) -> dict:
        ops = self.ops
        fl, by = self.flops, self.bytes
        compute_t = sum(o["count"] * o["compute_time_s"] for o in ops if o["bound"] == "compute")
        return {
            "tokens": self.tokens,
            "context": self.context,
            "flops": fl,
            "matmul_flops": self.matmul_flops,
            "bytes": by,
            "weight_bytes": float(sum(r.count * r.weight_bytes for r in self.rows)),
            "kv_bytes": float(sum(r.count * r.kv_bytes for r in self.rows)),
            "activation_bytes": float(sum(r.count * r.activation_bytes for r in self.rows)),
            "host_bytes": float(sum(r.count * r.host_bytes for r in self.rows)),
            "communication_time_s": float(sum(o["count"] * o["communication_time_s"] for o in ops)),
            "arithmetic_intensity": fl / by if by else 0.0,
            "time_s": self.time_s,
            # calibrated mode: host work of the pass (per-step overhead) outside every operator's time
            "host_overhead_s": float(self.roof.step_overhead),
            # a phase is compute-bound when most of its time is spent in compute-bound operators
            "bound": "compute" if compute_t >= 0.5 * self.time_s else "memory",
            "ops": ops,
        }


def _time_note(efficiency) -> str:
    if efficiency == "calibrated":
        return (
            "calibrated times: an explained model of real kernels (achievable bandwidth and GEMM efficiency per "
            "device family, small-batch GEMM efficiency, launch overhead); not a bound"
        )
    if isinstance(efficiency, dict) and efficiency:
        return "roofline times with efficiency factors " + ", ".join(f"{k} {v:g}" for k, v in efficiency.items())
    return "roofline times are lower bounds: each operator at the device's peak compute or peak bandwidth"


class Result:
    """The analysis of one model on one device for one workload. ``to_dict()`` gives plain data."""

    def __init__(
        self,
        model: ModelConfig,
        hardware: Hardware,
        settings: dict,
        prefill: Phase,
        decode: Phase,
        steps: generation.DecodeSteps,
        generation_summary: dict,
        memory_summary: dict,
        encode: Phase | None = None,
        encoder_rows: list[Row] | None = None,
    ):
        self.model = model
        self.hardware = hardware
        self.settings = settings
        self.prefill = prefill
        self.decode = decode
        # a sample of at most MAX_TIMELINE_POINTS decode steps (all of them when fewer), exact at the ends
        # and break points; the generation's totals sum every step
        self.decode_step_indices = steps.indices  # which step (or speculative round) each entry is
        self.decode_contexts = steps.contexts  # tokens attended at that step (cached + 1)
        self.decode_step_times_s = steps.times_s
        self.generation = generation_summary
        self.memory = memory_summary
        # vision-language models: the encode phase (None without images) and the encoder's operator rows
        # (built even without images: its weights are resident and its parameters count)
        self.encode = encode
        self.encoder_rows = encoder_rows or []

    @property
    def params_total(self) -> int:
        return memory.params_total(self.prefill.rows) + memory.params_total(self.encoder_rows)

    @property
    def params_mtp(self) -> int:
        """Parameters of the multi-token-prediction modules the config declares (not in ``params_total``:
        transformers does not build them, and published totals such as DeepSeek-V3's 671 B leave them out)."""
        rows = mtp_rows(self.model)
        return 0 if rows is None else self.model.mtp_layers * memory.params_total(rows)

    @property
    def params_total_with_mtp(self) -> int:
        return self.params_total + self.params_mtp

    @property
    def params_active(self) -> int:
        """Parameters one token uses: all but the routed experts it does not visit (top-k of E)."""
        total = float(memory.params_total(self.encoder_rows))  # the vision encoder (dense), if any
        for r in self.prefill.rows:
            if r.wclass == "expert":
                mlp = next(lt for lt in self.model.layer_types if lt.name == r.layer_type).mlp
                assert mlp is not None  # an expert row comes from a layer with an MoE MLP
                total += r.count * r.params * mlp.top_k / mlp.num_experts
            else:
                total += r.count * r.params
        return int(round(total))

    def to_dict(self) -> dict:
        m = self.model
        gen = dict(self.generation)
        gen["decode_step_times_s"] = [float(x) for x in self.decode_step_times_s]
        gen["decode_contexts"] = [int(x) for x in self.decode_contexts]
        gen["decode_step_indices"] = [int(x) for x in self.decode_step_indices]
        gen["trust"] = trust.label(self)
        return {
            "model": {
                **m.to_dict(),
                "params_total": self.params_total,
                "params_active": self.params_active,
                "params_mtp": self.params_mtp,
                "params_total_with_mtp": self.params_total_with_mtp,
                "mtp_layers": m.mtp_layers,
            },
            "hardware": self.hardware.to_dict(),
            "roofs": roofs(
                self.prefill.roof,
                {r.dtype for r in self.prefill.rows + self.decode.rows + (self.encode.rows if self.encode else [])},
                sparse=any(r.speedup > 1 for r in self.prefill.rows),
            ),
            "settings": dict(self.settings),
            "prefill": self.prefill.to_dict(),
            "decode": self.decode.to_dict(),
            **({"encode": self.encode.to_dict()} if self.encode is not None else {}),
            "generation": gen,
            "memory": dict(self.memory),
            "notes": {
                "time": _time_note(self.settings.get("efficiency")),
                "ttft": "time to first token = prefill time (+ the vision encode phase when images are given, a "
                "speculative draft's prefill, and in the calibrated mode the per-request host overhead)",
                "tpot": "time per output token after the first = (e2e − ttft)/(gen_len − 1)",
                "tokens_per_s": "generated tokens per second for one sequence (one user), end to end",
                "throughput_tokens_per_s": "generated tokens per second for the whole batch, all devices together "
                "(throughput_per_device_tokens_per_s divides it by the devices: tp × pp × ep)",
                # attention-free models (Mamba, Mamba2): the attention-only knobs that change nothing, by name
                **({"not_applicable": na} if (na := not_applicable(m, self.settings)) else {}),
            },
        }

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    def save(self, path) -> None:
        """Write ``to_dict()`` as standard JSON (conventionally ``*.llmroof.json``), atomically.

        The whole JSON is serialised first (a non-finite number is refused: nothing is written), then
        written to a temporary file in the same folder and renamed over ``path``: a failure never leaves
        a broken or partial file, and an existing good file stays until the new one is complete.
        """
        p = os.fspath(path)
        try:
            text = json.dumps(self.to_dict(), allow_nan=False, default=_json_scalar)
        except (ValueError, TypeError) as e:
            raise ValueError(
                f"Result.save: the result cannot be written as standard JSON ({e}); {p!r} untouched"
            ) from None
        write_text_atomic(p, text, "Result.save")

    @staticmethod
    def load(path) -> dict:
        """The plain data a :meth:`save` wrote (``to_dict()``), checked: a truncated, tampered or foreign
        file gives a ``ValueError`` naming the path and what is wrong."""
        d = read_json_file(path, "Result.load", finite=True)
        p = os.fspath(path)
        if not isinstance(d, dict):
            raise ValueError(f"Result.load: {p!r} does not hold a JSON object")
        missing = [k for k in SAVED_SECTIONS if not isinstance(d.get(k), dict)]
        if missing:
            raise ValueError(
                f"Result.load: {p!r} is not a saved analysis: missing or not an object: {', '.join(missing)}"
            )
        g = d["generation"]
        for k in ("ttft_s", "tpot_s", "e2e_s"):
            v = g.get(k)
            if not _is_number(v) or v < 0:
                raise ValueError(f"Result.load: {p!r}: generation.{k} must be a number ≥ 0, got {_short(v)}")
        for ph in ("prefill", "decode"):
            if not isinstance(d[ph].get("ops"), list):
                raise ValueError(f"Result.load: {p!r}: {ph}.ops must be a list")
        return d

    def __repr__(self) -> str:
        g = self.generation
        return (
            f"<Result {self.model.name} on {self.hardware.name}: TTFT {g['ttft_s'] * 1e3:.3g} ms, "
            f"TPOT {g['tpot_s'] * 1e3:.3g} ms, memory {self.memory['total_bytes'] / 1e9:.3g} GB"
            f"{'' if self.memory['fits'] else ' (does not fit)'}>"
        )


def _mtp_draft(m: ModelConfig) -> ModelConfig:
    """One multi-token-prediction module as a draft model (DeepSeek-V3 §2.2, vLLM's DeepSeekMTP).

    enorm and hnorm (RMSNorm of the token embedding and of the target's last hidden state), eh_proj
    (2h → h), one decoder block, a final norm, and the target's embedding and lm_head (shared, so not
    counted again). The block has the shapes the config declares for its MTP layers
    (``num_nextn_predict_layers`` …); a model without MTP layers gets a hypothetical module built like
    its last layer.
    """
    if m.mtp_layer is not None:
        block = m.mtp_layer
    else:  # the last layer; on a hybrid the last attention layer (an MTP module attends)
        with_attn = [lt for lt in m.layer_types if lt.attention is not None] or list(m.layer_types)
        block = max(with_attn, key=lambda lt: max(lt.layers, default=-1))
    return replace(
        m,
        name=f"{m.name} (MTP head)",
        num_layers=1,
        layer_types=(replace(block, name="mtp", count=1, layers=(0,)),),
        mtp_head=True,
        mtp_layers=0,
        mtp_layer=None,
    )


def mtp_rows(m: ModelConfig, prec: Precision | None = None) -> list[Row] | None:
    """Operator rows of one token through one of the model's MTP modules (None when it declares none)."""
    if not m.mtp_layers:
        return None
    return PassBuilder(
        _mtp_draft(m),
        prec or Precision(16, 16, 16),
        batch=1,
        tokens=1,
        cached=0,
        logits_tokens=1,
        attention="causal",
        mla="absorbed",
    ).build()


def analyze(
    model: Any,
    hardware: Any,
    *,
    batch_size: int = 1,
    prompt_len: int = 1024,
    gen_len: int = 256,
    w_bits: Any = 16,
    a_bits: Any = 16,
    kv_bits: Any = 16,
    logits: str = "last",
    attention: str = "causal",
    mla: str = "absorbed",
    group_size: int | None = None,
    flash_attention: str = "off",
    fused: bool = False,
    kv_keep_ratio: float = 1.0,
    kv_budget: int | None = None,
    speculative: Speculative | None = None,
    early_exit_fraction: float = 1.0,
    sparsity: Any = None,
    offload: dict | None = None,
    tp: int = 1,
    pp: int = 1,
    ep: int = 1,
    efficiency: dict | None = None,
    framework: str = "generic",
    images: int = 0,
    image_size: Any = None,
) -> Result:
    """Roofline and memory analysis of generating ``gen_len`` tokens after a ``prompt_len`` prompt.

    Every technique knob at its default gives the plain analysis. Times are roofline lower bounds.

    Parameters
    ----------
    model : catalog name, path to a config.json (or folder), config dict, or ModelConfig
    hardware : catalog device id, or :class:`Hardware`
    batch_size : sequences processed together (over all devices)
    prompt_len : prompt tokens per sequence (prefill)
    gen_len : tokens generated per sequence (the first comes from the prefill)
    w_bits, a_bits, kv_bits : format of the linear layers' weights, the activations and the KV cache:
        bits (4, 8, 16, 32) or a name ("fp32", "bf16", "fp16", "fp8_e4m3", "fp8_e5m2", "int8", "int4",
        "fp4", "nf4"). Products run in the activation's float format when it has 16+ bits
        (weight-only quantization dequantizes), on the narrow units otherwise (W8A8 → int8, fp8 → fp8),
        falling back to fp16 where the device lacks the unit.
    group_size : group-wise quantization: scales (and zero points) per group of weights add their
        bits / group_size to every weight (int4 g128: 4 + (16 + 4)/128 = 4.16 bits); None = per channel (no overhead)
    logits : ``"last"`` — the prefill computes logits for the last position only (what generation
        needs); ``"all"`` — for every prompt position, as a ``transformers`` forward does
    attention : ``"causal"`` — the prefill counts only the causal half of the score matrix (query i
        attends i keys; what fast kernels compute); ``"full"`` — the whole S×S matrix, as eager attention
        computes before masking (what ``FlopCounterMode`` counts)
    mla : for multi-head latent attention (DeepSeek) decode: ``"absorbed"`` (weights absorbed,
        attention over the cached latent, as FlashMLA does) or ``"naive"`` (the latent re-expanded
        through ``kv_b_proj`` for every cached token at every step, as ``transformers`` does); with a
        sparse-attention indexer (DeepSeek-V3.2, GLM-5) "absorbed" attends the ``index_topk`` selected keys
        (FlashMLA's sparse kernels) and "naive" every key, the others masked (``transformers``' eager code)
    flash_attention : "off" | "ideal" (Q, K, V read once, O written once, no score matrix) | "tiled"
        (FlashAttention-2: query tiles sized by the device's per-SM on-chip memory re-read K and V)
    fused : element-wise operators fused into their neighbours (no bytes of their own)
    kv_keep_ratio, kv_budget : KV-cache eviction (H2O/SnapKV): share / maximum of tokens kept, in memory
        and in decode attention
    speculative : :class:`Speculative` (draft model or "mtp", γ, acceptance α), or None
    early_exit_fraction : mean share of layers a decode token runs (prefill runs them all)
    sparsity : None | "2:4" | share of zero weights (unstructured): see :class:`Options`
    offload : {"weights": f, "kv_cache": f, "experts": f}: shares held in host memory, streamed over the
        device's host link when used
    tp, pp, ep : tensor / pipeline / expert parallel degrees (memory and times per device; collectives
        appear as operators with bound "communication")
    efficiency : "roofline" (default; every factor 1: a strict lower bound), "calibrated" (an explained
        model of real kernels: achievable bandwidth and GEMM efficiency per device family, small-M GEMM
        efficiency, dequantization and launch overheads — see ``engine/calibration.py``), or
        {"compute": f, "memory": f, "communication": f}: achievable shares of the peaks
    framework : the serving framework whose kernels the calibrated mode models: "generic" (default: the
        pooled fit), "llama.cpp", "MLX", "vLLM", "SGLang", "TensorRT-LLM", optionally followed by a version
        ("TensorRT-LLM 0.9.0": that version's kernel paths, ``calibration.VERSIONS``). Its fitted constants for this
        device family come from ``data/calibration_fit.json``; other modes ignore it. Its attention kernel
        and fusion are not implied: pass ``flash_attention=`` and ``fused=`` (``calibration.FRAMEWORKS``)
    images : images per sequence, for a vision-language model (an encode phase runs before the prefill;
        TTFT = encode + prefill). Their image tokens join the prompt: the prefill runs
        ``prompt_len + images · tokens_per_image`` tokens and the KV cache holds them all
        (``prompt_len`` counts the text tokens, the image marker tokens included)
    image_size : (height, width) in pixels of each image (default: the encoder's fixed size, or 448×448);
        tokens per image = (H/patch)·(W/patch)/merge² (Gemma-3: its fixed ``mm_tokens_per_image``; LLaVA: CLIP's
        fixed 24² patches; Llama-4: any size, cut into 336-pixel tiles as its processor does, 144 per tile)
    """
    m = load_model(model)
    hw = load_hardware(hardware)
    B = _check_count("batch_size", batch_size)
    P = _check_count("prompt_len", prompt_len)
    G = _check_count("gen_len", gen_len)
    prec = Precision(w_bits, a_bits, kv_bits, group_size)
    _check_choice("logits", logits, LOGITS)
    _check_choice("attention", attention, ATTENTION)
    _check_choice("mla", mla, MLA)
    opts = make_options(
        flash_attention=flash_attention,
        fused=fused,
        kv_keep_ratio=kv_keep_ratio,
        kv_budget=kv_budget,
        early_exit_fraction=early_exit_fraction,
        sparsity=sparsity,
        offload=offload,
        tp=tp,
        pp=pp,
        ep=ep,
        efficiency=efficiency,
    )
    validate_for(opts, m, hw, B)
    if m.traced is not None and speculative is not None:
        m.traced.validate(opts, speculative)
    n_img = _check_count("images", images, minimum=0)
    if n_img and m.vision is None:
        raise ValueError(f"images = {n_img}: model {m.name!r} has no vision encoder (no vision_config); use images=0")
    img_size = m.vision.check_image_size(image_size) if m.vision is not None else None
    img_tokens = n_img * m.vision.tokens_per_image(img_size) if n_img else 0
    spec = None
    draft = None
    if speculative is not None:
        if not isinstance(speculative, Speculative):
            raise ValueError("speculative must be lr.Speculative(draft=..., gamma=..., acceptance=...) or None")
        spec = speculative.validated()
        if spec.gamma > 0:
            draft = _mtp_draft(m) if spec.draft == "mtp" else load_model(spec.draft)
    fw = calibration.framework(framework).label  # the family, with a version where one was asked for
    roof = Roof(hw, opts.efficiency, quantized_weights=prec.w_bits < 16, framework=fw)
    settings = {
        "model": m.name,
        "hardware": hw.name,
        "batch_size": B,
        "prompt_len": P,
        "gen_len": G,
        "w_bits": w_bits if isinstance(w_bits, str) else prec.w_bits,
        "a_bits": a_bits if isinstance(a_bits, str) else prec.a_bits,
        "kv_bits": kv_bits if isinstance(kv_bits, str) else prec.kv_bits,
        "logits": logits,
        "attention": attention,
        "mla": mla,
        "group_size": prec.group_size,
        "flash_attention": opts.flash_attention,
        "fused": opts.fused,
        "kv_keep_ratio": opts.kv_keep_ratio,
        "kv_budget": opts.kv_budget,
        "speculative": None
        if spec is None
        else {
            "draft": spec.draft if isinstance(spec.draft, str) else getattr(draft, "name", "custom"),
            "gamma": spec.gamma,
            "acceptance": spec.acceptance,
        },
        "early_exit_fraction": opts.early_exit_fraction,
        "sparsity": opts.sparsity,
        "offload": dict(opts.offload),
        "tp": opts.tp,
        "pp": opts.pp,
        "ep": opts.ep,
        "efficiency": opts.efficiency if isinstance(opts.efficiency, str) else dict(opts.efficiency),
        "framework": fw,
    }
    if m.traced is not None:
        settings["path"] = "traced"  # rows from tracing transformers; see model.trace_notes
    encode = enc_rows = None
    enc_act = 0.0
    if m.vision is not None:
        from .vision import EncoderBuilder

        assert img_size is not None  # checked above when the model has a vision encoder
        settings.update(images=n_img, image_size=list(img_size), image_tokens=img_tokens)
        enc_rows = EncoderBuilder(
            m.vision, prec, batch=B, images=max(n_img, 1), image_size=img_size, options=opts, hardware=hw
        ).build()
        if n_img:
            enc_time = float(pass_time(enc_rows, roof))
            encode = Phase("encode", img_tokens, m.vision.seq_len(img_size), enc_rows, enc_time, roof)
            # residual stream of the patches on this device + the largest operator's tensors
            n_patch = B / opts.ep * n_img * m.vision.patches_per_image(img_size)
            enc_act = n_patch * m.vision.hidden_size * prec.a + float(max(r.activation_bytes for r in enc_rows))
        P = P + img_tokens  # image tokens join the prompt: prefill and KV cache hold them

    pre_rows = PassBuilder(
        m,
        prec,
        batch=B,
        tokens=P,
        cached=0,
        logits_tokens=P if logits == "all" else 1,
        attention=attention,
        mla=mla,
        options=opts,
        hardware=hw,
    ).build()
    pre_time = float(pass_time(pre_rows, roof))
    reuse: dict = {}  # rows of the decode step that do not depend on the cached length, copied by every decode step
    dec_rows = PassBuilder(
        m,
        prec,
        batch=B,
        tokens=1,
        cached=P,
        logits_tokens=1,
        attention="causal",
        mla=mla,
        options=opts,
        hardware=hw,
        reuse=reuse,
    ).build(opts.early_exit_fraction)
    dec = Phase("decode", 1, P + 1, dec_rows, float(pass_time(dec_rows, roof)), roof)

    draft_prefill = 0.0
    draft_w = draft_kv_seq = 0.0
    if draft is not None:
        assert spec is not None  # a draft model exists only with speculative settings
        d_opts = Options(flash_attention=opts.flash_attention, fused=opts.fused, efficiency=opts.efficiency)
        d_rows = PassBuilder(
            draft,
            prec,
            batch=B,
            tokens=P,
            cached=0,
            logits_tokens=1,
            attention=attention,
            mla=mla,
            options=d_opts,
            hardware=hw,
        ).build()
        draft_prefill = float(pass_time(d_rows, roof))
        draft_w = memory.weights_bytes(d_rows, draft, d_opts)
        draft_kv_seq = float(memory.kv_cache_bytes(draft, prec, 1, P + G - 1 + spec.gamma, d_opts))
        if draft.mtp_head and m.mtp_layers > 1:
            # every MTP module is resident (and keeps its own cache); a draft step runs one of them
            draft_w *= m.mtp_layers
            draft_kv_seq *= m.mtp_layers
    pre = Phase("prefill", P, P, pre_rows, pre_time, roof)

    steps = generation.decode_step_times(
        m,
        prec,
        roof,
        opts,
        batch=B,
        prompt_len=P,
        gen_len=G,
        mla=mla,
        spec=spec,
        draft=draft,
        draft_prec=prec,
        reuse=reuse,
    )
    enc = encode.time_s if encode is not None else 0.0  # TTFT = encode + prefill
    gen = generation.summarize(
        pre.time_s + roof.request_overhead + draft_prefill + enc,
        steps.total_s,
        batch=B,
        gen_len=G,
        first_step_time=dec.time_s,
        devices=opts.devices,
    )
    gen["decode_steps"] = steps.steps  # decode steps (speculative: rounds) after the first token
    if spec is not None:
        gen["speculative_tokens_per_round"] = spec.tokens_per_round
        gen["draft_prefill_s"] = draft_prefill
    if opts.pp > 1:
        # with pp micro-batches in flight every stage works at once: one stage's time per batch of tokens
        send = sum(r.count * r.comm_s for r in dec_rows if r.name == "pp_send")
        stage = (dec.time_s - send) / opts.pp + send / (opts.pp - 1)
        gen["pipeline_stage_time_s"] = stage
        gen["throughput_pipelined_tokens_per_s"] = B / stage
    mem = memory.footprint(
        m,
        prec,
        hw.memory_bytes,
        opts,
        batch=B,
        prompt_len=P,
        gen_len=G,
        prefill_rows=pre_rows,
        decode_rows=dec_rows,
        extra_bytes=draft_w,
        extra_per_seq=draft_kv_seq,
        encoder_rows=enc_rows,
        encode_activation_bytes=enc_act,
    )
    # the MTP modules' weights (resident only when they serve as the draft, as vLLM / SGLang load them)
    mtp = mtp_rows(m, prec)
    mem["mtp_weights_bytes"] = 0.0 if mtp is None else m.mtp_layers * memory.weights_bytes(mtp, m, Options())
    mem = {
        k: (
            bool(v)
            if k == "fits"
            else int(v)
            if k in ("max_batch_size", "kv_token_capacity", "devices", "kv_context_tokens")
            else float(v)
        )
        for k, v in mem.items()
    }
    if encode is not None:
        gen["encode_s"] = encode.time_s  # TTFT = encode + prefill
    return Result(m, hw, settings, pre, dec, steps, gen, mem, encode=encode, encoder_rows=enc_rows)
