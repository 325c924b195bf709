"""The demo's pure parts: time compression keeps the economics, the ledger adds up, the trace reads right."""

from __future__ import annotations

import itertools
from decimal import Decimal
from pathlib import Path

import yaml

from costpolicy.breakeven import break_even
from costpolicy.spec import Capacity
from crossover.api.v1alpha1 import InferenceDeployment
from crossover.demo.compression import compress_manifest
from crossover.demo.ledger import Ledger, static_fleet_size
from crossover.demo.loadgen import read_azure_trace
from tests.costpolicy.conftest import make_spec

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


def test_ledger_bills_replicas_by_the_second_and_prices_tokens_at_api_rates() -> None:
    # $30/h replicas, $1/h overhead; API $1 in, $5 out, $0.10 cached in per million
    spec = make_spec(**{"selfHosted.pricing.rented.pricePerGPUHour": "30", "selfHosted.overheadPerMonth": "730"})
    ledger = Ledger(spec, static_replicas=3)
    ledger.advance(Decimal(60), billed_replicas=2)  # one minute, two replicas at $30/h: $1
    ledger.served(1_000_000, 200_000)  # $1 + $1
    ledger.set_api_spend(Decimal("0.50"))
    assert ledger.replicas == Decimal(1)
    assert ledger.static == Decimal("1.5")
    assert ledger.api_only == Decimal(2)
    overhead = Decimal(730) / (Decimal(730) * 3600) * 60  # $1/h for a minute
    assert ledger.overhead == overhead == ledger.static_overhead
    ledger.advance(Decimal(60), billed_replicas=0)  # no replicas: no overhead for crossover, the static fleet pays
    assert ledger.overhead == overhead and ledger.static_overhead == 2 * overhead
    assert ledger.crossover_total == Decimal(1) + overhead + Decimal("0.50")
    assert ledger.static_total == Decimal(3) + 2 * overhead
    ledger.served(1_000_000, 0, cached_input_tokens=1_000_000)  # cached input at its own price
    assert ledger.api_only == Decimal("2.10")


def test_static_fleet_covers_the_busiest_window_at_target_utilisation() -> None:
    capacity = Capacity(prefill_tokens_per_second=Decimal(10_000), decode_tokens_per_second=Decimal(1_000))
    windows = [(Decimal(1_000), Decimal(100)), (Decimal(5_000), Decimal(1_500))]  # busiest: 0.5 + 1.5 = 2.0
    assert static_fleet_size(windows, capacity, Decimal("0.8"), maximum=8) == 3
    assert static_fleet_size(windows, capacity, Decimal("0.8"), maximum=2) == 2


def test_azure_trace_reads_relative_times_and_can_be_cut() -> None:
    path = ROOT / "examples" / "traces" / "azure_llm_2023_conv.csv"
    trace = read_azure_trace(path)
    assert len(trace) == len(path.read_text().strip().splitlines()) - 1  # one per row after the header
    assert trace[0].at == 0
    assert trace[0].input_tokens == 374 and trace[0].output_tokens == 44
    assert all(b.at >= a.at for a, b in itertools.pairwise(trace))
    first_minute = read_azure_trace(ROOT / "examples" / "traces" / "azure_llm_2023_conv.csv", max_seconds=60)
    assert 0 < len(first_minute) < 1_000 and first_minute[-1].at <= 60
