"""The engine signals the operator acts on, as terms of the Prometheus round, and how a slice becomes values.

Signals per InferenceDeployment: GPU utilisation (dcgm-exporter), requests waiting, whether that queue grows and on
how many engine pods it never emptied during the sample window, KV cache usage, TTFT p95. Per engine pod: prompt and
generation token rates and the fewest requests waiting during the sample window (half the rate window, at least 2
s). A pod that had requests waiting the whole sample window was at its limit, so its token rates then are what it
can do at that mix: those are the capacity samples crossover learns from (costpolicy.calibration). The sample window
is shorter than the rate window because an under-declared fleet is saturated only until the saturation guard adds a
replica: a whole rate window of queueing rarely happens, and a fleet that never saturates would never learn.

Metric names per engine (checked against each project's sources): vLLM `vllm:num_requests_waiting`,
`vllm:kv_cache_usage_perc` (before 0.9.2 `vllm:gpu_cache_usage_perc`; both are read, either may exist),
`vllm:time_to_first_token_seconds`; SGLang `sglang:num_queue_reqs`, `sglang:token_usage`,
`sglang:time_to_first_token_seconds`; TGI `tgi_queue_size` (TGI has no KV-cache gauge and no TTFT histogram, so
those two stay unknown for it).

dcgm-exporter is its own scrape target (a DaemonSet pod in another namespace): the GPU's workload arrives as
`exported_pod`/`exported_namespace`, or as `pod`/`namespace` when the scrape honours the exporter's labels. The query
takes `exported_*` when present, else the plain labels, and joins on (namespace, pod) with the engine pods' own
targets (`up`), which carry the labels the round groups by.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from costpolicy.saturation import (
    GPU_UTILIZATION,
    KV_CACHE_USAGE,
    QUEUE_GROWTH,
    QUEUED_ENGINES,
    REQUESTS_WAITING,
    TTFT_P95,
)
from crossover.api.v1alpha1 import EngineKind

SIGNALS = (GPU_UTILIZATION, REQUESTS_WAITING, QUEUE_GROWTH, QUEUED_ENGINES, KV_CACHE_USAGE, TTFT_P95)
POD_INPUT, POD_OUTPUT, POD_QUEUE_FLOOR = "pod.rate/input", "pod.rate/output", "pod.queueFloor"
POD_LABEL = "pod"
DCGM_UTIL = "DCGM_FI_DEV_GPU_UTIL"


@dataclass(frozen=True)
class EngineSignalNames:
    waiting: str | None
    running: str | None
    kv_cache: tuple[str, ...]
    ttft_bucket: str | None


SIGNAL_NAMES: dict[EngineKind, EngineSignalNames] = {
    EngineKind.VLLM: EngineSignalNames(
        "vllm:num_requests_waiting",
        "vllm:num_requests_running",
        ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        "vllm:time_to_first_token_seconds_bucket",
    ),
    EngineKind.SGLANG: EngineSignalNames(
        "sglang:num_queue_reqs",
        "sglang:num_running_reqs",
        ("sglang:token_usage",),
        "sglang:time_to_first_token_seconds_bucket",
    ),
    EngineKind.TGI: EngineSignalNames("tgi_queue_size", "tgi_batch_current_size", (), None),
}


def names_regex(pick: Callable[[EngineSignalNames], str | tuple[str, ...] | None]) -> str:
    found: set[str] = set()
    for names in SIGNAL_NAMES.values():
        value = pick(names)
        if isinstance(value, str):
            found.add(value)
        elif value:
            found.update(value)
    return "|".join(sorted(found))


@dataclass(frozen=True)
class Queries:
    """PromQL per signal (grouped `by` the round's labels); `pod_terms` add the pod label."""

    signals: dict[str, str]
    pods: dict[str, str]


def queries(
    engine_selector: str, group: tuple[str, ...], window: str, prompt_names: str, generation_names: str
) -> Queries:
    """The round's signal and per-pod capacity queries.

    `engine_selector` selects the engine pods' series (`label="value",...`), `group` the round's grouping labels
    (namespace first), `prompt_names`/`generation_names` are name regexes of every engine's token counters.
    """
    by = ", ".join(group)
    carried = ", ".join(label for label in group if label != "namespace")  # ON labels may not be in GROUP_LEFT

    def engine(names: str) -> str:
        return f'{{__name__=~"{names}",{engine_selector}}}'

    waiting = engine(names_regex(lambda n: n.waiting))
    relabelled = (
        f'label_replace(label_replace({DCGM_UTIL}, "namespace", "$1", "exported_namespace", "(.+)"), '
        f'"pod", "$1", "exported_pod", "(.+)")'
    )
    pods = f"group by ({by}, {POD_LABEL}) (up{{{engine_selector}}})"
    signals = {
        GPU_UTILIZATION: f"avg by ({by}) ({relabelled} * on (namespace, {POD_LABEL}) group_left({carried}) {pods})",
        REQUESTS_WAITING: f"sum by ({by}) ({waiting})",
        QUEUE_GROWTH: f"sum by ({by}) (deriv({waiting}[{window}]))",
        KV_CACHE_USAGE: f"avg by ({by}) ({engine(names_regex(lambda n: n.kv_cache))})",
        TTFT_P95: (
            f"histogram_quantile(0.95, sum by ({by}, le) "
            f"(rate({engine(names_regex(lambda n: n.ttft_bucket))}[{window}])))"
        ),
    }
    sample = sample_window(window)
    # engine pods whose queue never emptied in the sample window (a gauge of whole requests: 1 each, else 0)
    signals[QUEUED_ENGINES] = f"sum by ({by}) (clamp_max(floor(min_over_time({waiting}[{sample}])), 1))"
    per_pod = {
        POD_INPUT: f"sum by ({by}, {POD_LABEL}) (rate({engine(prompt_names)}[{sample}]))",
        POD_OUTPUT: f"sum by ({by}, {POD_LABEL}) (rate({engine(generation_names)}[{sample}]))",
        POD_QUEUE_FLOOR: f"sum by ({by}, {POD_LABEL}) (min_over_time({waiting}[{sample}]))",
    }
    return Queries(signals, per_pod)


def sample_window(window: str) -> str:
    """Half the rate window (`"120s"` -> `"60s"`), at least 2 s: the window a capacity sample is judged over."""
    seconds = int(window.removesuffix("s"))
    return f"{max(2, seconds // 2)}s"


def signals_from(values: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """The finite signals of a slice; a missing or non-finite value is unknown and left out (never zero)."""
    return {k: v for k in SIGNALS if (v := values.get(k)) is not None and v.is_finite()}


@dataclass(frozen=True)
class PodRates:
    """One engine pod's token rates over the window, and whether requests waited on it the whole time."""

    pod: str
    input_tps: Decimal
    output_tps: Decimal
    queued_throughout: bool


def pod_rates(values: Mapping[str, Decimal]) -> list[PodRates]:
    """Per-pod rates from a slice whose per-pod keys end in `/<pod>`; pods with unknown rates are left out."""
    pods = {key.rsplit("/", 1)[1] for key in values if key.startswith(f"{POD_OUTPUT}/")}
    out = []
    for pod in sorted(pods):
        inp, outp = values.get(f"{POD_INPUT}/{pod}"), values.get(f"{POD_OUTPUT}/{pod}")
        floor = values.get(f"{POD_QUEUE_FLOOR}/{pod}")
        if inp is None or outp is None or not (inp.is_finite() and outp.is_finite()) or min(inp, outp) < 0:
            continue
        queued = floor is not None and floor.is_finite() and floor >= 1
        out.append(PodRates(pod, inp, outp, queued))
    return out
