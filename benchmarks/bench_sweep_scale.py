"""Sweeps beyond memory: 10⁷ configurations streamed in chunks (peak memory under 2 GB), and the Dask
path's throughput per worker against the in-process rate (target: within 30 %). Printed, not a test.

    python benchmarks/bench_sweep_scale.py            # 10⁷ streamed + Dask on 10⁶ (a few minutes)
    python benchmarks/bench_sweep_scale.py --quick    # 10⁶ streamed + Dask on 2·10⁵
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time

import llmroof_widgets as lr

MODEL, DEVICE = "llama-3.1-8b", "h100-sxm"


def grid(n_prompts: int, n_bits: int) -> dict:
    return dict(
        batch_size=list(range(1, 101)),  # 100
        prompt_len=[128 + 97 * i for i in range(n_prompts)],
        gen_len=[1 + 41 * i for i in range(100)],  # 100
        w_bits=[16, 8, 4, "fp8_e4m3", "nf4", 32, "int8", "bf16", "fp4", "int4"][:n_bits],
    )


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # ru_maxrss is in KiB on Linux


def streamed(g: dict) -> tuple[int, float]:
    n = 0
    t = time.perf_counter()
    for df in lr.sweep(MODEL, DEVICE, chunk_size=1 << 18, **g):
        n += len(df)
    return n, time.perf_counter() - t


DASK_CHUNK = 1 << 16


def parquet_rate(g: dict) -> tuple[int, float]:
    """In process, the same chunks written as the same Parquet partitions (the fair comparison)."""
    folder = tempfile.mkdtemp(prefix="llmroof-sweep-")
    try:
        t = time.perf_counter()
        files = lr.sweep(MODEL, DEVICE, chunk_size=DASK_CHUNK, path=folder, **g)
        return len(files), time.perf_counter() - t
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _warm(folder: str) -> None:
    import os

    lr.sweep(MODEL, DEVICE, batch_size=1, prompt_len=128, path=os.path.join(folder, f"warm-{os.getpid()}"))


def dask_rate(g: dict, workers: int) -> tuple[int, float]:
    import distributed

    folder = tempfile.mkdtemp(prefix="llmroof-sweep-")
    try:
        with (
            distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            client.run(_warm, folder)  # imports (pandas, pyarrow, the catalog) before timing, as in process
            t = time.perf_counter()
            files = lr.sweep(MODEL, DEVICE, chunk_size=DASK_CHUNK, path=os.path.join(folder, "out"), client=client, **g)
            dt = time.perf_counter() - t
        return len(files), dt
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", type=int, default=1, help="Dask worker processes (give each a free core)")
    args = ap.parse_args()
    lr.sweep(MODEL, DEVICE, batch_size=1, prompt_len=128)  # imports and catalog loaded before timing
    try:
        import pyarrow  # noqa: F401  (imported before timing, as the Dask workers' warm-up does)
    except ImportError:
        pass
    big = grid(100, 10) if not args.quick else grid(100, 1)
    n, dt = streamed(big)
    print(
        f"streamed {n:,} configurations ({MODEL}, {DEVICE}) in {dt:.1f} s: {n / dt:,.0f} rows/s; "
        f"peak RSS {peak_rss_gb():.2f} GB (target < 2 GB)"
    )
    small = grid(100, 1) if not args.quick else grid(20, 1)
    n_small = 100 * len(small["prompt_len"]) * 100
    try:
        _, dt_in = parquet_rate(small)
    except ImportError:
        print("Parquet and Dask paths skipped: install the 'scale' extra (pip install 'llmroof_widgets[scale]')")
        return
    rate_in = n_small / dt_in
    try:
        parts, dt_d = dask_rate(small, args.workers)
    except ImportError:
        print("Dask path skipped: install the 'scale' extra (pip install 'llmroof_widgets[scale]')")
        return
    per_worker = n_small / dt_d / args.workers
    print(
        f"Dask, {args.workers} worker processes: {n_small:,} rows in {parts} Parquet partitions, {dt_d:.1f} s → "
        f"{per_worker:,.0f} rows/s per worker vs {rate_in:,.0f} rows/s in process writing the same partitions "
        f"({per_worker / rate_in:.0%} of it; target ≥ 70 %, on as many free cores as workers)"
    )


if __name__ == "__main__":
    main()
