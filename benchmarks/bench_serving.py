"""Speed of the serving layer: lr.serve and lr.plan (targets: serve < 20 ms; plan over the catalog × TP 1, 2, 4, 8 < 2 s).

Also prints, in the same run, the discrete-event simulation of the same scheduler (tests/serving_sim.py,
SimPy) for one load: the speed-up of the analytic model over simulating requests one by one.
Wall time and CPU time are both printed: on a shared machine the CPU time is the steadier figure.
Not a test: run ``python benchmarks/bench_serving.py``.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import llmroof_widgets as lr

M, H = "meta-llama/Llama-3.1-8B", "h100-sxm"


def timed(fn, repeat):
    wall, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def main():
    lr.serve(M, H, rate=5, prompt_len=1024, gen_len=256)  # warm the catalog caches
    cases = {
        "fixed lengths, open loop": dict(rate=10, prompt_len=1024, gen_len=256),
        "uniform lengths, chunked prefill": dict(rate=10, prompt_len=(512, 2048), gen_len=(64, 512), chunk_size=512),
        "closed loop, 64 users": dict(concurrency=64, prompt_len=(820, 1024), gen_len=(205, 256)),
    }
    for name, kw in cases.items():
        w, c = timed(lambda kw=kw: lr.serve(M, H, **kw), 20)
        print(f"lr.serve ({name}): median {w * 1e3:.1f} ms wall, {c * 1e3:.1f} ms CPU (target < 20 ms)")
    n_dev = len(lr.list_hardware())
    w, c = timed(
        lambda: lr.plan(M, rate=20, slo={"ttft_p99_s": 0.5, "tpot_p99_s": 0.05}, prompt_len=1024, gen_len=256), 3
    )
    print(f"lr.plan over {n_dev} devices × TP (1, 2, 4, 8): median {w:.2f} s wall, {c:.2f} s CPU (target < 2 s)")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    try:
        from serving_sim import simulate

        from llmroof_widgets.engine.serving import _Server
    except ImportError:  # simpy is a test dependency
        print("(simpy not installed: no simulation comparison)")
        return
    srv = _Server(M, H, prompt_len=1024, gen_len=256, max_batch=None, chunk_size=None, block_size=16, knobs={})
    lam = 0.6 * srv.max_rate
    t_sim, _ = timed(lambda: simulate(srv, rate=lam, n_requests=3000), 1)
    t_an, _ = timed(lambda: lr.serve(M, H, rate=lam, prompt_len=1024, gen_len=256), 10)
    print(
        f"discrete-event simulation of 3,000 requests: {t_sim:.2f} s → the analytic model is {t_sim / t_an:.0f}× faster"
    )


if __name__ == "__main__":
    main()
