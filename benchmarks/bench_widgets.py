"""Benchmark: one control change → engine → every view's traits updated and serialized (kernel side).

    .venv/bin/python benchmarks/bench_widgets.py [--changes 40] [--gen-len 1024]

An 8B model with a 1024-token generation on an H100. Each change sets the batch-size slider, as a
user does in the browser; the timer covers the State's recomputation with the engine, every view's
refresh, and the serialization of every comm message the kernel sends (a recording comm stands
in for the kernel's: messages are JSON-encoded as the kernel would, buffers are kept as they are).
Prints the median and other figures; nothing is asserted. Target: median under 20 ms.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import comm  # noqa: E402
import comm.base_comm  # noqa: E402


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

    slider = ui.controls.batch_size
    values = [1 + (i * 7) % 200 for i in range(args.changes + 5)]
    times, engine_times, msgs, jbytes, bbytes = [], [], [], [], []
    for i, v in enumerate(values):
        if v == slider.value:
            v += 1
        JsonComm.messages = JsonComm.json_bytes = JsonComm.buffer_bytes = 0
        t = time.perf_counter()
        slider.value = v
        dt = time.perf_counter() - t
        assert ui.state.error == "" and ui.state.result.settings["batch_size"] == v
        if i >= 5:  # warm-up
            times.append(dt)
            msgs.append(JsonComm.messages)
            jbytes.append(JsonComm.json_bytes)
            bbytes.append(JsonComm.buffer_bytes)
    # the engine alone, same inputs, for comparison
    kw = ui.state.inputs()
    model, hw = ui.state._load("model", kw.pop("model")), ui.state._load("hardware", kw.pop("hardware"))
    for v in values[5:]:
        kw["batch_size"] = v
        t = time.perf_counter()
        r = lw.state.analyze(model, hw, **kw)
        r.to_dict()
        engine_times.append(time.perf_counter() - t)

    ms = sorted(x * 1e3 for x in times)
    print(f"llmroof_widgets dashboard update benchmark: {args.model} on {args.hardware}, "
          f"prompt {args.prompt_len}, generate {args.gen_len}, {len(times)} batch-size changes")
    print(f"  dashboard build:                          {build * 1e3:8.1f} ms")
    print(f"  control change -> all views updated:      median {statistics.median(ms):6.2f} ms   "
          f"p90 {ms[int(0.9 * (len(ms) - 1))]:6.2f} ms   min {ms[0]:6.2f} ms   (target < 20 ms)")
    print(f"  of which engine analyze + to_dict:        median {statistics.median(engine_times) * 1e3:6.2f} ms")
    print(f"  messages per change: {statistics.median(msgs):.0f}   JSON {statistics.median(jbytes) / 1e3:.1f} kB   "
          f"binary buffers {statistics.median(bbytes) / 1e3:.1f} kB")
    print(f"RESULT median_update_ms={statistics.median(ms):.2f}")
    ui.close()


if __name__ == "__main__":
    main()
