"""Speed of lr.sweep: 10,000 configurations of an 8B model (target: under 1 s), against analyze() in a loop."""

from __future__ import annotations

import statistics
import time

import llmroof_widgets as lr

GRID = dict(
    batch_size=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
    prompt_len=[128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536],
    gen_len=[16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192],
    w_bits=[16, 8, 4, "fp8_e4m3", "nf4", 32, "int8", "bf16", "fp4", "int4"],
)


def main():
    lr.sweep("llama-3.1-8b", "h100-sxm", batch_size=[1], prompt_len=[128], gen_len=[16])
    ts = []
    for _ in range(3):
        t = time.perf_counter()
        df = lr.sweep("llama-3.1-8b", "h100-sxm", **GRID)
        ts.append(time.perf_counter() - t)
    n = len(df)
    t_sweep = statistics.median(ts)
    sample = df.sample(40, random_state=0)
    t = time.perf_counter()
    for _, r in sample.iterrows():
        lr.analyze(
            "llama-3.1-8b",
            "h100-sxm",
            batch_size=int(r.batch_size),
            prompt_len=int(r.prompt_len),
            gen_len=int(r.gen_len),
            w_bits=r.w_bits,
        )
    per = (time.perf_counter() - t) / len(sample)
    print(f"sweep of {n} configurations (Llama-3.1-8B, H100): median {t_sweep:.3f} s (target < 1 s)")
    print(
        f"analyze() one by one: {per * 1e3:.2f} ms each → {per * n:.1f} s for the grid; sweep is {per * n / t_sweep:.0f}× faster"
    )


if __name__ == "__main__":
    main()
