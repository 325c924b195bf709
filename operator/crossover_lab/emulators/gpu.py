"""What emulated GPUs can really do: the lab's hardware, kept apart from what any manifest declares.

An emulated engine pod takes its speed and cold start from the profile of its GPU type (times its GPU count), never
from the InferenceDeployment's `capacity` or `coldStartSeconds`, so a wrong declaration shows up as it would on real
hardware. The h100-80gb figures are the measurement in DESIGN.md (one H100, a Llama-3-8B-shaped model, bf16:
prefill about 32,000 tok/s, decode 2,057 tok/s at batch 256); a100-80gb and l4 are scaled from public vLLM
benchmarks of the same model class. Cold starts (weights from a local cache, CUDA graph capture) are assumptions.

The utilisation curve is NVML's GPU utilisation (what dcgm-exporter's DCGM_FI_DEV_GPU_UTIL reports) against the
running batch, also measured on that H100: 72 % at batch 1, 89 % at 16, 95 % at 64, 100 % at 256. It saturates long
before throughput does, which is why a utilisation target over-provisions.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

DEFAULT_GPU_TYPE = "h100-80gb"
# the label GPU feature discovery puts on nodes, and the one a node selector for `gpu.type` uses
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"


@dataclass(frozen=True)
class GPUProfile:
    """Throughput of one GPU at full batch, per phase, and how long an engine on it takes to become ready."""

    prefill_tokens_per_second: float
    decode_tokens_per_second: float
    cold_start_seconds: float
    max_batch: int = 256


PROFILES: dict[str, GPUProfile] = {
    "h100-80gb": GPUProfile(32_000.0, 2_000.0, cold_start_seconds=90.0),
    "a100-80gb": GPUProfile(11_000.0, 1_200.0, cold_start_seconds=120.0),
    "l4": GPUProfile(3_800.0, 180.0, cold_start_seconds=150.0),
}

# GPU feature discovery's product names (nvidia.com/gpu.product, what the lab's nodes carry and what gpu.type holds
# in the shipped examples) for the profiles above
PRODUCTS: dict[str, str] = {
    "nvidia-h100-80gb-hbm3": "h100-80gb",
    "nvidia-h100-pcie": "h100-80gb",
    "nvidia-a100-sxm4-80gb": "a100-80gb",
    "nvidia-a100-80gb-pcie": "a100-80gb",
    "nvidia-l4": "l4",
}

# (running batch, NVML utilisation %), measured on one H100
UTILIZATION_CURVE: tuple[tuple[int, float], ...] = ((1, 72.0), (16, 89.0), (64, 95.0), (256, 100.0))


def profile(gpu_type: str | None) -> GPUProfile:
    """The profile for a GPU type (case-insensitive); unknown types are refused with the known ones listed."""
    key = (gpu_type or DEFAULT_GPU_TYPE).strip().lower()
    key = PRODUCTS.get(key, key)
    try:
        return PROFILES[key]
    except KeyError:
        raise ValueError(f"unknown GPU type {gpu_type!r}; the lab knows {', '.join(sorted(PROFILES))}") from None


@dataclass(frozen=True)
class EngineHardware:
    """What one engine pod gets: its GPUs' summed throughput (tensor parallel, counted linearly: an upper bound)."""

    prefill_tokens_per_second: float
    decode_tokens_per_second: float
    cold_start_seconds: float
    max_batch: int

    @classmethod
    def of(cls, gpu_type: str | None, gpus: int, time_compression: float = 1.0) -> EngineHardware:
        """`time_compression` k replays real time k times faster: rates × k, durations ÷ k (as the demo does)."""
        if gpus < 1:
            raise ValueError(f"an engine needs at least one GPU (got {gpus})")
        if time_compression <= 0:
            raise ValueError(f"time compression must be positive (got {time_compression})")
        p = profile(gpu_type)
        return cls(
            prefill_tokens_per_second=p.prefill_tokens_per_second * gpus * time_compression,
            decode_tokens_per_second=p.decode_tokens_per_second * gpus * time_compression,
            cold_start_seconds=p.cold_start_seconds / time_compression,
            max_batch=p.max_batch,
        )


def utilization_percent(running: float) -> float:
    """NVML utilisation for a running batch: 0 when idle, the measured curve interpolated in log(batch)."""
    if running <= 0:
        return 0.0
    points = UTILIZATION_CURVE
    if running <= points[0][0]:
        return points[0][1]
    for (b0, u0), (b1, u1) in itertools.pairwise(points):
        if running <= b1:
            t = (math.log(running) - math.log(b0)) / (math.log(b1) - math.log(b0))
            return u0 + t * (u1 - u0)
    return points[-1][1]
