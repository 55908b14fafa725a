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

Steady state only: the requests measured are those that arrive with ids in [warmup, n_requests), and the
load keeps coming until the last of them ends (stopping the arrivals earlier would let the system drain
around the last measured requests and bias their TPOT low).
"""

from __future__ import annotations

import heapq

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
        # the decode-time table as Python lists (the step loop is scalar)
        self._rows = [list(r) for r in self.t_dec]
        self._c0, self._dc, self._nc = float(self.cs[0]), float(self.cs[1] - self.cs[0]), len(self.cs)

    def decode(self, b: int, ctx: float) -> float:
        row = self._rows[min(b - 1, len(self._rows) - 1)]
        x = (ctx - self._c0) / self._dc  # linear interpolation on the uniform context grid, clamped at its ends
        if x <= 0:
            return row[0]
        j = int(x)
        if j >= self._nc - 1:
            return row[-1]
        w = x - j
        return row[j] * (1 - w) + row[j + 1] * w

    def extra(self, b: int) -> float:
        if b == 0:
            return self.chunk_alone
        return float(self.chunk_extra[min(b - 1, len(self.bs) - 1)])


def simulate(srv: _Server, *, rate=None, users=None, n_requests=3000, warmup=300, seed=1):
    """Run the scheduler; per-request TTFT, TPOT and e2e of requests warmup … n_requests − 1 (seconds)."""
    rng = np.random.default_rng(seed)
    n_draw = 3 * n_requests + (users or 0)  # the load goes on past n_requests until those requests are done
    P = srv.P.draw(rng.random(n_draw))
    G = np.maximum(srv.G.draw(rng.random(n_draw)), 1.0)
    gaps = None
    if rate:
        # Poisson arrivals at exactly the rate asked over the measured requests (the gaps rescaled to their
        # mean): near max_rate the batch moves ~5 % per 1 % of rate, and a sample's own rate is ~2 % off
        gaps = rng.exponential(1.0, n_draw)
        gaps *= 1.0 / (rate * float(np.mean(gaps[:n_requests])))
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
    # running decodes: request i joined at decode step j_i; at step k its context is P_i + (k − j_i) and it
    # ends at step j_i + G_i − 1. Kept as a heap of end steps and the sum of P_i − j_i (mean context in O(1)).
    ends: list[tuple[int, int]] = []
    run = {"k": 0, "b": 0, "s": 0.0}
    arrive, first, done = {}, {}, {}
    wake = [env.event()]
    next_id = [0]

    def submit():
        i = next_id[0]
        next_id[0] += 1
        if i >= n_draw:
            return
        arrive[i] = env.now
        queue.append(i)
        left[i] = P[i]
        if not wake[0].triggered:
            wake[0].succeed()

    def arrivals():
        while next_id[0] < n_draw:
            yield env.timeout(gaps[next_id[0]])
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
            heapq.heappush(ends, (run["k"] + int(G[i]) - 1, i))
            run["b"] += 1
            run["s"] += P[i] - run["k"]

    def advance():  # every running decode makes one token; those at their last token end
        run["k"] += 1
        k = run["k"]
        while ends and ends[0][0] <= k:
            _, i = heapq.heappop(ends)
            run["b"] -= 1
            run["s"] -= P[i] - (k - int(G[i]) + 1)
            finish(i)

    def server():
        while True:
            b = run["b"]
            if not queue and not b:
                wake[0] = env.event()
                yield wake[0]
                continue
            ctx = run["s"] / b + run["k"] + 1 if b else 0.0  # the running requests' mean context (+ this token)
            if srv.chunk is None:
                if queue and b < cap:
                    i = queue.pop(0)
                    yield env.timeout(prefill_t[i])
                    start_decode(i)
                    continue
                yield env.timeout(tab.decode(b, ctx))
                advance()
            else:
                head = queue[0] if (queue and b < cap) else None
                t = tab.decode(b, ctx) if b else 0.0
                if head is not None:
                    t += tab.extra(b)
                yield env.timeout(t)
                advance()
                if head is not None:
                    left[head] -= srv.chunk
                    if left[head] <= 0:
                        queue.pop(0)
                        start_decode(head)  # joins the next step

    env.process(server())
    if users is not None:
        for _ in range(users):
            submit()
    else:
        env.process(arrivals())
    measured = range(warmup, n_requests)
    pending = [n_requests - 1]  # the measured requests end roughly in order: check from the last one back

    def all_done():
        while pending[0] >= warmup and pending[0] in done:
            pending[0] -= 1
        return pending[0] < warmup and all(i in done for i in measured)

    while env.peek() != float("inf"):
        env.step()
        if n_requests - 1 in done and all_done():
            break
    ids = [i for i in measured if i in done]
    ttft = np.array([first[i] - arrive[i] for i in ids])
    tpot = np.array([(done[i] - first[i]) / (G[i] - 1) for i in ids if G[i] > 1])
    e2e = np.array([done[i] - arrive[i] for i in ids])
    return {"ttft": ttft, "tpot": tpot, "e2e": e2e, "horizon": env.now}
