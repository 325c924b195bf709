"""Which replica of a shard is active: kopf runs the live peer of highest priority, and crossover ranks by start."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from crossover.cli import main
from crossover.peering import TIE_BREAKS, seniority_priority


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        # (started_at, tie_break) of two replicas: the earlier start ranks first whatever the tie-breaks
        ((1_800_000_000.0, 0), (1_800_000_001.0, TIE_BREAKS - 1)),
        ((1_800_000_000.9, 5), (1_800_000_060.0, 5)),
        # started in the same second: the tie-break orders them, and they never tie
        ((1_800_000_000.1, 7), (1_800_000_000.8, 6)),
    ],
)
def test_an_earlier_start_outranks_a_later_one(earlier: tuple[float, int], later: tuple[float, int]) -> None:
    assert seniority_priority(*earlier) > seniority_priority(*later) > 0


def test_a_priority_survives_json_exactly() -> None:
    assert seniority_priority(0.0, TIE_BREAKS - 1) < 2**53


@pytest.mark.parametrize("tie_break", [-1, TIE_BREAKS])
def test_a_tie_break_out_of_range_is_refused(tie_break: int) -> None:
    with pytest.raises(ValueError, match="tie_break"):
        seniority_priority(1_800_000_000.0, tie_break)


def test_a_replacement_replica_started_later_ranks_below_the_one_working(monkeypatch: pytest.MonkeyPatch) -> None:
    """The case that flaked in the lab: the standby took over, then the Deployment's replacement pod came up; it must
    wait behind the standby, not take the shard from it."""
    import kopf

    import crossover.memory

    seen: list[int] = []

    def run(**kwargs: Any) -> None:
        seen.append(kwargs["priority"])

    monkeypatch.setattr(kopf, "run", run)
    monkeypatch.setattr(crossover.memory, "keep_trimmed", lambda: None)
    monkeypatch.setattr("crossover.commands.operator._check_peering", lambda name, namespaces: None)
    # the later replica's best luck, whatever the randomness is used for
    monkeypatch.setattr(random, "randrange", lambda n: n - 1)
    monkeypatch.setattr(random, "randint", lambda a, b: b)
    for started in (1_800_000_000.0, 1_800_000_030.0):
        monkeypatch.setattr(time, "time", lambda: started)  # noqa: B023 (used at once)
        assert main(["operator", "--peering", "crossover", "--prometheus-url", "http://127.0.0.1:9"]) == 0
    standby, replacement = seen
    assert standby > replacement
