"""The demo's pure parts: time compression keeps the economics, the trace reads right."""

from __future__ import annotations

import itertools
from decimal import Decimal
from pathlib import Path

import yaml

from costpolicy.breakeven import break_even
from crossover.api.v1alpha1 import InferenceDeployment
from crossover_lab.demo.compression import compress_manifest
from crossover_lab.demo.loadgen import CHARS_PER_TOKEN, prompt_of, read_azure_trace
from crossover_lab.emulators.openai_wire import PromptCache

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "llama-8b-h100-vs-haiku.yaml"


def spec_of(manifest: dict[str, object]) -> InferenceDeployment:
    return InferenceDeployment.model_validate(manifest)


def test_compression_scales_rates_and_durations_but_keeps_break_even_utilisation() -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    k = Decimal(12)
    fast = compress_manifest(raw, k)
    real, compressed = spec_of(raw).spec, spec_of(fast).spec
    assert compressed.engine.capacity.decode_tokens_per_second == real.engine.capacity.decode_tokens_per_second * k
    assert compressed.engine.cold_start_seconds == real.engine.cold_start_seconds // 12
    assert compressed.policy.scale_down_stabilization_seconds == real.policy.scale_down_stabilization_seconds // 12
    assert compressed.api.pricing == real.api.pricing  # token prices do not move
    # break-even in tokens per second moves with k: the same fraction of one replica's capacity
    before = break_even(real.cost_spec(), Decimal(800), Decimal(400))
    after = break_even(compressed.cost_spec(), Decimal(800), Decimal(400))
    assert before.entry is not None and after.entry is not None
    assert abs(after.entry.tokens_per_second / before.entry.tokens_per_second - k) < Decimal("0.001")
    assert raw["spec"]["engine"]["capacity"]["decodeTokensPerSecond"] == "2000"  # the input is not modified
    # plain digits, as the CRD's decimal pattern wants (Decimal.normalize alone gives "2.4E+4")
    assert fast["spec"]["engine"]["capacity"]["decodeTokensPerSecond"] == "24000"
    assert fast["spec"]["selfHosted"]["pricing"]["rented"]["pricePerGPUHour"] == "30"


def test_azure_trace_reads_relative_times_and_can_be_cut() -> None:
    path = ROOT / "examples" / "traces" / "azure_llm_2023_conv.csv"
    trace = read_azure_trace(path)
    assert len(trace) == len(path.read_text().strip().splitlines()) - 1  # one per row after the header
    assert trace[0].at == 0
    assert trace[0].input_tokens == 374 and trace[0].output_tokens == 44
    assert all(b.at >= a.at for a, b in itertools.pairwise(trace))
    first_minute = read_azure_trace(ROOT / "examples" / "traces" / "azure_llm_2023_conv.csv", max_seconds=60)
    assert 0 < len(first_minute) < 1_000 and first_minute[-1].at <= 60


def test_replayed_prompts_share_no_prefix_so_the_api_bills_them_uncached() -> None:
    """A trace gives sizes, not text: two requests of one size must not look like a prompt-cache hit."""
    cache = PromptCache()
    prompts = [prompt_of(3000, request_id) for request_id in range(3)]
    assert all(len(p) == 3000 * CHARS_PER_TOKEN for p in prompts)
    assert [cache.cached_tokens(p) for p in prompts] == [0, 0, 0]
    assert cache.cached_tokens(prompts[1]) == 2944  # the same request again is a hit: the cache itself works
