"""Vision encoders of vision-language models: the config's ``vision_config`` and the "encode" phase.

A vision-language config (Qwen2.5-VL, Qwen3-VL, Mistral-3 / Pixtral, Gemma-3 / SigLIP) is parsed
into the text model (the engine's usual :class:`~.models.ModelConfig`) plus a :class:`VisionSpec`
attached as ``ModelConfig.vision``. :class:`EncoderBuilder` lists the operators of one encoder
pass over the images of a batch, with the same :class:`~.ops.Row` conventions as the text passes:

- patch embedding: a convolution whose stride equals its kernel is a matrix product of every
  patch's C·t·p·p pixels with a (C·t·p·p) × hidden weight: 2·patches·(C·t·p²)·hidden FLOPs;
- each encoder block: norm, q/k/v, 2-D rotary (Qwen, Pixtral), bidirectional attention within
  an image (Qwen2.5-VL: within windows of ``window_size`` pixels except the
  ``fullatt_block_indexes`` blocks), output projection, norm, MLP;
- the merger / projector that turns patches into the text model's image tokens (Qwen: m×m
  patches concatenated then an MLP; Qwen3-VL also its DeepStack mergers; Mistral-3: RMSNorm, a
  learned m×m patch merge, two linears; Gemma-3: average pooling to ``mm_tokens_per_image``,
  RMSNorm, one projection).

Image tokens per image = (H/patch)·(W/patch)/merge² (Gemma-3: its fixed ``mm_tokens_per_image``).
They join the text prompt: the prefill runs prompt_len + images·tokens_per_image tokens, and the KV
cache holds them all. The marker tokens a processor puts around an image (``<|vision_start|>``,
``[IMG_BREAK]``, ``<start_of_image>`` …) are text and count in ``prompt_len``.

The encoder's weights stay in 16 bits (quantized VLM checkpoints keep the vision tower unquantized)
and are resident on the device whether or not a request carries images.
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass, replace
from typing import Any

from .models import ACT_FLOPS, AttentionSpec, MLPSpec, ModelConfig
from .ops import ROPE_FLOPS, PassBuilder

# outer model_type → (model_type of its text model in this engine, the outer class's tie_word_embeddings
# default). Text model types from transformers 5.x configuration_<family>.py (their text_config classes
# are Qwen2-like with M-RoPE, Qwen3-like, Qwen3-MoE-like; M-RoPE changes no matmul); the tie defaults
# are the outer config classes' defaults (Qwen2_5_VLConfig / Qwen3VLConfig / Qwen3VLMoeConfig: False,
# Mistral3Config / Gemma3Config: True) — transformers 5 ties the head from the outer field.
VL_FAMILIES: dict[str, tuple[str | None, bool]] = {
    "qwen2_5_vl": ("qwen2", False),
    "qwen3_vl": ("qwen3", False),
    "qwen3_vl_moe": ("qwen3_moe", False),
    "mistral3": (None, True),  # text_config names its own family (mistral, llama …)
    "gemma3": (None, True),  # text_config is gemma3_text
    "gemma4": (None, True),  # text_config is gemma4_text; its vision tower: vision_gemma4.py
}
TEXT_TYPE_ALIASES = {"qwen2_5_vl_text": "qwen2", "qwen3_vl_text": "qwen3", "qwen3_vl_moe_text": "qwen3_moe"}

# Class defaults a published config may omit (it relies on them): transformers 5.24 configuration files.
TEXT_DEFAULTS: dict[str, dict] = {
    # Gemma3TextConfig (gemma3/configuration_gemma3.py); gemma-3-4b-it's text_config omits the heads and vocab
    "gemma3_text": dict(
        vocab_size=262_208,
        hidden_size=2304,
        intermediate_size=9216,
        num_hidden_layers=26,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=256,
        hidden_activation="gelu_pytorch_tanh",
        max_position_embeddings=131_072,
        tie_word_embeddings=True,
        sliding_window=4096,
    ),
}
VISION_DEFAULTS: dict[str, dict] = {
    # Qwen2_5_VLVisionConfig (qwen2_5_vl/configuration_qwen2_5_vl.py)
    "qwen2_5_vl": dict(
        depth=32,
        hidden_size=3584,
        hidden_act="silu",
        intermediate_size=3420,
        num_heads=16,
        in_channels=3,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        out_hidden_size=3584,
        fullatt_block_indexes=[7, 15, 23, 31],
    ),
    # Qwen3VLVisionConfig (qwen3_vl/configuration_qwen3_vl.py); Qwen3VLMoe's is the same
    "qwen3_vl": dict(
        depth=27,
        hidden_size=1152,
        hidden_act="gelu_pytorch_tanh",
        intermediate_size=4304,
        num_heads=16,
        in_channels=3,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        out_hidden_size=3584,
        num_position_embeddings=2304,
        deepstack_visual_indexes=[8, 16, 24],
    ),
    # PixtralVisionConfig (pixtral/configuration_pixtral.py)
    "pixtral": dict(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        num_channels=3,
        image_size=1024,
        patch_size=16,
        hidden_act="gelu",
    ),
    # SiglipVisionConfig (siglip/configuration_siglip.py)
    "siglip": dict(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_channels=3,
        image_size=224,
        patch_size=16,
        hidden_act="gelu_pytorch_tanh",
        vision_use_head=True,
    ),
}
DEFAULT_IMAGE_SIDE = 448  # pixels, for encoders with a dynamic resolution when image_size is not given


@dataclass(frozen=True)
class VisionSpec:
    """A vision encoder and its projector into the text model (all widths in elements)."""

    kind: str  # "qwen2_5_vl", "qwen3_vl", "pixtral", "siglip"
    depth: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    head_dim: int
    patch_size: int
    temporal_patch_size: int  # frames per patch (Qwen: an image is repeated over them); 1 for 2-D patches
    in_channels: int
    merge: int  # spatial merge (patches per side that become one token); Gemma-3: the pooling kernel
    out_hidden_size: int  # the text model's hidden size
    norm: str  # "rms" or "ln"
    mlp_gated: bool
    act: str
    qkv_fused: bool
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    patch_bias: bool
    rope: bool  # 2-D rotary embedding of q and k
    window_px: int = 0  # Qwen2.5-VL window attention: window side in pixels (0 = none)
    full_blocks: tuple[int, ...] = ()  # blocks with full attention when windows are used
    deepstack: int = 0  # Qwen3-VL DeepStack mergers
    pos_rows: int = 0  # learned position table rows (0: none)
    pre_norm: bool = False  # Pixtral ln_pre
    post_norm: bool = False  # SigLIP post_layernorm
    fixed_image_size: int = 0  # SigLIP: the one input resolution (0 = dynamic)
    fixed_tokens: int = 0  # Gemma-3 mm_tokens_per_image
    projector: str = "qwen"  # "qwen", "qwen3", "mistral3", "gemma3"
    projector_bias: bool = True
    projector_act: str = "gelu"
    max_tokens: int = 0  # Gemma-4: image tokens per image at most (vision_soft_tokens_per_image; 0 = no cap)
    standardize: bool = False  # Gemma-4: pooled features shifted and scaled (buffers)

    # -- shapes ----------------------------------------------------------------------------
    def default_image_size(self) -> tuple[int, int]:
        """The fixed input size, else 448 × 448 rounded to a multiple of patch·merge (as a processor resizes)."""
        if self.fixed_image_size:
            return self.fixed_image_size, self.fixed_image_size
        unit = self.patch_size * self.merge
        if self.max_tokens:  # Gemma-4: the largest square within the token budget, as its processor resizes
            side = math.isqrt(self.max_tokens) * unit
            return side, side
        side = max(unit, round(DEFAULT_IMAGE_SIDE / unit) * unit)
        return side, side

    def check_image_size(self, image_size) -> tuple[int, int]:
        """(H, W) in pixels, validated: ``ValueError`` naming ``image_size`` and what is allowed."""
        if image_size is None:
            return self.default_image_size()
        if isinstance(image_size, (int, float)) and not isinstance(image_size, bool):
            image_size = (image_size, image_size)
        if (
            not isinstance(image_size, (tuple, list))
            or len(image_size) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or v < 1 for v in image_size)
        ):
            raise ValueError(f"image_size must be (height, width) in pixels, whole numbers ≥ 1, got {image_size!r}")
        H, W = int(image_size[0]), int(image_size[1])
        if self.fixed_image_size:
            if (H, W) != (self.fixed_image_size, self.fixed_image_size):
                raise ValueError(
                    f"image_size: this encoder ({self.kind}) takes {self.fixed_image_size}×{self.fixed_image_size} "
                    f"images only (its processor resizes every image to it), got {H}×{W}"
                )
            return H, W
        unit = self.patch_size * self.merge
        if H % unit or W % unit:
            raise ValueError(
                f"image_size: height and width must be multiples of patch_size·spatial_merge_size = "
                f"{self.patch_size}·{self.merge} = {unit} pixels (the processor resizes to such sizes), got {H}×{W}"
            )
        if self.max_tokens and (H // unit) * (W // unit) > self.max_tokens:
            raise ValueError(
                f"image_size: {H}×{W} gives {(H // unit) * (W // unit)} image tokens; this encoder ({self.kind}) takes "
                f"at most {self.max_tokens} per image (its processor resizes larger images to fit)"
            )
        return H, W

    def grid(self, image_size) -> tuple[int, int]:
        """Patches per side (rows, columns) of one image."""
        H, W = self.check_image_size(image_size)
        return H // self.patch_size, W // self.patch_size

    def patches_per_image(self, image_size) -> int:
        gh, gw = self.grid(image_size)
        return gh * gw

    def tokens_per_image(self, image_size) -> int:
        """Image tokens one image puts into the prompt: (H/patch)·(W/patch)/merge² (Gemma-3: fixed)."""
        if self.fixed_tokens:
            self.check_image_size(image_size)
            return self.fixed_tokens
        gh, gw = self.grid(image_size)
        return (gh // self.merge) * (gw // self.merge)

    def attention_pairs(self, image_size, window: bool) -> float:
        """Query–key pairs per head of one image in one block (bidirectional attention).

        Full blocks: every patch attends every patch of its image (n²). Qwen2.5-VL window blocks:
        the merged grid is cut into windows of window_size/(patch·merge) units per side (the last
        row/column of windows is what remains); each window attends itself: Σ (window patches)².
        """
        gh, gw = self.grid(image_size)
        if not window:
            return float(gh * gw) ** 2
        vw = self.window_px // self.merge // self.patch_size  # merged units per window side
        mh, mw = gh // self.merge, gw // self.merge

        def sides(n):
            return [vw] * (n // vw) + ([n % vw] if n % vw else [])

        m2 = self.merge**2
        return float(sum((a * b * m2) ** 2 for a in sides(mh) for b in sides(mw)))

    def block_groups(self) -> list[tuple[str, int, bool]]:
        """(name, count, windowed) of the encoder's block kinds."""
        if not self.window_px:
            return [("vision", self.depth, False)]
        full = sum(1 for i in set(self.full_blocks) if 0 <= i < self.depth)
        out = []
        if self.depth - full:
            out.append(("vision window", self.depth - full, True))
        if full:
            out.append(("vision full", full, False))
        return out

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "depth": self.depth,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_heads": self.num_heads,
            "head_dim": self.head_dim,
            "patch_size": self.patch_size,
            "temporal_patch_size": self.temporal_patch_size,
            "spatial_merge_size": self.merge,
            "out_hidden_size": self.out_hidden_size,
            "window_size": self.window_px or None,
            "fullatt_block_indexes": list(self.full_blocks),
            "deepstack_mergers": self.deepstack,
            "fixed_image_size": self.fixed_image_size or None,
            "tokens_per_image_fixed": self.fixed_tokens or None,
            "projector": self.projector,
        }


# ----------------------------------------------------------------------------------------
# parsing


def _int(cfg: dict, key: str, where: str, minimum: int = 1) -> int:
    v = cfg.get(key)
    if isinstance(v, (list, tuple)) and len(v) == 2 and v[0] == v[1]:
        v = v[0]  # square (size, size) given as a pair
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or v < minimum:
        raise ValueError(f"config field '{where}.{key}' must be an integer ≥ {minimum}, got {v!r}")
    return int(v)


def _act(name: Any, where: str) -> str:  # name: the config value, checked here
    a = name if name in ACT_FLOPS else ("gelu" if isinstance(name, str) and name.startswith("gelu") else name)
    if a not in ACT_FLOPS:
        raise ValueError(
            f"config field '{where}.hidden_act' = {name!r} is not supported; supported: {sorted(ACT_FLOPS)}"
        )
    return a


def parse_vision(outer: dict, text_hidden: int) -> VisionSpec:
    """The :class:`VisionSpec` of a vision-language config (its ``vision_config`` and projector fields)."""
    mt = outer.get("model_type")
    raw = outer["vision_config"]
    if mt in ("qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"):
        base = "qwen2_5_vl" if mt == "qwen2_5_vl" else "qwen3_vl"
        v = {**VISION_DEFAULTS[base], **raw}
        w = "vision_config"
        h, heads = _int(v, "hidden_size", w), _int(v, "num_heads", w)
        if h % heads:
            raise ValueError(f"config field 'vision_config.hidden_size' = {h} is not divisible by num_heads = {heads}")
        common: dict[str, Any] = dict(
            depth=_int(v, "depth", w),
            hidden_size=h,
            intermediate_size=_int(v, "intermediate_size", w),
            num_heads=heads,
            head_dim=h // heads,
            patch_size=_int(v, "patch_size", w),
            temporal_patch_size=_int(v, "temporal_patch_size", w),
            in_channels=_int({"in_channels": v.get("in_channels", v.get("in_chans", 3))}, "in_channels", w),
            merge=_int(v, "spatial_merge_size", w),
            out_hidden_size=_int(v, "out_hidden_size", w),
            act=_act(v.get("hidden_act"), w),
            qkv_fused=True,
            qkv_bias=True,
            o_bias=True,
            mlp_bias=True,
            rope=True,
            projector_bias=True,
            projector_act="gelu",
        )
        if common["out_hidden_size"] != text_hidden:
            raise ValueError(
                f"config field 'vision_config.out_hidden_size' = {common['out_hidden_size']} must equal the text "
                f"model's hidden_size = {text_hidden}"
            )
        if base == "qwen2_5_vl":
            full = v.get("fullatt_block_indexes") or []
            if not isinstance(full, (list, tuple)) or not all(isinstance(i, int) for i in full):
                raise ValueError("config field 'vision_config.fullatt_block_indexes' must be a list of block indices")
            return VisionSpec(
                kind="qwen2_5_vl",
                norm="rms",
                mlp_gated=True,
                patch_bias=False,
                window_px=_int(v, "window_size", w),
                full_blocks=tuple(full),
                projector="qwen",
                **common,
            )
        ds = v.get("deepstack_visual_indexes") or []
        if not isinstance(ds, (list, tuple)):
            raise ValueError("config field 'vision_config.deepstack_visual_indexes' must be a list of block indices")
        return VisionSpec(
            kind="qwen3_vl",
            norm="ln",
            mlp_gated=False,
            patch_bias=True,
            deepstack=len(ds),
            pos_rows=_int(v, "num_position_embeddings", w),
            projector="qwen3",
            **common,
        )
    if mt == "mistral3":
        vt = raw.get("model_type", "pixtral")
        if vt != "pixtral":
            raise ValueError(f"config field 'vision_config.model_type' = {vt!r} is not supported; supported: 'pixtral'")
        v = {**VISION_DEFAULTS["pixtral"], **raw}
        w = "vision_config"
        h, heads = _int(v, "hidden_size", w), _int(v, "num_attention_heads", w)
        hd = int(v.get("head_dim") or h // heads)
        if heads * hd != h:
            raise ValueError(f"config field 'vision_config.head_dim' = {hd}: num_attention_heads·head_dim must be {h}")
        return VisionSpec(
            kind="pixtral",
            depth=_int(v, "num_hidden_layers", w),
            hidden_size=h,
            intermediate_size=_int(v, "intermediate_size", w),
            num_heads=heads,
            head_dim=hd,
            patch_size=_int(v, "patch_size", w),
            temporal_patch_size=1,
            in_channels=_int(v, "num_channels", w),
            merge=_int({"spatial_merge_size": outer.get("spatial_merge_size", 2)}, "spatial_merge_size", "config"),
            out_hidden_size=text_hidden,
            norm="rms",
            mlp_gated=True,
            act=_act(v.get("hidden_act"), w),
            qkv_fused=False,
            qkv_bias=False,
            o_bias=False,
            mlp_bias=False,
            patch_bias=False,
            rope=True,
            pre_norm=True,
            projector="mistral3",
            projector_bias=bool(outer.get("multimodal_projector_bias", False)),
            projector_act=_act(outer.get("projector_hidden_act", "gelu"), "config"),
        )
    if mt == "gemma4":
        from . import vision_gemma4

        return vision_gemma4.parse(outer, raw, text_hidden, VisionSpec, _int, _act)
    if mt == "gemma3":
        vt = raw.get("model_type", "siglip_vision_model")
        if vt != "siglip_vision_model":
            raise ValueError(
                f"config field 'vision_config.model_type' = {vt!r} is not supported; supported: 'siglip_vision_model'"
            )
        v = {**VISION_DEFAULTS["siglip"], **raw}
        w = "vision_config"
        if v.get("vision_use_head"):
            raise ValueError("config field 'vision_config.vision_use_head' = true is not supported for gemma3")
        h, heads = _int(v, "hidden_size", w), _int(v, "num_attention_heads", w)
        if h % heads:
            raise ValueError(f"config field 'vision_config.hidden_size' = {h} is not divisible by num_attention_heads")
        size, patch = _int(v, "image_size", w), _int(v, "patch_size", w)
        tokens = _int({"mm_tokens_per_image": outer.get("mm_tokens_per_image", 256)}, "mm_tokens_per_image", "config")
        side, per_side = size // patch, math.isqrt(tokens)
        if size % patch or per_side * per_side != tokens or side % per_side:
            raise ValueError(
                f"config fields 'vision_config.image_size' = {size}, 'patch_size' = {patch} and 'mm_tokens_per_image' = "
                f"{tokens}: the patch grid must pool evenly to a square of image tokens"
            )
        return VisionSpec(
            kind="siglip",
            depth=_int(v, "num_hidden_layers", w),
            hidden_size=h,
            intermediate_size=_int(v, "intermediate_size", w),
            num_heads=heads,
            head_dim=h // heads,
            patch_size=patch,
            temporal_patch_size=1,
            in_channels=_int(v, "num_channels", w),
            merge=side // per_side,
            out_hidden_size=text_hidden,
            norm="ln",
            mlp_gated=False,
            act=_act(v.get("hidden_act"), w),
            qkv_fused=False,
            qkv_bias=True,
            o_bias=True,
            mlp_bias=True,
            patch_bias=True,
            rope=False,
            pos_rows=side * side,
            post_norm=True,
            fixed_image_size=size,
            fixed_tokens=tokens,
            projector="gemma3",
            projector_bias=False,
        )
    raise ValueError(
        f"config field 'model_type' = {mt!r} has a 'vision_config' this engine does not parse; supported "
        f"vision-language models: {', '.join(sorted(VL_FAMILIES))}"
    )


def parse_multimodal(cfg: dict, *, name: str, parse_text) -> ModelConfig:
    """A vision-language config: its text model (``parse_text``) with the vision encoder attached."""
    mt = cfg.get("model_type")
    if mt not in VL_FAMILIES:
        raise ValueError(
            f"config field 'model_type' = {mt!r} has a 'vision_config' this engine does not parse; supported "
            f"vision-language models: {', '.join(sorted(VL_FAMILIES))}"
        )
    text_mt, tie_default = VL_FAMILIES[mt]
    if isinstance(cfg.get("text_config"), dict):
        text = dict(cfg["text_config"])
    elif text_mt is not None and "hidden_size" in cfg:
        # Qwen2.5-VL's published config keeps the text fields at the top level
        text = {k: v for k, v in cfg.items() if k not in ("vision_config", "text_config")}
    else:
        raise ValueError(f"config of model_type {mt!r} is missing the field 'text_config'")
    tmt = text.get("model_type")
    tmt = TEXT_TYPE_ALIASES.get(tmt, tmt) if tmt else text_mt
    if tmt == mt:
        tmt = text_mt
    text["model_type"] = tmt
    for k, v in TEXT_DEFAULTS.get(tmt or "", {}).items():
        text.setdefault(k, v)
    # transformers 5 ties the lm_head to the embeddings from the outer config's field
    text["tie_word_embeddings"] = bool(cfg.get("tie_word_embeddings", tie_default))
    m = parse_text(text, name=name)
    spec = parse_vision(cfg, m.hidden_size)
    return replace(m, model_type=mt, vision=spec, raw=cfg)


# ----------------------------------------------------------------------------------------
# the encode pass


class EncoderBuilder(PassBuilder):
    """Operators of one encoder pass over ``images`` images of ``image_size`` per sequence, on one device."""

    def __init__(self, vision: VisionSpec, prec, *, batch, images: int, image_size, options=None, hardware=None):
        shim = types.SimpleNamespace(hidden_size=vision.hidden_size, norm=vision.norm)
        n = vision.patches_per_image(image_size)
        super().__init__(
            # the encoder's width and norm for the generic operators (PassBuilder reads only these two fields
            # there; a SimpleNamespace is not a ModelConfig to the checker)
            shim,  # type: ignore[arg-type]
            prec,
            batch=1,
            tokens=n,
            cached=0,
            logits_tokens=0,
            attention="full",
            mla="absorbed",
            options=options,
            hardware=hardware,
        )
        self.v = vision
        if self.tp > 1 and (vision.num_heads % self.tp or vision.intermediate_size % self.tp):
            raise ValueError(
                f"tp = {self.tp} must divide the vision encoder's heads ({vision.num_heads}) and MLP width "
                f"({vision.intermediate_size}); allowed tp: "
                + ", ".join(
                    str(d)
                    for d in range(1, vision.num_heads + 1)
                    if vision.num_heads % d == 0 and vision.intermediate_size % d == 0
                )
            )
        self.image_size = vision.check_image_size(image_size)
        self.B = batch * images / self.ep  # images on this device (data-parallel over EP ranks, like attention)
        self.N = self.B * n  # patches on this device
        self.n = n
        self._vis_pairs = 0.0

    def _pairs(self, window, chunk=None, topk=None):
        return self._vis_pairs, self.T  # bidirectional within an image (or a window): keys = its patches

    def linear(self, *args, **kw):
        kw.setdefault("hp", True)  # vision weights stay 16-bit
        return super().linear(*args, **kw)

    def _block(self, name: str, count: int, windowed: bool):
        v, N, p, tp = self.v, self.N, self.p, self.tp
        self._lt, self._count = name, count
        h, H, d = v.hidden_size, v.num_heads, v.head_dim
        Hl = H // tp
        self._vis_pairs = v.attention_pairs(self.image_size, windowed)
        self.norm("norm1", N, h)
        if v.qkv_fused:
            self.linear("qkv", N, h, 3 * H * d, bias=v.qkv_bias, split="col")
        else:
            for nm in ("q_proj", "k_proj", "v_proj"):
                self.linear(nm, N, h, H * d, bias=v.qkv_bias, split="col")
        if v.rope:
            self.elementwise("rotary_2d", N * 2 * Hl * d, ROPE_FLOPS, what="2-D rotary embedding of q and k")
        a = AttentionSpec(kind="mha", num_heads=H, num_kv_heads=H, head_dim=d, v_head_dim=d, window=None)
        self.attention_core(
            a,
            H=Hl,
            Hkv=Hl,
            dqk=d,
            dv=d,
            q_bytes=p.a,
            k_bytes=p.a,
            v_bytes=p.a,
            label=", within a window" if windowed else ", within an image",
            kv_in_cache=False,
        )
        self.linear("o_proj", N, H * d, h, bias=v.o_bias, split="row")
        self.tp_allreduce("attn_allreduce", N)
        self.elementwise("attn_residual", N * h, 1, reads=2, writes=1, what="residual add")
        self.norm("norm2", N, h)
        mlp = MLPSpec(
            kind="dense", intermediate_size=v.intermediate_size, gated=v.mlp_gated, act=v.act, bias=v.mlp_bias
        )
        self.dense_mlp(mlp)
        self.tp_allreduce("mlp_allreduce", N)
        self.elementwise("mlp_residual", N * h, 1, reads=2, writes=1, what="residual add")

    def _merger(self, name: str, ln_width: int, count: int = 1):
        """Qwen patch merger: norm, merge² patches concatenated, Linear(h·m², h·m²), GELU, Linear(h·m², out)."""
        v, N = self.v, self.N
        self._lt, self._count = "vision", count
        wide = v.hidden_size * v.merge**2
        M = N / v.merge**2  # merged tokens
        self.norm(f"{name}_norm", N * v.hidden_size / ln_width, ln_width)
        self.linear(f"{name}_fc1", M, wide, wide, bias=True)
        self.elementwise(f"{name}_act", M * wide, ACT_FLOPS["gelu"], what="GELU")
        self.linear(f"{name}_fc2", M, wide, v.out_hidden_size, bias=True)

    def build(self, layer_fraction: float = 1.0):
        v, N, p = self.v, self.N, self.p
        if v.kind == "gemma4":
            from . import vision_gemma4

            return vision_gemma4.build(self)
        self._lt, self._count = "vision", 1
        k_in = v.in_channels * v.temporal_patch_size * v.patch_size**2
        # patch embedding: a stride = kernel convolution is a matmul of the flattened patches
        self.linear("patch_embed", N, k_in, v.hidden_size, bias=v.patch_bias, weight_label="C·t·p²·hidden")
        if v.pos_rows:
            if v.kind == "qwen3_vl":
                # bilinear interpolation of the learned table: 4 rows weighted (4 mul + 3 add) + the add
                r = self.elementwise(
                    "pos_embed", N * v.hidden_size, 8, reads=5, writes=1, what="bilinear learned positions + add"
                )
            else:
                r = self.elementwise("pos_embed", N * v.hidden_size, 1, reads=2, writes=1, what="add learned positions")
            r.params = v.pos_rows * v.hidden_size
            r.resident = v.pos_rows * v.hidden_size * p.hp
            r.wclass = "hp"
        if v.pre_norm:
            self.norm("ln_pre", N, v.hidden_size)
        for name, count, windowed in v.block_groups():
            self._block(name, count, windowed)
        self._lt, self._count = "vision", 1
        if v.post_norm:
            self.norm("post_layernorm", N, v.hidden_size)
        if v.projector == "qwen":
            self._merger("merger", v.hidden_size)
        elif v.projector == "qwen3":
            self._merger("merger", v.hidden_size)
            if v.deepstack:
                self._merger("deepstack_merger", v.hidden_size * v.merge**2, count=v.deepstack)
        elif v.projector == "mistral3":
            M = N / v.merge**2
            self.norm_rms("projector_norm", N, v.hidden_size)
            self.linear("patch_merger", M, v.hidden_size * v.merge**2, v.hidden_size)
            self.linear("linear_1", M, v.hidden_size, v.out_hidden_size, bias=v.projector_bias)
            self.elementwise("projector_act", M * v.out_hidden_size, ACT_FLOPS[v.projector_act], what="GELU")
            self.linear("linear_2", M, v.out_hidden_size, v.out_hidden_size, bias=v.projector_bias)
        elif v.projector == "gemma3":
            M = self.B * v.fixed_tokens
            r = self.elementwise("avg_pool", N * v.hidden_size, 1, reads=1, writes=0, what="average pooling")
            if not self.o.fused:
                r.add_term("activation", "pooled output", ("M", M), ("h", v.hidden_size), self._fa)
            self.norm_rms("mm_soft_emb_norm", M, v.hidden_size)
            self.linear("mm_input_projection", M, v.hidden_size, v.out_hidden_size)
        self._apply_storage()
        return self.rows


def vision_params(vision: VisionSpec) -> int:
    """Parameters of the encoder and its projector (equal to the encode rows' ``params``)."""
    rows = EncoderBuilder(vision, _PREC16(), batch=1, images=1, image_size=None).build()
    return int(sum(r.count * r.params for r in rows))


def _PREC16():
    from .precision import Precision

    return Precision(16, 16, 16)


def image_tokens(model: ModelConfig, images: int, image_size) -> int:
    """Image tokens per sequence: images × tokens per image."""
    return images * model.vision.tokens_per_image(image_size) if images else 0


__all__ = [
    "EncoderBuilder",
    "VisionSpec",
    "image_tokens",
    "parse_multimodal",
    "parse_vision",
    "vision_params",
]
