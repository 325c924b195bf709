"""The clairvoyant lower bound: dynamic programming over the number of ready replicas at every control step.

It knows the whole trace, so it starts replicas exactly one cold start before they are needed, and it still pays
for that warm-up: every net increase of k replicas at step s is billed k replicas for the C = ceil(cold start / step)
steps before s (the overhead too, when nothing else was running). Serving and prices are the simulator's. Any
policy's ready schedule is one of the plans searched, and a policy pays at least this for it (each ready replica was
billed for a cold start first; late tokens count at API prices in its effective cost), so the optimum is a lower
bound on every policy's effective cost. The search prices every step with costpolicy.pricing, in Decimal (floats
were measured at only 1.3x faster over all of `make bench`); the chosen plan is then billed step by step as the
simulator bills every policy.
"""

from __future__ import annotations

import copy
import itertools
import math
from decimal import Decimal

from costpolicy.pricing import Load, replica_bill
from costpolicy.snapshot import Demand
from costpolicy.spec import CostSpec
from crossover.sim.model import Demands, Result, Step, serve, step_costs, to_decimal


def offline_optimum(spec: CostSpec, demands: Demands) -> Result:
    dt = demands.config.control_interval_s
    rates = demands.rates
    top = spec.replicas.max
    seconds = to_decimal(dt)
    loads = [Load.of(spec, Demand(to_decimal(i), to_decimal(o))) for i, o in rates]
    replica, overhead = replica_bill(spec, 1, seconds)
    warm_steps = math.ceil(demands.config.cold_start(spec) / dt - 1e-9)
    zero = Decimal(0)

    def step_cost(k: int, m: int) -> Decimal:
        api = loads[k].api_per_second * loads[k].spill(spec, m) * seconds
        return m * replica + (overhead if m > 0 else zero) + api

    def warm(n: int, m: int) -> Decimal:
        if m <= n:
            return zero
        return (m - n) * replica * warm_steps + (overhead * warm_steps if n == 0 else zero)

    states = range(spec.replicas.min, top + 1)  # the manifest's bounds bind the optimum as they bind the operator
    value = [step_cost(0, m) if rates else zero for m in states]  # any start is free, as for the static fleet
    choice: list[list[int]] = []
    for k in range(1, len(rates)):
        best_prev = []
        new_value = []
        for m in states:
            j = min(range(len(states)), key=lambda p: value[p] + warm(states[p], m))
            best_prev.append(j)
            new_value.append(value[j] + warm(states[j], m) + step_cost(k, m))
        choice.append(best_prev)
        value = new_value
    if not rates:
        return Result("offline-optimum", [], 0)
    index = [min(range(len(states)), key=lambda m: value[m])]
    for back in reversed(choice):
        index.append(back[index[-1]])
    plan = [states[i] for i in reversed(index)]

    warming = [0] * len(plan)
    for s in range(1, len(plan)):
        increase = max(0, plan[s] - plan[s - 1])
        for j in range(max(0, s - warm_steps), s):
            warming[j] += increase
    steps: list[Step] = []
    events = 0
    for k, (din, dout) in enumerate(rates):
        ready = plan[k]
        billed = ready + warming[k]
        if k and billed != steps[-1].replicas_billed:
            events += 1
        share = serve(spec, ready, din, dout)
        api_in, api_out = din * (1 - share), dout * (1 - share)
        cost_replicas, cost_overhead, cost_api = step_costs(spec, billed, api_in, api_out, dt)
        steps.append(
            Step(
                k * dt, dt, din, dout, billed, ready, din * share, dout * share, api_in, api_out, 0.0, 0.0,
                cost_replicas, cost_overhead, cost_api, "Clairvoyant",
            )
        )  # fmt: skip
    return Result("offline-optimum", steps, events)


def continuing_optimum(spec: CostSpec, demands: Demands) -> Result:
    """The optimum when the trace does not end where the run does: planned over the trace followed by itself again
    (as the warm-up wraps it around before t = 0), billed on the first pass only, warm-ups for the second pass
    included. Not a lower bound on the first pass (`offline_optimum` is, knowing the world ends there); the bench
    prints it beside a missed goal to show how much of the gap is that knowledge, which no running policy has."""
    twice = copy.copy(demands)
    twice.rates = demands.rates * 2
    steps = offline_optimum(spec, twice).steps[: len(demands.rates)]
    events = sum(a.replicas_billed != b.replicas_billed for a, b in itertools.pairwise(steps))
    return Result("continuing-optimum", steps, events)
