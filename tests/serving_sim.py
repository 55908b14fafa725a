"""A discrete-event simulation (SimPy) of the scheduler that ``lr.serve`` models analytically: the test oracle.

One replica. Requests arrive as a Poisson stream (open loop) or n users each send a new request as soon as
the previous one ends (closed loop). The scheduler runs steps back to back:

- without chunked prefill: if a prompt waits and a decode slot is free, the next step prefills it alone
  (FCFS), else every running request decodes one token;
- with chunked prefill (budget c tokens): every step decodes every running request and carries the
  next c tokens of the prompt at the head of the queue.

Step times come from the same engine passes as the analytic model (``StepModel``): a decode step of b
sequences at the running requests' mean context (a table over b and context, interpolated), a chunk step
adds what the mixed pass adds. What differs from the analytic model is everything it approximates: the
queue itself, the batch that fluctuates request by request, which steps carry chunks.
"""

from __future__ import annotations

import numpy as np
import simpy

from llmroof_widgets.engine.serving import _Server


class StepTables:
    def __init__(self, srv: _Server, b_max: int):
        self.srv = srv
        self.bs = np.arange(1, b_max + 2, dtype=np.float64)
        lo, hi = float(np.min(srv.p_draw)), float(np.max(srv.p_draw + srv.g_draw)) + 1
        self.cs = np.linspace(max(1.0, lo), hi, 12)
        bb, cc = np.meshgrid(self.bs, self.cs, indexing="ij")
        self.t_dec = np.broadcast_to(srv.steps.decode(bb.ravel(), cc.ravel())[0], bb.size).reshape(bb.shape)
        if srv.chunk is not None:
            # what a chunk adds to a decode step (same mixed pass as the analytic model, at the running mean context)
            tm = np.broadcast_to(np.interp(self.bs, srv.B, srv.t_mix), self.bs.shape)
            td = np.broadcast_to(np.interp(self.bs, srv.B, srv.t_dec), self.bs.shape)
            self.chunk_extra = np.maximum(tm - td, 0.0)
            self.chunk_alone = float(srv.t_mix[0])

    def decode(self, b: int, ctx: float) -> float:
        i = min(b - 1, len(self.bs) - 1)
        return float(np.interp(ctx, self.cs, self.t_dec[i]))

    def extra(self, b: int) -> float:
        if b == 0:
            return self.chunk_alone
        return float(self.chunk_extra[min(b - 1, len(self.bs) - 1)])


def simulate(srv: _Server, *, rate=None, users=None, n_requests=3000, warmup=300, seed=1):
    """Run the scheduler; per-request TTFT, TPOT and e2e after the warm-up (seconds)."""
    rng = np.random.default_rng(seed)
    P = srv.P.draw(rng.random(n_requests + users if users else n_requests))
    G = np.maximum(srv.G.draw(rng.random(len(P))), 1.0)
    cap = srv.max_batch or 10**9
    b_max = int(min(cap, 4 * max(1.0, srv.b_cap if np.isfinite(srv.b_cap) else 512)))
    tab = StepTables(srv, min(b_max, 2048))
    prefill_t = None
    if srv.chunk is None:
        order = np.argsort(srv.p_draw)
        prefill_t = np.interp(P, srv.p_draw[order], srv.d_draw[order])
    env = simpy.Environment()
    queue: list[int] = []  # waiting for prefill (request ids)
    left = {}  # prompt tokens still to prefill (chunked)
    running: dict[int, list] = {}  # id → [context, decode steps left]
    arrive, first, done = {}, {}, {}
    wake = [env.event()]
    next_id = [0]

    def submit():
        i = next_id[0]
        next_id[0] += 1
        if i >= len(P):
            return
        arrive[i] = env.now
        queue.append(i)
        left[i] = P[i]
        if not wake[0].triggered:
            wake[0].succeed()

    def arrivals():
        while next_id[0] < n_requests:
            yield env.timeout(rng.exponential(1.0 / rate))
            submit()

    def finish(i):
        done[i] = env.now
        if users is not None:
            submit()

    def start_decode(i):
        first[i] = env.now
        if G[i] <= 1:
            finish(i)
        else:
            running[i] = [P[i], G[i] - 1]

    def server():
        while True:
            if not queue and not running:
                wake[0] = env.event()
                yield wake[0]
                continue
            b = len(running)
            ctx = float(np.mean([r[0] for r in running.values()])) + 1 if running else 0.0
            if srv.chunk is None:
                if queue and b < cap:
                    i = queue.pop(0)
                    yield env.timeout(prefill_t[i])
                    start_decode(i)
                    continue
                yield env.timeout(tab.decode(b, ctx))
            else:
                head = queue[0] if (queue and b < cap) else None
                t = tab.decode(b, ctx) if b else 0.0
                if head is not None:
                    t += tab.extra(b)
                yield env.timeout(t)
                if head is not None:
                    left[head] -= srv.chunk
                    if left[head] <= 0:
                        queue.pop(0)
                        start_decode(head)
            for i in list(running):
                if i in first and first[i] == env.now:
                    continue  # joined in this step
                r = running[i]
                r[0] += 1
                r[1] -= 1
                if r[1] <= 0:
                    del running[i]
                    finish(i)

    env.process(server())
    if users is not None:
        for _ in range(users):
            submit()
        horizon_ok = lambda: len(done) < n_requests
    else:
        env.process(arrivals())
        horizon_ok = lambda: len(done) < n_requests
    while horizon_ok() and env.peek() != float("inf"):
        env.step()
    ids = sorted(i for i in done if i >= warmup)
    ttft = np.array([first[i] - arrive[i] for i in ids])
    tpot = np.array([(done[i] - first[i]) / (G[i] - 1) for i in ids if G[i] > 1])
    e2e = np.array([done[i] - arrive[i] for i in ids])
    return {"ttft": ttft, "tpot": tpot, "e2e": e2e, "horizon": env.now}
