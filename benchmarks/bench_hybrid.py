"""Speed of the engine on hybrid models: analyze() of a 94-layer hybrid MoE (Gated DeltaNet + gated attention, every
4th layer full, MoE everywhere; Qwen3-Next's shapes) against a dense Llama-like model of the same depth, prompt 1024,
1024 generated tokens (every decode step's time). Also a 94-layer Nemotron-H-like Mamba2 / MoE / attention pattern.

The hybrid has more operator rows per layer type (projections, convolution, scan, gated norm; a MoE block adds eleven)
and more layer types, but each type is counted once and multiplied, never looped over layers: the goal is a time
within 2× of the dense model's. An attention-only MoE of the same depth and MoE blocks separates what the MoE costs
from what the recurrent layers cost. Prints the medians and the ratios. Not a test: shared machines are noisy.
"""

from __future__ import annotations

import statistics
import time

import llmroof_widgets as lr

LAYERS = 94


def configs():
    dense = {
        "model_type": "llama",
        "hidden_size": 4096,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 14336,
        "vocab_size": 151936,
        "max_position_embeddings": 32768,
    }
    gdn_moe = {
        "model_type": "qwen3_next",
        "hidden_size": 2048,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "head_dim": 256,
        "intermediate_size": 5120,
        "vocab_size": 151936,
        "full_attention_interval": 4,
        "linear_num_key_heads": 16,
        "linear_num_value_heads": 32,
        "linear_key_head_dim": 128,
        "linear_value_head_dim": 128,
        "num_experts": 512,
        "num_experts_per_tok": 10,
        "moe_intermediate_size": 512,
        "shared_expert_intermediate_size": 512,
    }
    mamba_moe = {
        "model_type": "nemotron_h",
        "hidden_size": 2688,
        "num_hidden_layers": LAYERS,
        "hybrid_override_pattern": ("MEMEM*E" * 14)[: LAYERS - 4] + "M*-E",
        "num_attention_heads": 32,
        "num_key_value_heads": 2,
        "head_dim": 128,
        "intermediate_size": 1856,
        "vocab_size": 131072,
        "mamba_num_heads": 64,
        "mamba_head_dim": 64,
        "n_groups": 8,
        "ssm_state_size": 128,
        "n_routed_experts": 128,
        "num_experts_per_tok": 6,
        "moe_intermediate_size": 1856,
        "moe_shared_expert_intermediate_size": 3712,
    }
    attn_moe = {  # the same MoE blocks under plain attention: isolates what the recurrent layers add
        "model_type": "qwen3_moe",
        "hidden_size": 2048,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "head_dim": 256,
        "intermediate_size": 5120,
        "vocab_size": 151936,
        "num_experts": 512,
        "num_experts_per_tok": 10,
        "moe_intermediate_size": 512,
    }
    return dense, gdn_moe, mamba_moe, attn_moe


def main(repeat: int = 100):
    hw = lr.load_hardware("h100-sxm")
    dense, gdn_moe, mamba_moe, attn_moe = (lr.load_model(c) for c in configs())
    models = (("dense", dense), ("attention+moe", attn_moe), ("gated_deltanet+moe", gdn_moe), ("mamba2+moe", mamba_moe))
    runs = {
        name: (lambda model=model: lr.analyze(model, hw, batch_size=8, prompt_len=1024, gen_len=1024))
        for name, model in models
    }
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm caches
    for _ in range(repeat):  # round-robin, so that a load change on a shared machine hits every model alike
        for name, run in runs.items():
            t = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - t)
    times = {name: statistics.median(ts) for name, ts in samples.items()}
    for name, model in models:
        types = ", ".join(f"{lt.name}×{lt.count}" for lt in model.layer_types)
        print(f"{name:20s} {LAYERS} layers ({types}): analyze() median {times[name] * 1e3:.2f} ms")
    for name in ("attention+moe", "gated_deltanet+moe", "mamba2+moe"):
        ratio = times[name] / times["dense"]
        print(f"ratio {name} / dense = {ratio:.2f}  ({'within' if ratio <= 2 else 'OVER'} the 2× goal)")
    for name in ("gated_deltanet+moe", "mamba2+moe"):
        print(f"ratio {name} / attention+moe (same MoE blocks) = {times[name] / times['attention+moe']:.2f}")


if __name__ == "__main__":
    main()
