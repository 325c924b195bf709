"""The saturation guard: when the engines say they are full, believe them over the token arithmetic.

Any of these means the fleet is saturated whatever the capacity model says: a queue that keeps growing over the rate
window on engines every one of which had requests waiting throughout the sample window (a request that arrived just
before a scrape is "waiting" for a moment, and a burst that leaves one for a second "grows" by `deriv`; an engine
whose queue empties now and then, or a fleet whose router could still send to an engine with room, is keeping up),
the KV cache nearly full (new requests
wait for room), or TTFT p95 above the SLO when one is set. Saturated, the demand decide() plans for is raised so
that the replicas now ready are exactly full at the target utilisation plus one replica's worth more: the spill
computed against the ready replicas sends that overflow to the API at once, and the cost comparison weighs one more
replica against spilling it. Signals that are unknown fire nothing (unknown is never a reason to act)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from costpolicy.money import ZERO
from costpolicy.pricing import busy_replicas
from costpolicy.snapshot import Demand
from costpolicy.spec import Capacity

KV_CACHE_SATURATED = Decimal("0.95")  # fraction of the KV cache in use above which requests wait for room
QUEUE_GROWTH_SATURATED = Decimal("0.05")  # requests/s the queue grows by, sustained over the rate window

# the signals' names, as the operator's Prometheus round and status.signals carry them (one owner: here)
GPU_UTILIZATION = "gpuUtilization"
REQUESTS_WAITING = "requestsWaiting"
QUEUE_GROWTH = "requestsWaitingGrowthPerSecond"
QUEUED_ENGINES = "enginesQueuedThroughout"  # engine pods whose queue never emptied during the sample window
KV_CACHE_USAGE = "kvCacheUsage"
TTFT_P95 = "ttftP95Seconds"


@dataclass(frozen=True, slots=True)
class Saturation:
    fired: tuple[str, ...]  # signal names, in the order checked
    message: str

    @property
    def saturated(self) -> bool:
        return bool(self.fired)


def check(signals: Mapping[str, Decimal], ttft_slo_seconds: Decimal | None, ready: int) -> Saturation:
    """Which signals say the `ready` engines are full."""
    fired: list[str] = []
    notes: list[str] = []
    waiting, growth, queued = signals.get(REQUESTS_WAITING), signals.get(QUEUE_GROWTH), signals.get(QUEUED_ENGINES)
    everywhere = queued is not None and queued >= max(1, ready)
    if waiting is not None and growth is not None and waiting > 0 and growth > QUEUE_GROWTH_SATURATED and everywhere:
        fired.append(QUEUE_GROWTH)
        notes.append(f"queue growing ({waiting} waiting, +{growth.quantize(Decimal('0.01'))}/s)")
    kv = signals.get(KV_CACHE_USAGE)
    if kv is not None and kv >= KV_CACHE_SATURATED:
        fired.append(KV_CACHE_USAGE)
        notes.append(f"KV cache {(kv * 100).quantize(Decimal('0.1'))}% full")
    ttft = signals.get(TTFT_P95)
    if ttft_slo_seconds is not None and ttft is not None and ttft > ttft_slo_seconds:
        fired.append(TTFT_P95)
        notes.append(f"TTFT p95 {ttft.quantize(Decimal('0.001'))}s above the {ttft_slo_seconds}s SLO")
    return Saturation(tuple(fired), "; ".join(notes))


def planning_demand(
    demand: Demand, capacity: Capacity, ready: int, target_utilization: Decimal, saturation: Saturation
) -> Demand:
    """The demand to plan with: as measured, or, when saturated, at least enough to fill `ready + 1` replicas."""
    if not saturation.saturated:
        return demand
    busy = busy_replicas(demand, capacity)
    floor = (ready + 1) * target_utilization
    if busy <= ZERO:
        return demand  # saturated with no tokens measured: nothing to scale
    if busy >= floor:
        return demand
    return demand.scaled(floor / busy)
