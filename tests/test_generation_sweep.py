"""Sweeps with a bounded working set: chunks, the in-memory limit, Parquet files and Dask workers."""

from __future__ import annotations

import time
import tracemalloc

import pandas as pd
import pytest

import llmroof_widgets as lr
from llmroof_widgets.engine import explore

KW = dict(
    batch_size=[1, 4],
    prompt_len=[100, 3000, 5000],
    gen_len=[1, 2, 9, 40],
    w_bits=[16, "int4"],
    flash_attention=["off", "tiled"],
)


def test_chunks_equal_the_in_memory_frame():
    whole = lr.sweep("mistralai/Mistral-7B-v0.1", "h100-sxm", **KW)
    assert len(whole) == 2 * 3 * 4 * 2 * 2
    for size in (1, 3, 7, 1000):
        parts = list(lr.sweep("mistralai/Mistral-7B-v0.1", "h100-sxm", chunk_size=size, **KW))
        assert all(len(p) <= size for p in parts)
        pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), whole)


def test_rows_still_equal_analyze_across_a_window():
    # Mistral's 4096-token window lies inside these generations: the closed form must cross it
    df = lr.sweep("mistralai/Mistral-7B-v0.1", "h100-sxm", batch_size=2, prompt_len=[4000, 4090], gen_len=[2, 300])
    for _, row in df.iterrows():
        r = lr.analyze(
            "mistralai/Mistral-7B-v0.1", "h100-sxm", batch_size=2, prompt_len=row.prompt_len, gen_len=row.gen_len
        )
        for k in ("ttft_s", "tpot_s", "e2e_s", "throughput_tokens_per_s"):
            assert row[k] == pytest.approx(r.generation[k], rel=1e-9), k


def test_far_apart_prompts_do_not_build_every_context():
    tracemalloc.start()
    t0 = time.perf_counter()
    df = lr.sweep("llama-3.1-8b", "h100-sxm", prompt_len=[128, 10**8], gen_len=[2, 10**6])
    dt = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(df) == 4 and dt < 5 and peak < 100e6, (dt, peak)
    row = df[(df.prompt_len == 10**8) & (df.gen_len == 10**6)].iloc[0]
    r = lr.analyze("llama-3.1-8b", "h100-sxm", prompt_len=10**8, gen_len=10**6)
    assert row.e2e_s == pytest.approx(r.generation["e2e_s"], rel=1e-9)


def test_a_product_beyond_the_in_memory_limit_is_refused_with_the_way_to_stream_it():
    big = dict(batch_size=range(1, 2001), prompt_len=range(1, 1002))
    assert 2000 * 1001 > explore.SWEEP_IN_MEMORY_ROWS
    with pytest.raises(ValueError, match=r"chunk_size=.*path="):
        lr.sweep("gpt2", "h100-sxm", **big)
    it = lr.sweep("gpt2", "h100-sxm", chunk_size=50_000, **big)  # streams: nothing computed yet
    first = next(it)
    assert len(first) == 49 * 1001 and list(first.batch_size.unique()) == list(range(1, 50))  # whole batches
    with pytest.raises(ValueError, match="chunk_size"):
        lr.sweep("gpt2", "h100-sxm", chunk_size=0)
    with pytest.raises(ValueError, match="path="):
        lr.sweep("gpt2", "h100-sxm", client=object())


def test_parquet_partitions(tmp_path):
    pytest.importorskip("pyarrow")
    whole = lr.sweep("qwen2.5-0.5b", "l4", **KW)
    files = lr.sweep("qwen2.5-0.5b", "l4", chunk_size=10, path=tmp_path / "out", **KW)
    parts = [pd.read_parquet(f) for f in files]
    assert all(len(p) <= 10 for p in parts) and len(files) >= -(-len(whole) // 10)
    back = pd.concat(parts, ignore_index=True)
    assert back.w_bits.tolist() == [str(v) for v in whole.w_bits]  # mixed 16 / "int4": text in every partition
    for c in ("batch_size", "prompt_len", "gen_len", "total_bytes", "fits"):
        assert back[c].tolist() == whole[c].tolist(), c
    for c in ("e2e_s", "tpot_s"):
        assert back[c].tolist() == pytest.approx(whole[c].tolist(), rel=1e-12), c


def test_dask_workers_write_the_same_partitions(tmp_path):
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("pyarrow")
    whole = lr.sweep("qwen2.5-0.5b", "l4", **KW)
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        files = lr.sweep("qwen2.5-0.5b", "l4", chunk_size=16, path=tmp_path / "dask", client=client, **KW)
    back = pd.concat([pd.read_parquet(f) for f in sorted(files)], ignore_index=True)
    assert len(back) == len(whole)
    for c in ("batch_size", "prompt_len", "gen_len", "total_bytes", "max_batch_size"):
        assert back[c].tolist() == whole[c].tolist(), c
    for c in ("e2e_s", "tpot_s"):
        assert back[c].tolist() == pytest.approx(whole[c].tolist(), rel=1e-12), c
