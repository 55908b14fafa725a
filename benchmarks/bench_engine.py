"""Speed of the engine: analyze() of Llama-2-7B, prompt 1024, 1024 generated tokens, every per-step decode time.

Compares, in one run on one machine:
- analyze() (vectorized over the decode steps), median;
- the same generation computed by calling a single-step decode analysis 1024 times (one per token,
  as LLM-Viewer's analyze_generate_task does), total.
Prints the figures and their ratio. Not a test: shared machines are noisy, compare ratios.
"""

from __future__ import annotations

import statistics
import time

import llmroof_widgets as lr
from llmroof_widgets.engine.ops import PassBuilder
from llmroof_widgets.engine.precision import Precision
from llmroof_widgets.engine.roofline import Roof, pass_time


def median_time(fn, repeat):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main():
    model = lr.load_model("meta-llama/Llama-2-7b-hf")
    hw = lr.load_hardware("a100-80gb-sxm")
    P = G = 1024
    full = lambda: lr.analyze(model, hw, batch_size=1, prompt_len=P, gen_len=G)
    full()
    t_vec = median_time(full, 200)
    prec = Precision(16, 16, 16)
    roof = Roof(hw)

    def per_token_loop():
        out = []
        for j in range(G - 1):
            rows = PassBuilder(
                model, prec, batch=1, tokens=1, cached=P + j, logits_tokens=1, attention="causal", mla="absorbed"
            ).build()
            out.append(pass_time(rows, roof))
        return out

    t_loop = median_time(per_token_loop, 5)
    t_loop_full = median_time(lambda: [lr.analyze(model, hw, prompt_len=P + j, gen_len=1) for j in range(G - 1)], 3)
    print(f"analyze(Llama-2-7B, prompt {P}, gen {G}) with every step time: median {t_vec * 1e3:.3f} ms (target < 1 ms)")
    print(
        f"single-step decode analysis × {G - 1}: {t_loop * 1e3:.1f} ms → vectorized is {t_loop / t_vec:.0f}× faster (target ≥ 50×)"
    )
    print(
        f"whole single-token analyze() × {G - 1} (LLM-Viewer style): {t_loop_full * 1e3:.1f} ms → {t_loop_full / t_vec:.0f}×"
    )
    r = full()
    assert abs(sum(per_token_loop()) - r.decode_step_times_s.sum()) < 1e-9 * r.decode_step_times_s.sum()


if __name__ == "__main__":
    main()
