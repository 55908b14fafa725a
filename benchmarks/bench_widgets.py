"""Benchmark: one control change → engine → every view's traits updated and serialized (kernel side).

    .venv/bin/python benchmarks/bench_widgets.py [--changes 40] [--gen-len 1024]

An 8B model with a 1024-token prompt and a 1024-token generation on an H100. Each change sets a
control as a user does in the browser: the batch-size slider, then the technique knobs (TP degree,
FlashAttention, efficiency mode, KV keep ratio, offloading, speculative draft). The timer covers the
State's recomputation with the engine, every view's refresh, and the serialization of every comm
message the kernel sends (a recording comm stands in for the kernel's: messages are JSON-encoded as
the kernel would, buffers are kept as they are). Prints medians; nothing is asserted. Target: median
under 20 ms.

The dashboard's sweep (``lr.sweep`` over 11 batch sizes) is lazy: it is computed only while its
section is open (``ui.sweep.active``), so the figures above are with the section closed, as a
dashboard starts. The last line measures the same slider change with the section open, sweep
included, for reference.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import comm
import comm.base_comm


class JsonComm(comm.base_comm.BaseComm):
    """Encodes each message as the kernel would (JSON + binary buffers) and counts it."""

    messages = 0
    json_bytes = 0
    buffer_bytes = 0

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        JsonComm.messages += 1
        JsonComm.json_bytes += len(json.dumps(data, ensure_ascii=False, allow_nan=False, default=str))
        JsonComm.buffer_bytes += sum(memoryview(b).nbytes for b in (buffers or []))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="meta-llama/Llama-3.1-8B")
    ap.add_argument("--hardware", default="h100-sxm")
    ap.add_argument("--prompt-len", type=int, default=1024)
    ap.add_argument("--gen-len", type=int, default=1024)
    ap.add_argument("--changes", type=int, default=40)
    args = ap.parse_args()

    comm.create_comm = JsonComm
    import llmroof_widgets.widgets as lw

    t0 = time.perf_counter()
    ui = lw.Dashboard(model=args.model, hardware=args.hardware, prompt_len=args.prompt_len, gen_len=args.gen_len)
    build = time.perf_counter() - t0
    ui.select("q_proj", phase="decode")  # a selection to carry through every update

    def measure(change, n):
        """Median-friendly samples of one control change each (first 5 are warm-up)."""
        times, msgs, jbytes, bbytes = [], [], [], []
        for i in range(n + 5):
            JsonComm.messages = JsonComm.json_bytes = JsonComm.buffer_bytes = 0
            t = time.perf_counter()
            change(i)
            dt = time.perf_counter() - t
            assert ui.state.error == "", ui.state.error
            if i >= 5:
                times.append(dt)
                msgs.append(JsonComm.messages)
                jbytes.append(JsonComm.json_bytes)
                bbytes.append(JsonComm.buffer_bytes)
        return sorted(x * 1e3 for x in times), msgs, jbytes, bbytes

    slider = ui.controls.batch_size
    values = [1 + (i * 7) % 200 for i in range(args.changes + 5)]

    def batch(i):
        v = values[i] if values[i] != slider.value else values[i] + 1
        slider.value = v
        assert ui.state.result.settings["batch_size"] == v

    ms, msgs, jbytes, bbytes = measure(batch, args.changes)
    assert ui.sweep.computations == 0  # the closed sweep section cost nothing
    engine_times = []
    # the engine alone, same inputs, for comparison
    kw = ui.state.inputs()
    model, hw = ui.state._load("model", kw.pop("model")), ui.state._load("hardware", kw.pop("hardware"))
    for v in values[5:]:
        kw["batch_size"] = v
        t = time.perf_counter()
        r = lw.state.analyze(model, hw, **kw)
        r.to_dict()
        engine_times.append(time.perf_counter() - t)

    # technique knobs through the Techniques section's controls (each change: one recomputation)
    tc = ui.controls.technique_controls
    knob_changes = [
        lambda: setattr(tc.tp, "value", 2 if tc.tp.value == 1 else 1),
        lambda: setattr(tc.flash_attention, "value", "tiled" if tc.flash_attention.value == "off" else "off"),
        lambda: setattr(tc.efficiency, "value", "calibrated" if tc.efficiency.value == "roofline" else "roofline"),
        lambda: setattr(tc.kv_keep_ratio, "value", 0.5 if tc.kv_keep_ratio.value == 1.0 else 1.0),
        lambda: setattr(tc.offload_weights, "value", 0.25 if tc.offload_weights.value == 0.0 else 0.0),
        lambda: setattr(tc.draft, "value", "mtp" if tc.draft.value == "off" else "off"),
    ]
    kms, kmsgs, _, _ = measure(lambda i: knob_changes[i % len(knob_changes)](), args.changes)

    # the same slider with the sweep section open (sweep recomputed on every change)
    ui.sweep_section.selected_index = 0
    sms, _, _, _ = measure(batch, max(10, args.changes // 4))

    def line(label, xs):
        return (
            f"  {label:<42s} median {statistics.median(xs):6.2f} ms   "
            f"p90 {xs[int(0.9 * (len(xs) - 1))]:6.2f} ms   min {xs[0]:6.2f} ms"
        )

    print(
        f"llmroof_widgets dashboard update benchmark: {args.model} on {args.hardware}, "
        f"prompt {args.prompt_len}, generate {args.gen_len}, {len(ms)} changes per row"
    )
    print(f"  dashboard build:                          {build * 1e3:8.1f} ms")
    print(line("batch slider -> all views updated:", ms) + "   (target < 20 ms)")
    print(line("technique knob -> all views updated:", kms) + "   (target < 20 ms)")
    print(f"  of which engine analyze + to_dict (batch): median {statistics.median(engine_times) * 1e3:6.2f} ms")
    print(
        f"  messages per change: {statistics.median(msgs):.0f} (knobs {statistics.median(kmsgs):.0f})   "
        f"JSON {statistics.median(jbytes) / 1e3:.1f} kB   binary buffers {statistics.median(bbytes) / 1e3:.1f} kB"
    )
    print(line("batch slider, sweep section OPEN:", sms) + "   (lazy sweep: only while open)")
    print(
        f"RESULT median_update_ms={statistics.median(ms):.2f} median_knob_update_ms={statistics.median(kms):.2f} "
        f"median_update_with_open_sweep_ms={statistics.median(sms):.2f}"
    )
    ui.close()


if __name__ == "__main__":
    main()
