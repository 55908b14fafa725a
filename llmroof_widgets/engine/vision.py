"""Vision encoders of vision-language models: the config's ``vision_config`` and the "encode" phase.

A vision-language config (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Mistral-3 / Pixtral, Gemma-3 / SigLIP, Llama-4,
LLaVA / CLIP) is parsed into the text model (the engine's usual :class:`~.models.ModelConfig`) plus a
:class:`VisionSpec` attached as ``ModelConfig.vision``. :class:`EncoderBuilder` lists the operators of one encoder
pass over the images of a batch, with the same :class:`~.ops.Row` conventions as the text passes:

- patch embedding: a convolution whose stride equals its kernel is a matrix product of every
  patch's C·t·p·p pixels with a (C·t·p·p) × hidden weight: 2·patches·(C·t·p²)·hidden FLOPs;
- each encoder block: norm, q/k/v, 2-D rotary (Qwen, Pixtral), bidirectional attention within
  an image (Qwen2.5-VL: within windows of ``window_size`` pixels except the
  ``fullatt_block_indexes`` blocks), output projection, norm, MLP;
- the merger / projector that turns patches into the text model's image tokens (Qwen: m×m
  patches concatenated then an MLP; Qwen3-VL also its DeepStack mergers; Mistral-3: RMSNorm, a
  learned m×m patch merge, two linears; Gemma-3: average pooling to ``mm_tokens_per_image``,
  RMSNorm, one projection; Llama-4: pixel shuffle, the vision adapter MLP, one projection).

Image tokens per image = (H/patch)·(W/patch)/merge² (Gemma-3: its fixed ``mm_tokens_per_image``).

Llama-4 tiles: its processor (``Llama4ImageProcessorFast``, ``max_patches`` = 16, ``resize_to_max_canvas``
off) fits an H × W image, without distortion, on the canvas of r × c tiles of ``image_size`` (336) pixels,
r·c ≤ 16, that needs the least upscaling (else the least downscaling; the smallest area on ties), and adds
a global tile (the whole image resized to one tile) when r·c > 1. The encoder runs every tile as its own
sequence: (336/14)² = 576 patches + a class token = 577 positions, full bidirectional attention within the
tile; the class token is dropped, a pixel shuffle merges 2 × 2 patches (``pixel_shuffle_ratio`` 0.5) into
144 tokens per tile, and the vision adapter MLP and the projector map them into the text model. Image
tokens per image = 144 × (r·c + [r·c > 1]).
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

import numpy as np

from .models import ACT_FLOPS, AttentionSpec, MLPSpec, ModelConfig
from .ops import ROPE_FLOPS, PassBuilder

# outer model_type → (model_type of its text model in this engine, the outer class's tie_word_embeddings
# default). Text model types from transformers 5.x configuration_<family>.py (their text_config classes
# are Qwen2-like with M-RoPE, Qwen3-like, Qwen3-MoE-like; M-RoPE changes no matmul); the tie defaults
# are the outer config classes' defaults (Qwen2_5_VLConfig / Qwen3VLConfig / Qwen3VLMoeConfig: False,
# Mistral3Config / Gemma3Config: True) — transformers 5 ties the head from the outer field.
VL_FAMILIES: dict[str, tuple[str | None, bool]] = {
    "qwen2_vl": ("qwen2", False),  # Qwen2VLConfig.tie_word_embeddings defaults to False
    "qwen2_5_vl": ("qwen2", False),
    "qwen3_vl": ("qwen3", False),
    "qwen3_vl_moe": ("qwen3_moe", False),
    "qwen3_5": (None, False),  # text_config is qwen3_5_text (hybrid); Qwen3_5Config: False
    "qwen3_5_moe": (None, False),  # text_config is qwen3_5_moe_text (hybrid); Qwen3_5MoeConfig: False
    "mistral3": (None, True),  # text_config names its own family (mistral, llama …)
    "gemma3": (None, True),  # text_config is gemma3_text
    "gemma4": (None, True),  # text_config is gemma4_text; its vision tower: vision_gemma4.py
    "llama4": (None, False),  # text_config is llama4_text; Llama4Config.tie_word_embeddings defaults to False
    "llava": (None, False),  # text_config names its family (llama …); LlavaConfig: False unless the text ties
}
TEXT_TYPE_ALIASES = {
    "qwen2_vl_text": "qwen2",
    "qwen2_5_vl_text": "qwen2",
    "qwen3_vl_text": "qwen3",
    "qwen3_vl_moe_text": "qwen3_moe",
}

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
    # LlamaConfig (llama/configuration_llama.py); LLaVA-1.5's text_config gives only vocab and positions
    "llama": dict(
        vocab_size=32_000,
        hidden_size=4096,
        intermediate_size=11_008,
        num_hidden_layers=32,
        num_attention_heads=32,
        hidden_act="silu",
        max_position_embeddings=2048,
        tie_word_embeddings=False,
    ),
}
VISION_DEFAULTS: dict[str, dict] = {
    # Qwen2VLVisionConfig (qwen2_vl/configuration_qwen2_vl.py): embed_dim is the width, hidden_size the output
    "qwen2_vl": dict(
        depth=32,
        embed_dim=1280,
        hidden_size=3584,
        hidden_act="quick_gelu",
        mlp_ratio=4,
        num_heads=16,
        in_channels=3,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
    ),
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
    # Qwen3_5VisionConfig (qwen3_5/configuration_qwen3_5.py; Qwen3_5Moe's is the same): Qwen3-VL's tower
    # without DeepStack (the class has no deepstack_visual_indexes; Qwen3_5VisionModel deletes the mergers)
    "qwen3_5": dict(
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
    # CLIPVisionConfig (clip/configuration_clip.py)
    "clip": dict(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_channels=3,
        image_size=224,
        patch_size=32,
        hidden_act="quick_gelu",
    ),
    # Llama4VisionConfig (llama4/configuration_llama4.py)
    "llama4": dict(
        hidden_size=768,
        hidden_act="gelu",
        num_hidden_layers=34,
        num_attention_heads=16,
        num_channels=3,
        intermediate_size=5632,
        vision_output_dim=7680,
        image_size=448,
        patch_size=14,
        pixel_shuffle_ratio=0.5,
        projector_input_dim=4096,
        projector_output_dim=4096,
    ),
}
# Llama4ImageProcessorFast's default max_patches (llama4/image_processing_llama4.py): tiles per image at most
LLAMA4_MAX_TILES = 16
DEFAULT_IMAGE_SIDE = 448  # pixels, for encoders with a dynamic resolution when image_size is not given


@dataclass(frozen=True)
class VisionSpec:
    """A vision encoder and its projector into the text model (all widths in elements)."""

    kind: str  # "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "pixtral", "siglip", "llama4", "clip"
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
    projector: str = "qwen"  # "qwen", "qwen3", "mistral3", "gemma3", "llama4"
    projector_bias: bool = True
    projector_act: str = "gelu"
    max_tokens: int = 0  # Gemma-4: image tokens per image at most (vision_soft_tokens_per_image; 0 = no cap)
    standardize: bool = False  # Gemma-4: pooled features shifted and scaled (buffers)
    tile_size: int = 0  # Llama-4: an image is cut into tiles of this side (pixels), one encoder sequence each
    max_tiles: int = 0  # Llama-4: tiles of the canvas at most (the processor's max_patches), plus a global tile
    cls_token: bool = False  # a class token appended to every encoder sequence (Llama-4)
    adapter: tuple[int, ...] = ()  # Llama-4 vision adapter: (fc1 in, fc1 out, fc2 out) widths
    projector_in: int = 0  # Llama-4: the projector's input width (vision_output_dim)

    # -- shapes ----------------------------------------------------------------------------
    def default_image_size(self) -> tuple[int, int]:
        """The fixed input size (Llama-4: one tile), else 448 × 448 rounded to a multiple of patch·merge."""
        if self.fixed_image_size:
            return self.fixed_image_size, self.fixed_image_size
        if self.tile_size:
            return self.tile_size, self.tile_size
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
        if self.tile_size:
            return H, W  # any size: the processor resizes it onto a canvas of tiles
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

    def canvas(self, image_size) -> tuple[int, int]:
        """Tiles (rows, columns) of the canvas the processor puts an image on (Llama-4); (1, 1) otherwise.

        Llama4ImageProcessorFast (``get_best_fit``): candidate canvases r × c tiles, r·c ≤ max_tiles; an
        image fits a canvas scaled by min(canvas height / H, canvas width / W) (no distortion); the smallest
        scale ≥ 1 is chosen (the least upscaling), else the largest (the least downscaling), then the
        smallest area. The scales are float32 quotients, as the processor's torch tensors compute them.
        """
        H, W = self.check_image_size(image_size)
        if not self.tile_size:
            return 1, 1
        # candidate canvases in the processor's order (by tile count from max_tiles down, then by aspect ratio)
        by_ratio: dict[float, list[tuple[int, int]]] = {}
        for n in range(self.max_tiles, 0, -1):
            for r in sorted(d for d in range(1, n + 1) if n % d == 0):
                by_ratio.setdefault(r / (n // r), []).append((r, n // r))
        cands = [rc for group in by_ratio.values() for rc in group]
        t = np.float32(self.tile_size)
        rows = np.array([r for r, _ in cands], dtype=np.float32)
        cols = np.array([c for _, c in cands], dtype=np.float32)
        # scale that fits the image on each canvas without distortion: the limiting side's
        scales = np.minimum(rows * t / np.float32(H), cols * t / np.float32(W))
        up = scales[scales >= 1]
        best = up.min() if up.size else scales.max()
        pick = [i for i in range(len(cands)) if scales[i] == best]
        return cands[min(pick, key=lambda i: cands[i][0] * cands[i][1])]

    def sequences_per_image(self, image_size) -> int:
        """Encoder sequences one image becomes: its tiles, plus a global tile when there are several (Llama-4)."""
        r, c = self.canvas(image_size)
        return r * c + (1 if r * c > 1 else 0)

    def grid(self, image_size) -> tuple[int, int]:
        """Patches per side (rows, columns) of one encoder sequence: the image, or one tile (Llama-4)."""
        H, W = self.check_image_size(image_size)
        if self.tile_size:
            return self.tile_size // self.patch_size, self.tile_size // self.patch_size
        return H // self.patch_size, W // self.patch_size

    def seq_len(self, image_size) -> int:
        """Positions of one encoder sequence: its patches (+ the class token)."""
        gh, gw = self.grid(image_size)
        return gh * gw + (1 if self.cls_token else 0)

    def patches_per_image(self, image_size) -> int:
        """Encoder positions of one image: patches (+ a class token per tile), over all its sequences."""
        return self.sequences_per_image(image_size) * self.seq_len(image_size)

    def tokens_per_image(self, image_size) -> int:
        """Image tokens one image puts into the prompt: (H/patch)·(W/patch)/merge² (Gemma-3: fixed;
        Llama-4: (tile/patch/merge)² per tile, global tile included)."""
        if self.fixed_tokens:
            self.check_image_size(image_size)
            return self.fixed_tokens
        gh, gw = self.grid(image_size)
        return self.sequences_per_image(image_size) * (gh // self.merge) * (gw // self.merge)

    def attention_pairs(self, image_size, window: bool) -> float:
        """Query–key pairs per head of one image in one block (bidirectional attention).

        Full blocks: every position attends every position of its sequence (n²: an image; a Llama-4 tile
        with its class token). Qwen2.5-VL window blocks:
        the merged grid is cut into windows of window_size/(patch·merge) units per side (the last
        row/column of windows is what remains); each window attends itself: Σ (window patches)².
        """
        gh, gw = self.grid(image_size)
        if not window:
            return float(self.seq_len(image_size)) ** 2
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
            **({"tile_size": self.tile_size, "max_tiles": self.max_tiles} if self.tile_size else {}),
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
    if mt == "qwen2_vl":
        return _parse_qwen2_vl(raw, text_hidden)
    if mt in ("qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe"):
        base = {"qwen2_5_vl": "qwen2_5_vl", "qwen3_5": "qwen3_5", "qwen3_5_moe": "qwen3_5"}.get(mt, "qwen3_vl")
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
        # Qwen3.5's tower has no DeepStack mergers, whatever the file lists (transformers ignores the field)
        ds = [] if base == "qwen3_5" else (v.get("deepstack_visual_indexes") or [])
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
    if mt == "llama4":
        return _parse_llama4(raw, text_hidden)
    if mt == "llava":
        return _parse_llava(outer, raw, text_hidden)
    raise ValueError(
        f"config field 'model_type' = {mt!r} has a 'vision_config' this engine does not parse; supported "
        f"vision-language models: {', '.join(sorted(VL_FAMILIES))}"
    )


def _parse_qwen2_vl(raw: dict, text_hidden: int) -> VisionSpec:
    """Qwen2-VL's vision transformer (transformers 5.24 qwen2_vl/modeling_qwen2_vl.py): as Qwen2.5-VL's but
    LayerNorms, a plain fc1 / fc2 MLP of embed_dim·mlp_ratio (QuickGELU) and full attention in every block;
    the same patch merger (LayerNorm, m² patches concatenated, two linears)."""
    v = {**VISION_DEFAULTS["qwen2_vl"], **raw}
    w = "vision_config"
    h, heads = _int(v, "embed_dim", w), _int(v, "num_heads", w)
    if h % heads:
        raise ValueError(f"config field 'vision_config.embed_dim' = {h} is not divisible by num_heads = {heads}")
    ratio = v.get("mlp_ratio")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or int(h * ratio) < 1:
        raise ValueError(f"config field 'vision_config.mlp_ratio' must be a positive number, got {ratio!r}")
    out = _int(v, "hidden_size", w)
    if out != text_hidden:
        raise ValueError(
            f"config field 'vision_config.hidden_size' = {out} (the merger's output) must equal the text model's "
            f"hidden_size = {text_hidden}"
        )
    return VisionSpec(
        kind="qwen2_vl",
        depth=_int(v, "depth", w),
        hidden_size=h,
        intermediate_size=int(h * ratio),  # VisionMlp width: int(embed_dim · mlp_ratio)
        num_heads=heads,
        head_dim=h // heads,
        patch_size=_int(v, "patch_size", w),
        temporal_patch_size=_int(v, "temporal_patch_size", w),
        in_channels=_int({"in_channels": v.get("in_channels", v.get("in_chans", 3))}, "in_channels", w),
        merge=_int(v, "spatial_merge_size", w),
        out_hidden_size=out,
        norm="ln",
        mlp_gated=False,
        act=_act(v.get("hidden_act"), w),
        qkv_fused=True,
        qkv_bias=True,
        o_bias=True,
        mlp_bias=True,
        patch_bias=False,
        rope=True,
        projector="qwen",
    )


def _parse_llama4(raw: dict, text_hidden: int) -> VisionSpec:
    """Llama4VisionModel + Llama4MultiModalProjector (transformers 5.24 llama4/modeling_llama4.py)."""
    vt = raw.get("model_type", "llama4_vision_model")
    if vt != "llama4_vision_model":
        raise ValueError(
            f"config field 'vision_config.model_type' = {vt!r} is not supported; supported: 'llama4_vision_model'"
        )
    v = {**VISION_DEFAULTS["llama4"], **raw}
    w = "vision_config"
    h, heads = _int(v, "hidden_size", w), _int(v, "num_attention_heads", w)
    if h % heads:
        raise ValueError(f"config field 'vision_config.hidden_size' = {h} is not divisible by num_attention_heads")
    tile, patch = _int(v, "image_size", w), _int(v, "patch_size", w)
    if tile % patch:
        raise ValueError(
            f"config field 'vision_config.image_size' = {tile} (the tile side) must be a multiple of patch_size = {patch}"
        )
    ratio = v.get("pixel_shuffle_ratio")
    r = float(ratio) if isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and ratio > 0 else 0.0
    merge = round(1 / r) if r > 0 else 0
    side = tile // patch
    if merge < 1 or abs(merge * r - 1) > 1e-9 or side % merge:
        raise ValueError(
            f"config field 'vision_config.pixel_shuffle_ratio' = {ratio!r} must be 1/m for a whole m that divides "
            f"the {side} patches per tile side (e.g. 0.5)"
        )
    inter = _int(v, "intermediate_size", w)
    p_in, p_out = _int(v, "projector_input_dim", w), _int(v, "projector_output_dim", w)
    out_dim = _int(v, "vision_output_dim", w)
    # Llama4VisionMLP2: fc1 (intermediate_size → projector_input_dim) takes the pixel-shuffled patches
    # (hidden_size·m² wide), fc2 is projector_output_dim²; the projector takes vision_output_dim
    if inter != h * merge**2:
        raise ValueError(
            f"config field 'vision_config.intermediate_size' = {inter} must equal hidden_size/pixel_shuffle_ratio² = "
            f"{h * merge**2}: the vision adapter's fc1 takes the pixel-shuffled patches with that width"
        )
    if p_in != p_out or out_dim != p_out:
        raise ValueError(
            f"config fields 'vision_config.projector_input_dim' = {p_in}, 'projector_output_dim' = {p_out} and "
            f"'vision_output_dim' = {out_dim} must be equal (the adapter's fc2 and the projector take that width)"
        )
    return VisionSpec(
        kind="llama4",
        depth=_int(v, "num_hidden_layers", w),
        hidden_size=h,
        intermediate_size=inter,
        num_heads=heads,
        head_dim=h // heads,
        patch_size=patch,
        temporal_patch_size=1,
        in_channels=_int(v, "num_channels", w),
        merge=merge,
        out_hidden_size=text_hidden,
        norm="ln",
        mlp_gated=False,
        act="gelu",  # Llama4VisionMLP: nn.GELU() whatever hidden_act says
        qkv_fused=False,
        qkv_bias=True,
        o_bias=True,
        mlp_bias=True,
        patch_bias=False,
        rope=True,
        pos_rows=side * side + 1,  # positional_embedding_vlm: every patch and the class token
        pre_norm=True,
        post_norm=True,
        projector="llama4",
        projector_bias=False,
        tile_size=tile,
        max_tiles=LLAMA4_MAX_TILES,
        cls_token=True,
        adapter=(inter, p_in, p_out),
        projector_in=out_dim,
    )


def _parse_llava(outer: dict, raw: dict, text_hidden: int) -> VisionSpec:
    """LlavaForConditionalGeneration with a CLIP vision tower (transformers 5.24 llava/, clip/modeling_clip.py).

    CLIPVisionModel: patch convolution (no bias), class token, learned positions, pre-LayerNorm, every encoder
    layer (all run, though the features come from ``vision_feature_layer``, −2 by default), post-LayerNorm on
    the class token; strategy "default" drops the class token; the projector is linear_1, GELU, linear_2.
    """
    vt = raw.get("model_type", "clip_vision_model")
    if vt != "clip_vision_model":
        raise ValueError(
            f"config field 'vision_config.model_type' = {vt!r} is not supported for llava; supported: "
            "'clip_vision_model'"
        )
    v = {**VISION_DEFAULTS["clip"], **raw}
    w = "vision_config"
    h, heads = _int(v, "hidden_size", w), _int(v, "num_attention_heads", w)
    if h % heads:
        raise ValueError(f"config field 'vision_config.hidden_size' = {h} is not divisible by num_attention_heads")
    size, patch = _int(v, "image_size", w), _int(v, "patch_size", w)
    if size % patch:
        raise ValueError(f"config field 'vision_config.image_size' = {size} must be a multiple of patch_size = {patch}")
    depth = _int(v, "num_hidden_layers", w)
    layer = outer.get("vision_feature_layer", -2)
    layers = layer if isinstance(layer, list) else [layer]
    if not layers or not all(
        isinstance(i, int) and not isinstance(i, bool) and -depth - 1 <= i <= depth for i in layers
    ):
        raise ValueError(
            f"config field 'vision_feature_layer' = {layer!r} must be a hidden-state index in [-{depth + 1}, {depth}] "
            "or a list of them"
        )
    strategy = outer.get("vision_feature_select_strategy", "default")
    if strategy not in ("default", "full"):
        raise ValueError(
            f"config field 'vision_feature_select_strategy' = {strategy!r} is not supported; supported: 'default', 'full'"
        )
    side = size // patch
    return VisionSpec(
        kind="clip",
        depth=depth,
        hidden_size=h,
        intermediate_size=_int(v, "intermediate_size", w),
        num_heads=heads,
        head_dim=h // heads,
        patch_size=patch,
        temporal_patch_size=1,
        in_channels=_int(v, "num_channels", w),
        merge=1,
        out_hidden_size=text_hidden,
        norm="ln",
        mlp_gated=False,
        act=_act(v.get("hidden_act"), w),
        qkv_fused=False,
        qkv_bias=True,
        o_bias=True,
        mlp_bias=True,
        patch_bias=False,
        rope=False,
        pos_rows=side * side + 1,  # every patch and the class token
        pre_norm=True,
        post_norm=True,  # CLIPVisionTransformer.post_layernorm, on the class token (the pooled output)
        fixed_image_size=size,  # the processor resizes and center-crops every image to it
        fixed_tokens=side * side + (0 if strategy == "default" else 1),
        projector="llava",
        projector_bias=bool(outer.get("multimodal_projector_bias", True)),
        projector_act=_act(outer.get("projector_hidden_act", "gelu"), "config"),
        cls_token=True,
        projector_in=h * len(layers),  # the selected layers' hidden states, concatenated
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
    if mt == "llava" and not text["tie_word_embeddings"]:
        # LlavaConfig.__post_init__: a text config that ties its head ties the model's
        text["tie_word_embeddings"] = bool(cfg["text_config"].get("tie_word_embeddings", False))
    m = parse_text(text, name=name)
    spec = parse_vision(cfg, m.hidden_size)
    return replace(m, model_type=mt, vision=spec, raw=cfg)


# ----------------------------------------------------------------------------------------
# the encode pass


class EncoderBuilder(PassBuilder):
    """Operators of one encoder pass over ``images`` images of ``image_size`` per sequence, on one device."""

    def __init__(self, vision: VisionSpec, prec, *, batch, images: int, image_size, options=None, hardware=None):
        shim = types.SimpleNamespace(hidden_size=vision.hidden_size, norm=vision.norm)
        n = vision.seq_len(image_size)  # positions of one encoder sequence (an image, or a Llama-4 tile)
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
        seqs = vision.sequences_per_image(image_size)  # 1, or a Llama-4 image's tiles (+ its global tile)
        # encoder sequences on this device (data-parallel over EP ranks, like attention)
        self.B = batch * images * seqs / self.ep
        self.N = self.B * n  # positions on this device
        self.n = n
        self.Np = self.B * (n - (1 if vision.cls_token else 0))  # patches on this device (class tokens excluded)
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
        Np = self.Np
        # patch embedding: a stride = kernel convolution (Llama-4: unfold + linear) is a matmul of the flattened patches
        self.linear("patch_embed", Np, k_in, v.hidden_size, bias=v.patch_bias, weight_label="C·t·p²·hidden")
        if v.cls_token:
            # the learned class token appended to every sequence: a copy of the patch embeddings (torch.cat)
            self.elementwise(
                "class_embed", N * v.hidden_size, 0, weight_elems=v.hidden_size, what="append the class token"
            )
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
            # CLIP normalizes the pooled output only: the class token of every sequence
            self.norm("post_layernorm", self.B if v.kind == "clip" else N, v.hidden_size)
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
        elif v.projector == "llava":
            # LlavaMultiModalProjector on the selected hidden states (class token dropped by strategy "default")
            M = self.B * v.fixed_tokens
            self.linear("linear_1", M, v.projector_in, v.out_hidden_size, bias=v.projector_bias)
            self.elementwise("projector_act", M * v.out_hidden_size, ACT_FLOPS[v.projector_act], what="GELU")
            self.linear("linear_2", M, v.out_hidden_size, v.out_hidden_size, bias=v.projector_bias)
        elif v.projector == "llama4":
            # class token dropped; pixel shuffle: m×m patches → one token of hidden·m² features (two permute copies)
            M = Np / v.merge**2
            fc1_in, fc1_out, fc2_out = v.adapter
            self.elementwise(
                "pixel_shuffle", Np * v.hidden_size, 0, reads=2, writes=2, what="pixel shuffle (two permute copies)"
            )
            # vision adapter (Llama4VisionMLP2): fc1, GELU, fc2, GELU, no biases; then the projector linear_1
            self.linear("adapter_fc1", M, fc1_in, fc1_out)
            self.elementwise("adapter_act1", M * fc1_out, ACT_FLOPS["gelu"], what="GELU")
            self.linear("adapter_fc2", M, fc1_out, fc2_out)
            self.elementwise("adapter_act2", M * fc2_out, ACT_FLOPS["gelu"], what="GELU")
            self.linear("linear_1", M, v.projector_in, v.out_hidden_size, bias=v.projector_bias)
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
