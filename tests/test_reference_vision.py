"""Vision-language models: the encode phase, checked against ``transformers`` (code nobody here wrote).

Reference checks (marked ``reference``; skipped without torch/transformers):
- ``params_total`` (text model + vision encoder + projector) equals the parameter count of
  ``AutoModelForImageTextToText`` built on the meta device, exactly, for every VL catalog model;
- the encoder's matmul FLOPs for one image equal what ``FlopCounterMode`` counts for the model's own
  ``get_image_features`` (patch-embedding convolution, every block, mergers / projector). Gemma-3's
  SigLIP tower and Llama-4's vision model (+ its ``multi_modal_projector``) run on the meta device at
  full depth, Llama-4 on the tiles transformers' own processor code cuts the image into;
- Llama-4's tiles and image tokens per image equal what transformers' processor code gives:
  ``get_best_fit`` over ``find_supported_resolutions`` (compiled from the installed
  ``image_processing_llama4.py``, whose module imports torchvision, not installed here) and the
  ``<|patch|>`` tokens of ``Llama4Processor.replace_image_token``. Qwen's and Pixtral's image code turns grid sizes
  and window indices into Python lists, which meta tensors cannot give: there the encoder runs a real
  CPU forward (uninitialized weights, ``to_empty``) on configs with fewer blocks, and the count is
  scaled exactly per block: FLOPs are linear in the number of blocks of each kind (window / full,
  DeepStack mergers), so two or three small depths give the per-block counts and the constant part,
  and the full-depth count is their exact linear combination.

Engine checks (no torch): image tokens per image, the encode phase in ``to_dict()`` only with images,
TTFT = encode + prefill, the prompt's KV cache holding the image tokens, vision weights resident
without images, and clear ``ValueError``s.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import llmroof_widgets as lr
from llmroof_widgets.engine.models import MODELS_DIR, _catalog_index, load_model

HW = lr.Hardware(name="reference", memory_bytes=1e12, memory_bandwidth=1e12, peak_flops={"fp16": 1e15})
VL_KEYS = sorted(
    k for k, e in _catalog_index().items() if "vision_config" in json.loads((MODELS_DIR / e["file"]).read_text())
)
# one image per model: Qwen2.5-VL at 280×168 leaves partial windows (a 10 × 6 merged grid, windows of 4)
# Llama-4 at 800×600: a 3 × 2 canvas of 336-pixel tiles + the global tile
IMAGE = {
    "qwen2_5_vl": (280, 168),
    "qwen3_vl": (256, 320),
    "qwen3_vl_moe": (256, 320),
    "qwen3_5_moe": (256, 320),
    "mistral3": (336, 252),
    "gemma4": (96, 144),  # 6 × 9 patches of 16, 2 × 3 image tokens (pooling 3)
    "llama4": (800, 600),
    "llava": (336, 336),
}


def _cfg(key: str) -> dict:
    return json.loads((MODELS_DIR / _catalog_index()[key]["file"]).read_text())


# ---------------------------------------------------------------------------------------------
# engine


def test_vl_catalog_has_the_models():
    assert {"Qwen2.5-VL-7B-Instruct", "Qwen3-VL-8B-Instruct", "Qwen3-VL-30B-A3B-Instruct"} <= set(VL_KEYS)
    assert {"Mistral-Small-3.1-24B-Instruct-2503", "gemma-3-4b-it", "gemma-3-12b-it", "gemma-3-27b-it"} <= set(VL_KEYS)
    assert {"Llama-4-Scout-17B-16E", "Llama-4-Maverick-17B-128E", "llava-1.5-7b-hf"} <= set(VL_KEYS)
    for k in VL_KEYS:
        assert load_model(k).vision is not None, k


@pytest.mark.parametrize(
    "key,size,tokens",
    [
        ("Qwen2.5-VL-7B-Instruct", (448, 448), (448 // 14) ** 2 // 4),  # 32×32 patches, merge 2 → 256
        ("Qwen2.5-VL-7B-Instruct", (364, 252), 26 * 18 // 4),
        ("Qwen3-VL-8B-Instruct", (512, 256), (512 // 16) * (256 // 16) // 4),
        ("Mistral-Small-3.1-24B-Instruct-2503", (1540, 1540), (1540 // 14) ** 2 // 4),
        ("gemma-3-4b-it", None, 256),
        ("Llama-4-Scout-17B-16E", None, 144),  # one 336-pixel tile: 24×24 patches, pixel shuffle 2×2 → 144
        ("Llama-4-Scout-17B-16E", (336, 336), 144),
        # 800×600: scales min(336r/800, 336c/600) ≥ 1 are least for 3×2 and 4×2 (1.12); 3×2 has the smaller
        # area → 6 tiles + the global tile
        ("Llama-4-Scout-17B-16E", (800, 600), 7 * 144),
        ("Llama-4-Maverick-17B-128E", (100, 2000), 7 * 144),  # 1×6 (scale 0.336 is the largest below 1) + global
        ("Llama-4-Scout-17B-16E", (5000, 5000), 17 * 144),  # 4×4, downscaled, + global
        ("llava-1.5-7b-hf", None, 24 * 24),  # CLIP at 336 px: 24×24 patches, the class token dropped ("default")
    ],
)
def test_tokens_per_image(key, size, tokens):
    v = load_model(key).vision
    assert v.tokens_per_image(size) == tokens


def test_encode_phase_and_prompt():
    key = "Qwen2.5-VL-7B-Instruct"
    plain = lr.analyze(key, HW, prompt_len=100, gen_len=4)
    r = lr.analyze(key, HW, prompt_len=100, gen_len=4, images=2, image_size=(448, 448))
    d, d0 = r.to_dict(), plain.to_dict()
    assert "encode" in d and "encode" not in d0
    assert d["settings"]["image_tokens"] == 2 * 256 and d0["settings"]["image_tokens"] == 0
    # image tokens join the prompt: the prefill runs 100 + 512 tokens; the KV cache holds them
    assert d["prefill"]["tokens"] == 612 and d["settings"]["prompt_len"] == 100
    text_only = lr.analyze(key, HW, prompt_len=612, gen_len=4)
    assert r.memory["kv_cache_prompt_bytes"] == text_only.memory["kv_cache_prompt_bytes"]
    assert r.prefill.time_s == pytest.approx(text_only.prefill.time_s, rel=1e-12)
    # TTFT = encode + prefill
    assert r.generation["ttft_s"] == pytest.approx(r.encode.time_s + r.prefill.time_s, rel=1e-12)
    assert r.generation["encode_s"] == r.encode.time_s > 0
    # vision weights resident with or without images; parameters counted either way
    assert plain.memory["weights_bytes"] == r.memory["weights_bytes"]
    assert plain.memory["vision_weights_bytes"] == pytest.approx(2 * 676_550_144)  # 16-bit weights
    assert plain.params_total == r.params_total == 8_292_166_656
    # the encode phase's totals are the sums of its operators; names of every block kind appear
    e = d["encode"]
    assert e["matmul_flops"] == pytest.approx(sum(o["count"] * o["matmul_flops"] for o in e["ops"]))
    assert {"vision", "vision window", "vision full"} <= {o["layer_type"] for o in e["ops"]}
    assert np.isfinite(e["time_s"]) and e["time_s"] > 0


def test_encode_scales_with_batch_and_images():
    key = "gemma-3-4b-it"
    one = lr.analyze(key, HW, prompt_len=64, gen_len=2, images=1).encode
    four = lr.analyze(key, HW, batch_size=2, prompt_len=64, gen_len=2, images=2).encode
    assert four.matmul_flops == pytest.approx(4 * one.matmul_flops, rel=1e-12)


def test_llama4_encode_phase():
    key = "Llama-4-Scout-17B-16E"
    m = load_model(key)
    v = m.vision
    assert m.model_type == "llama4" and v.kind == "llama4"
    assert (v.depth, v.hidden_size, v.num_heads, v.head_dim, v.tile_size, v.merge) == (34, 1408, 16, 88, 336, 2)
    # the text model is the one the text-only entry had: 48 layers, chunked attention on RoPE layers
    assert m.num_layers == 48 and m.hidden_size == 5120
    plain = lr.analyze(key, HW, prompt_len=100, gen_len=4)
    r = lr.analyze(key, HW, prompt_len=100, gen_len=4, images=2, image_size=(800, 600))
    d = r.to_dict()
    assert d["settings"]["image_tokens"] == 2 * 7 * 144 and d["prefill"]["tokens"] == 100 + 2016
    # the encoder runs 2 images × 7 tiles, each 576 patches + 1 class token
    rows = {o["name"]: o for o in d["encode"]["ops"]}
    h, n, seqs = 1408, 577, 14
    assert rows["patch_embed"]["matmul_flops"] == 2 * seqs * 576 * (3 * 14 * 14) * h
    assert rows["q_proj"]["count"] == 34 and rows["q_proj"]["matmul_flops"] == 2 * seqs * n * h * h
    assert rows["attn_score"]["matmul_flops"] == 2 * seqs * 16 * 88 * n * n
    M = seqs * 144  # tokens after the pixel shuffle
    assert rows["adapter_fc1"]["matmul_flops"] == 2 * M * 5632 * 4096
    assert rows["adapter_fc2"]["matmul_flops"] == 2 * M * 4096 * 4096
    assert rows["linear_1"]["matmul_flops"] == 2 * M * 4096 * 5120
    # the class token: a copy of the positions, no FLOPs, 1408 parameters; the pixel shuffle: two permute copies
    assert rows["class_embed"]["flops"] == 0 and rows["class_embed"]["params"] == h
    assert rows["pixel_shuffle"]["flops"] == 0 and rows["pixel_shuffle"]["bytes"] == 4 * seqs * 576 * h * 2
    assert r.generation["ttft_s"] == pytest.approx(r.encode.time_s + r.prefill.time_s, rel=1e-12)
    text_only = lr.analyze(key, HW, prompt_len=2116, gen_len=4)
    assert r.memory["kv_cache_prompt_bytes"] == text_only.memory["kv_cache_prompt_bytes"]
    # vision weights resident with or without images (16-bit): 871,932,416 parameters, derived in the docstring
    # of test_llama4_vision_params_by_hand
    assert plain.memory["vision_weights_bytes"] == r.memory["vision_weights_bytes"] == 2 * 871_932_416
    assert plain.params_total == r.params_total
    # the encode phase's context: one tile's 577 positions
    assert r.encode.context == n


def test_llama4_vision_params_by_hand():
    """Per layer: q, k, v, o (1408² + 1408 each), fc1 / fc2 (1408·5632 + 5632, 5632·1408 + 1408), two
    LayerNorms (2·1408 each): 23,807,872 × 34 = 809,467,648; class token 1408, positions 577·1408 =
    812,416, patch linear 588·1408 = 827,904, ln_pre / ln_post 2 × 2816: 1,647,360; adapter 5632·4096 +
    4096² = 39,845,888; projector 4096·5120 = 20,971,520. Total 871,932,416."""
    from llmroof_widgets.engine.vision import vision_params

    h, inter = 1408, 5632
    layer = 4 * (h * h + h) + (h * inter + inter) + (inter * h + h) + 2 * 2 * h
    fixed = h + 577 * h + 588 * h + 2 * 2 * h
    want = 34 * layer + fixed + inter * 4096 + 4096 * 4096 + 4096 * 5120
    assert want == 871_932_416
    assert vision_params(load_model("Llama-4-Scout-17B-16E").vision) == want
    assert vision_params(load_model("Llama-4-Maverick-17B-128E").vision) == want


def test_llava_encode_phase():
    key = "llava-1.5-7b-hf"
    m = load_model("llava-hf/llava-1.5-7b-hf")
    assert m.model_type == "llava" and m.vision.kind == "clip" and m.num_layers == 32 and m.hidden_size == 4096
    r = lr.analyze(key, HW, prompt_len=50, gen_len=2, images=1)
    assert r.settings["image_tokens"] == 576 and r.to_dict()["prefill"]["tokens"] == 626
    rows = {o.name: o for o in r.encode.rows}
    # 577 positions (576 patches + the class token), all 24 layers run; the projector sees the 576 patches
    assert rows["q_proj"].count == 24 and rows["q_proj"].matmul_flops == 2 * 577 * 1024 * 1024
    assert rows["attn_score"].matmul_flops == 2 * 16 * 64 * 577 * 577
    assert rows["linear_1"].matmul_flops == 2 * 576 * 1024 * 4096
    assert rows["linear_2"].matmul_flops == 2 * 576 * 4096 * 4096
    assert rows["post_layernorm"].params == 2 * 1024  # on the class token only
    with pytest.raises(ValueError, match="image_size.*336"):
        lr.analyze(key, HW, images=1, image_size=(448, 448))
    bad = _cfg(key)
    bad["vision_feature_select_strategy"] = "patch"
    with pytest.raises(ValueError, match="vision_feature_select_strategy"):
        load_model(bad)
    bad = _cfg(key)
    bad["vision_config"]["model_type"] = "siglip_vision_model"
    with pytest.raises(ValueError, match="clip_vision_model"):
        load_model(bad)
    full = _cfg(key)
    full["vision_feature_select_strategy"] = "full"
    full["vision_feature_layer"] = [-2, -5]
    v = load_model(full).vision
    assert v.tokens_per_image(None) == 577 and v.projector_in == 2 * 1024


# Qwen2-VL (no catalog entry: no verbatim config.json was found): a config of Qwen2-VL-7B-Instruct's shape, as
# transformers prints that model (28 layers of 3584, 4 KV heads, MLP 18944, vocab 152064; vision 32 blocks of
# 1280, MLP 5120, merger to 3584), in the hub layout (text fields at the top level)
QWEN2_VL = dict(
    model_type="qwen2_vl",
    hidden_size=3584,
    intermediate_size=18944,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    vocab_size=152064,
    max_position_embeddings=32768,
    rms_norm_eps=1e-6,
    rope_theta=1e6,
    tie_word_embeddings=False,
    rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]},
    vision_config=dict(
        depth=32,
        embed_dim=1280,
        mlp_ratio=4,
        num_heads=16,
        in_chans=3,
        hidden_size=3584,
        patch_size=14,
        spatial_merge_size=2,
        spatial_patch_size=14,
        temporal_patch_size=2,
    ),
)


def test_qwen2_vl_encode_phase():
    m = load_model(QWEN2_VL)
    v = m.vision
    assert m.model_type == "qwen2_vl" and v.kind == "qwen2_vl" and v.norm == "ln" and not v.window_px
    assert (v.hidden_size, v.intermediate_size, v.out_hidden_size) == (1280, 5120, 3584)
    r = lr.analyze(m, HW, prompt_len=10, gen_len=2, images=1, image_size=(280, 168))
    assert r.settings["image_tokens"] == 20 * 12 // 4
    rows = {o.name: o for o in r.encode.rows}
    n = 20 * 12  # patches: full attention over the image in every block
    assert rows["qkv"].count == 32 and rows["attn_score"].matmul_flops == 2 * 16 * 80 * n * n
    assert rows["fc1"].matmul_flops == 2 * n * 1280 * 5120 and rows["act"].flops == 6 * n * 5120  # QuickGELU
    assert rows["merger_fc2"].matmul_flops == 2 * (n // 4) * 5120 * 3584
    bad = copy.deepcopy(QWEN2_VL)
    bad["vision_config"]["hidden_size"] = 1280
    with pytest.raises(ValueError, match="vision_config.hidden_size"):
        load_model(bad)


@pytest.mark.reference
def test_qwen2_vl_params_and_encoder_flops_exact():
    model = _build(QWEN2_VL, "meta")
    assert lr.analyze(QWEN2_VL, HW, prompt_len=16, gen_len=2).params_total == sum(p.numel() for p in model.parameters())
    del model
    # c0 + depth·blk from CPU forwards at depths 1 and 2 (the image code needs real grid sizes)
    size = (280, 168)
    a = _count_image_features(_with_vision(QWEN2_VL, depth=1), size)
    b = _count_image_features(_with_vision(QWEN2_VL, depth=2), size)
    want = a + (32 - 1) * (b - a)
    got = lr.analyze(QWEN2_VL, HW, prompt_len=16, gen_len=2, images=1, image_size=size).encode.matmul_flops
    assert got == want


def test_window_attention_pairs_exact():
    v = load_model("Qwen2.5-VL-7B-Instruct").vision
    # 364×252 → 26×18 patches, 13×9 merged units; windows of 4 units: rows 4,4,4,1 × cols 4,4,1
    sides_h, sides_w = [4, 4, 4, 1], [4, 4, 1]
    want = sum((a * b * 4) ** 2 for a in sides_h for b in sides_w)
    assert v.attention_pairs((364, 252), window=True) == want
    assert v.attention_pairs((364, 252), window=False) == (26 * 18) ** 2


def test_techniques_apply_to_the_encoder():
    key = "Qwen3-VL-8B-Instruct"
    base = lr.analyze(key, HW, prompt_len=64, gen_len=2, images=1)
    flash = lr.analyze(key, HW, prompt_len=64, gen_len=2, images=1, flash_attention="ideal")
    assert flash.encode.bytes < base.encode.bytes
    assert flash.encode.matmul_flops == pytest.approx(base.encode.matmul_flops)
    hw = lr.load_hardware("h100-sxm")
    tp = lr.analyze(key, hw, prompt_len=64, gen_len=2, images=1, tp=2)
    # per device: sharded encoder matmuls (patch embedding and mergers replicated) + all-reduces
    assert tp.encode.matmul_flops < base.encode.matmul_flops
    assert any(r.kind == "communication" for r in tp.encode.rows)
    assert tp.params_total == base.params_total


def test_bad_inputs():
    with pytest.raises(ValueError, match="images"):
        lr.analyze("Llama-3.1-8B", HW, images=1)
    with pytest.raises(ValueError, match="images"):
        lr.analyze("gemma-3-4b-it", HW, images=-1)
    with pytest.raises(ValueError, match="image_size.*multiples of .*28"):
        lr.analyze("Qwen2.5-VL-7B-Instruct", HW, images=1, image_size=(450, 448))
    with pytest.raises(ValueError, match="image_size.*896"):
        lr.analyze("gemma-3-4b-it", HW, images=1, image_size=(448, 448))
    with pytest.raises(ValueError, match="image_size"):
        lr.analyze("gemma-3-4b-it", HW, images=1, image_size="big")
    with pytest.raises(ValueError, match="tp = 32 must divide the vision encoder's heads"):
        lr.analyze("Mistral-Small-3.1-24B-Instruct-2503", lr.load_hardware("h100-sxm"), tp=32)  # 16 vision heads
    bad = _cfg("Qwen2.5-VL-7B-Instruct")
    bad["vision_config"]["out_hidden_size"] = 1000
    with pytest.raises(ValueError, match="out_hidden_size"):
        load_model(bad)
    bad = _cfg("Llama-4-Scout-17B-16E")
    bad["vision_config"]["pixel_shuffle_ratio"] = 0.3
    with pytest.raises(ValueError, match="pixel_shuffle_ratio"):
        load_model(bad)
    bad = _cfg("Llama-4-Scout-17B-16E")
    bad["vision_config"]["intermediate_size"] = 4096
    with pytest.raises(ValueError, match="intermediate_size.*5632"):
        load_model(bad)
    bad = _cfg("Llama-4-Scout-17B-16E")
    bad["vision_config"]["vision_output_dim"] = 7680
    with pytest.raises(ValueError, match="vision_output_dim"):
        load_model(bad)
    with pytest.raises(ValueError, match="image_size"):
        lr.analyze("Llama-4-Scout-17B-16E", HW, images=1, image_size=(0, 336))
    bad = _cfg("gemma-3-4b-it")
    bad["model_type"] = "llava_next"
    with pytest.raises(ValueError, match="vision_config"):
        load_model(bad)


def test_sweep_matches_analyze_for_vl():
    df = lr.sweep("gemma-3-4b-it", HW, prompt_len=[64, 128], gen_len=4, images=[0, 1])
    for _, row in df.iterrows():
        r = lr.analyze("gemma-3-4b-it", HW, prompt_len=int(row.prompt_len), gen_len=4, images=int(row.images))
        assert row.ttft_s == pytest.approx(r.generation["ttft_s"], rel=1e-9)
        assert row.weights_bytes == pytest.approx(r.memory["weights_bytes"], rel=1e-12)


def test_views_show_the_encode_phase():
    from llmroof_widgets.widgets._data import ViewData

    with_images = ViewData.build(lr.analyze("Qwen2.5-VL-7B-Instruct", HW, images=1), "both")
    assert list(with_images.totals) == ["encode", "prefill", "decode"]
    enc = [r for r in with_images.rows if r["phase"] == "encode"]
    assert enc and all(r["dot"] is not None for r in enc if r["flops"])
    without = ViewData.build(lr.analyze("Qwen2.5-VL-7B-Instruct", HW), "both")
    assert list(without.totals) == ["prefill", "decode"]


# ---------------------------------------------------------------------------------------------
# reference: transformers


def _torch():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    return torch, transformers


def _build(cfg: dict, device: str):
    torch, transformers = _torch()
    config = transformers.AutoConfig.for_model(**cfg)
    with torch.device(device):
        # float32: CPU matmuls in bfloat16 (the configs' dtype) are emulated and slow
        model = transformers.AutoModelForImageTextToText.from_config(
            config, attn_implementation="eager", dtype=torch.float32
        )
    return model.eval()


@pytest.mark.reference
@pytest.mark.parametrize("key", VL_KEYS)
def test_params_exact(key):
    torch, _ = _torch()
    model = _build(_cfg(key), "meta")
    want = sum(p.numel() for p in model.parameters())
    assert lr.analyze(key, HW, prompt_len=16, gen_len=2).params_total == want, key


_LLAMA4_PROCESSOR: dict = {}


def _llama4_processor():
    """transformers' own Llama-4 tiling functions, compiled from the installed image_processing_llama4.py.

    That module imports torchvision at its top (not installed here); ``get_factors``,
    ``find_supported_resolutions`` and ``get_best_fit`` use only torch, so their source is taken from the
    file unchanged and run with the names they use."""
    if not _LLAMA4_PROCESSOR:
        import ast
        import functools
        import math
        from collections import defaultdict

        import transformers.models.llama4 as pkg
        from transformers.image_utils import SizeDict

        torch, _ = _torch()
        path = __import__("pathlib").Path(pkg.__file__).parent / "image_processing_llama4.py"
        tree = ast.parse(path.read_text())
        wanted = {"get_factors", "find_supported_resolutions", "get_best_fit"}
        funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
        assert {f.name for f in funcs} == wanted
        ns = {"torch": torch, "math": math, "defaultdict": defaultdict, "lru_cache": functools.lru_cache}
        ns["SizeDict"] = SizeDict
        exec(compile(ast.Module(body=funcs, type_ignores=[]), str(path), "exec"), ns)
        _LLAMA4_PROCESSOR.update(ns)
    return _LLAMA4_PROCESSOR


def _llama4_reference_tiles(cfg: dict, size) -> tuple[tuple[int, int], int, int]:
    """(canvas tiles (rows, cols), encoder tiles, image tokens) of one H × W image, from transformers' code:
    the image processor's canvas (default max_patches 16, resize_to_max_canvas off) and a global tile when
    the canvas has several, and the ``<|patch|>`` tokens ``Llama4Processor.replace_image_token`` writes
    (patch_size 14 and downsample_ratio = round(1 / pixel_shuffle_ratio²), as Llama4Processor.__init__ sets)."""
    torch, _ = _torch()
    from transformers.models.llama4.processing_llama4 import Llama4Processor

    fn = _llama4_processor()
    vc = cfg["vision_config"]
    tile = vc["image_size"]
    res = torch.tensor(fn["find_supported_resolutions"](16, fn["SizeDict"](height=tile, width=tile)))
    canvas = fn["get_best_fit"](tuple(size), res, resize_to_max_canvas=False)
    r, c = int(canvas[0]) // tile, int(canvas[1]) // tile
    tiles = r * c + (1 if r * c > 1 else 0)
    proc = Llama4Processor.__new__(Llama4Processor)  # no tokenizer needed for the prompt string
    proc.patch_size = 14
    proc.downsample_ratio = int(round(1.0 / (vc["pixel_shuffle_ratio"] ** 2)))
    text = proc.replace_image_token({"pixel_values": [torch.zeros(tiles, 3, tile, tile)], "aspect_ratios": [(r, c)]}, 0)
    return (r, c), tiles, text.count("<|patch|>")


@pytest.mark.reference
def test_llama4_tiles_match_the_processor():
    cfg = _cfg("Llama-4-Scout-17B-16E")
    v = load_model(cfg).vision
    rng = np.random.default_rng(0)
    sizes = [(336, 336), (800, 600), (100, 2000), (5000, 5000), (1, 1), (337, 336), (672, 1344), (1080, 1920)]
    sizes += [tuple(int(x) for x in rng.integers(1, 4000, 2)) for _ in range(150)]
    for size in sizes:
        canvas, tiles, tokens = _llama4_reference_tiles(cfg, size)
        assert (v.canvas(size), v.sequences_per_image(size), v.tokens_per_image(size)) == (canvas, tiles, tokens), size


def _count_image_features(cfg: dict, size) -> int:
    """FlopCounterMode's count of ``get_image_features`` for one image (vision tower + projector)."""
    torch, _ = _torch()
    from torch.utils.flop_counter import FlopCounterMode

    cfg = copy.deepcopy(cfg)
    mt = cfg["model_type"]
    vc = cfg["vision_config"]
    if mt == "llama4":
        # the whole vision model and the projector on meta at full depth (text model cut to one layer: not run
        # here), over the tiles transformers' processor code cuts the image into
        cfg["text_config"]["num_hidden_layers"] = 1
        model = _build(cfg, "meta")
        _, tiles, _ = _llama4_reference_tiles(cfg, size)
        tile = vc["image_size"]
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            pix = torch.zeros(tiles, 3, tile, tile, device="meta")
            feats = model.get_image_features(pixel_values=pix, return_dict=True).last_hidden_state
            model.multi_modal_projector(feats.view(-1, feats.size(-1)))  # as Llama4ForConditionalGeneration.forward
        return int(fc.get_total_flops())
    if mt in ("gemma3", "llava"):
        device = "meta"  # SigLIP and CLIP run on meta at full depth
        model = _build(cfg, device)
    else:
        # text model cut to one layer (it does not run here); the vision modules made real on the CPU
        (cfg["text_config"] if "text_config" in cfg else cfg)["num_hidden_layers"] = 1
        if "layer_types" in cfg.get("text_config", {}):  # Gemma-4 lists one type per layer
            cfg["text_config"]["layer_types"] = ["full_attention"]
        device = "cpu"
        model = _build(cfg, "meta")
        for name in ("visual", "vision_tower", "multi_modal_projector", "embed_vision"):
            mod = getattr(model.model, name, None)
            if mod is not None:
                mod.to_empty(device="cpu")
                for t in [*mod.parameters(), *mod.buffers()]:
                    t.data.zero_()  # uninitialized memory may hold denormals, which make CPU math crawl
        if mt == "gemma4":  # its axial rotary table is a non-persistent buffer: computed again
            rot = model.model.vision_tower.encoder.rotary_emb
            rot.inv_freq.data.copy_(rot.compute_axial_rope_parameters(rot.config)[0])
    H, W = size
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        if mt.startswith("qwen"):
            p, t = vc["patch_size"], vc.get("temporal_patch_size", 2)
            gh, gw = H // p, W // p
            pix = torch.zeros(gh * gw, 3 * t * p * p)
            model.model.get_image_features(pixel_values=pix, image_grid_thw=torch.tensor([[1, gh, gw]]))
        elif mt == "mistral3":
            model.model.get_image_features(pixel_values=torch.zeros(1, 3, H, W), image_sizes=torch.tensor([[H, W]]))
        elif mt == "gemma4":  # patches flattened by the processor, with their (x, y) grid positions
            p = vc["patch_size"]
            gh, gw = H // p, W // p
            pos = torch.tensor([[[x, y] for y in range(gh) for x in range(gw)]])
            model.model.get_image_features(pixel_values=torch.zeros(1, gh * gw, 3 * p * p), image_position_ids=pos)
        elif mt == "llava":
            model.model.get_image_features(
                pixel_values=torch.zeros(1, 3, H, W, device=device),
                vision_feature_layer=cfg.get("vision_feature_layer", -2),
                vision_feature_select_strategy=cfg.get("vision_feature_select_strategy", "default"),
            )
        else:
            model.model.get_image_features(pixel_values=torch.zeros(1, 3, H, W, device=device))
    return int(fc.get_total_flops())


def _with_vision(cfg: dict, **fields) -> dict:
    out = copy.deepcopy(cfg)
    out["vision_config"].update(fields)
    return out


def _reference_encoder_flops(key: str, size) -> float:
    """Full-depth encoder matmul FLOPs from counts at small depths (exact: linear in the block counts)."""
    cfg = _cfg(key)
    mt = cfg["model_type"]
    vc = cfg["vision_config"]
    if mt in ("gemma3", "llama4", "llava"):
        return _count_image_features(cfg, size)
    if mt == "qwen2_5_vl":
        # c0 + n_window·w + n_full·f: (1 window, 1 full), (2, 1), (1, 2)
        a = _count_image_features(_with_vision(cfg, depth=2, fullatt_block_indexes=[1]), size)
        b = _count_image_features(_with_vision(cfg, depth=3, fullatt_block_indexes=[1]), size)
        c = _count_image_features(_with_vision(cfg, depth=3, fullatt_block_indexes=[1, 2]), size)
        w, f = b - a, c - a
        c0 = a - w - f
        n_full = len([i for i in vc["fullatt_block_indexes"] if i < vc["depth"]])
        return c0 + (vc["depth"] - n_full) * w + n_full * f
    if mt in ("qwen3_vl", "qwen3_vl_moe"):
        # c0 + depth·blk + n_deepstack·ds: (1 block, 1 merger), (2, 1), (2, 2)
        a = _count_image_features(_with_vision(cfg, depth=1, deepstack_visual_indexes=[0]), size)
        b = _count_image_features(_with_vision(cfg, depth=2, deepstack_visual_indexes=[0]), size)
        c = _count_image_features(_with_vision(cfg, depth=2, deepstack_visual_indexes=[0, 1]), size)
        blk, ds = b - a, c - b
        c0 = a - blk - ds
        return c0 + vc["depth"] * blk + len(vc["deepstack_visual_indexes"]) * ds
    if mt in ("qwen3_5", "qwen3_5_moe"):
        # Qwen3.5's tower is Qwen3-VL's without DeepStack mergers: c0 + depth·blk
        a = _count_image_features(_with_vision(cfg, depth=1), size)
        b = _count_image_features(_with_vision(cfg, depth=2), size)
        return a + (vc["depth"] - 1) * (b - a)
    if mt == "gemma4":
        # c0 + layers·blk; transformers' pooler averages k × k patches with a one-hot matrix product
        # (2·tokens·patches·hidden FLOPs) where serving engines sum the patches (no matmul): the engine counts
        # that, so the surplus is taken off the reference
        a = _count_image_features(_with_vision(cfg, num_hidden_layers=1), size)
        b = _count_image_features(_with_vision(cfg, num_hidden_layers=2), size)
        n = (size[0] // vc["patch_size"]) * (size[1] // vc["patch_size"])
        pool_matmul = 2 * (n // vc["pooling_kernel_size"] ** 2) * n * vc["hidden_size"]
        return a + (vc["num_hidden_layers"] - 1) * (b - a) - pool_matmul
    # pixtral: c0 + layers·blk
    a = _count_image_features(_with_vision(cfg, num_hidden_layers=1), size)
    b = _count_image_features(_with_vision(cfg, num_hidden_layers=2), size)
    return a + (vc["num_hidden_layers"] - 1) * (b - a)


REF_KEYS = [
    "Qwen2.5-VL-7B-Instruct",
    "Qwen3-VL-8B-Instruct",
    "Qwen3.5-35B-A3B",
    "Mistral-Small-3.1-24B-Instruct-2503",
    "gemma-3-4b-it",
    "gemma-4-31B-it",
    "Llama-4-Scout-17B-16E",
    "llava-1.5-7b-hf",
]


@pytest.mark.reference
@pytest.mark.parametrize("key", REF_KEYS)
def test_encoder_matmul_flops_one_image(key):
    mt = _cfg(key)["model_type"]
    size = IMAGE.get(mt)
    want = _reference_encoder_flops(key, size or (896, 896))
    r = lr.analyze(key, HW, prompt_len=16, gen_len=2, images=1, image_size=size)
    got = r.encode.matmul_flops
    print(f"{key}: engine {got:.10g} vs FlopCounterMode {want:.10g} ({got / want - 1:+.2e})")
    assert got == pytest.approx(want, rel=5e-3), f"{key}: engine {got:.6g} vs FlopCounterMode {want:.6g}"


# ---------------------------------------------------------------------------------------------
# property: random encoders give finite, consistent results or a ValueError

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def _vl_case(draw):
    kind = draw(
        st.sampled_from(["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "mistral3", "gemma3", "llama4", "llava", "gemma4"])
    )
    if kind == "qwen2_vl":
        cfg = copy.deepcopy(QWEN2_VL)
        vc = cfg["vision_config"]
        heads = draw(st.sampled_from([1, 2, 4, 16]))
        vc["num_heads"], vc["embed_dim"] = heads, heads * draw(st.sampled_from([8, 16, 64]))
        vc["mlp_ratio"] = draw(st.sampled_from([1, 2.5, 4]))
        vc["depth"] = draw(st.integers(1, 40))
        vc["patch_size"] = patch = draw(st.sampled_from([2, 7, 14, 16]))
        vc["spatial_merge_size"] = merge = draw(st.sampled_from([1, 2, 3]))
        side = patch * merge
        size = (side * draw(st.integers(1, 12)), side * draw(st.integers(1, 12)) + draw(st.sampled_from([0, 0, 1])))
        return cfg, size, draw(st.integers(0, 3)), draw(st.integers(1, 8))
    cfg = _cfg(
        {
            "qwen2_5_vl": "Qwen2.5-VL-7B-Instruct",
            "qwen3_vl": "Qwen3-VL-8B-Instruct",
            "mistral3": "Mistral-Small-3.1-24B-Instruct-2503",
            "gemma3": "gemma-3-4b-it",
            "gemma4": "gemma-4-31B-it",
            "llama4": "Llama-4-Scout-17B-16E",
            "llava": "llava-1.5-7b-hf",
        }[kind]
    )
    vc = cfg["vision_config"]
    heads = draw(st.sampled_from([1, 2, 4, 16]))
    vc["hidden_size"] = heads * draw(st.sampled_from([8, 16, 64]))
    vc["intermediate_size"] = draw(st.integers(1, 512))
    patch = draw(st.sampled_from([2, 7, 14, 16]))
    vc["patch_size"] = patch
    if kind.startswith("qwen"):
        vc["num_heads"] = heads
        vc["depth"] = draw(st.integers(1, 40))
        merge = draw(st.sampled_from([1, 2, 3]))
        vc["spatial_merge_size"] = merge
        if kind == "qwen2_5_vl":
            vc["window_size"] = patch * merge * draw(st.integers(1, 6))
            vc["fullatt_block_indexes"] = draw(st.lists(st.integers(0, 45), max_size=5))
        else:
            vc["deepstack_visual_indexes"] = draw(st.lists(st.integers(0, 40), max_size=4))
    else:
        vc["num_attention_heads"] = heads
        vc["num_hidden_layers"] = draw(st.integers(1, 40))
        if kind == "mistral3":
            vc["head_dim"] = vc["hidden_size"] // heads
            merge = cfg["spatial_merge_size"] = draw(st.sampled_from([1, 2, 3]))
        elif kind == "gemma4":
            vc["num_key_value_heads"] = heads
            vc["head_dim"] = draw(st.sampled_from([8, 16, 72]))
            merge = vc["pooling_kernel_size"] = draw(st.sampled_from([1, 2, 3]))
            cfg["vision_soft_tokens_per_image"] = draw(st.integers(1, 300))
        elif kind == "llama4":
            merge = draw(st.sampled_from([1, 2, 3]))
            vc["pixel_shuffle_ratio"] = 1 / merge
            vc["image_size"] = patch * merge * draw(st.integers(1, 8))  # the tile side
            # the adapter's fc1 takes hidden·m² (else a ValueError); projector widths equal (else a ValueError)
            vc["intermediate_size"] = draw(st.sampled_from([vc["hidden_size"] * merge**2, vc["intermediate_size"]]))
            width = draw(st.sampled_from([16, 256, 4096]))
            vc["projector_input_dim"] = vc["projector_output_dim"] = width
            vc["vision_output_dim"] = draw(st.sampled_from([width, width, 7680]))
        elif kind == "llava":
            vc["image_size"] = patch * draw(st.sampled_from([4, 8, 16]))
            merge = 1
            cfg["vision_feature_layer"] = draw(st.one_of(st.integers(-3, 2), st.lists(st.integers(-3, 2), max_size=3)))
            cfg["vision_feature_select_strategy"] = draw(st.sampled_from(["default", "full"]))
        else:
            vc["image_size"] = patch * draw(st.sampled_from([4, 8, 16]))
            merge = 1
    side = patch * merge
    size = (side * draw(st.integers(1, 12)), side * draw(st.integers(1, 12)) + draw(st.sampled_from([0, 0, 0, 1])))
    if kind in ("gemma3", "llava") and draw(st.booleans()):
        size = None  # the encoder's one input size (any other is a ValueError)
    return cfg, size, draw(st.integers(0, 3)), draw(st.integers(1, 8))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_vl_case())
def test_random_encoders_are_consistent(case):
    from llmroof_widgets.engine.vision import vision_params

    cfg, size, images, batch = case
    try:
        m = load_model(cfg)
        r = lr.analyze(m, HW, batch_size=batch, prompt_len=16, gen_len=2, images=images, image_size=size)
    except ValueError:
        return
    assert memory_params(r) == vision_params(m.vision)
    if images:
        e = r.encode
        for row in e.rows:
            for v in (row.flops, row.matmul_flops, row.bytes):
                assert np.all(np.isfinite(v)) and np.all(np.asarray(v) >= 0)
        assert e.matmul_flops == pytest.approx(sum(row.count * row.matmul_flops for row in e.rows))
        assert r.generation["ttft_s"] == pytest.approx(r.encode.time_s + r.prefill.time_s)
        assert r.settings["image_tokens"] == images * m.vision.tokens_per_image(size)
    else:
        assert r.encode is None


def memory_params(r) -> int:
    return int(sum(row.count * row.params for row in r.encoder_rows))


def test_cli_images(capsys):
    from llmroof_widgets.cli import main

    assert main(["analyze", "--model", "qwen2.5-vl-7b", "--hardware", "h100-sxm", "--images", "2",
                 "--image-size", "448x448", "--prompt-len", "100", "--gen-len", "4", "--json"]) == 0  # fmt: skip
    d = json.loads(capsys.readouterr().out)
    assert d["settings"]["image_tokens"] == 512 and d["prefill"]["tokens"] == 612 and "encode" in d
