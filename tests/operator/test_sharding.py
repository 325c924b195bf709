"""Shards: a stable, even split of resources, and a clear error for a bad --shard."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import Counter

import pytest

from crossover.sharding import Shard, shard_of


def test_every_resource_has_exactly_one_owner_among_n_shards() -> None:
    shards = [Shard(i, 3) for i in range(3)]
    for k in range(300):
        owners = [s for s in shards if s.owns("team", f"llm-{k}")]
        assert len(owners) == 1


def test_the_split_is_stable_and_even() -> None:
    # pinned: a shard must own the same resources after a restart, on any machine and Python version
    assert [shard_of("scale", f"llm-{k:04d}", 2) for k in range(12)] == [0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 1, 1]
    assert shard_of("team", "llama", 7) == int.from_bytes(hashlib.sha256(b"team/llama").digest()[:8], "big") % 7
    counts = Counter(shard_of("scale", f"llm-{k:04d}", 4) for k in range(4000))
    assert all(900 < n < 1100 for n in counts.values()), counts


def test_namespace_is_part_of_the_key() -> None:
    assert {shard_of(f"ns-{k}", "llama", 16) for k in range(64)} != {shard_of("ns-0", "llama", 16)}


def test_one_shard_owns_everything() -> None:
    assert Shard().owns("any", "thing") and not Shard().sharded


@pytest.mark.parametrize("text", ["2/2", "-1/2", "0/0", "x", "1", "1/2/3", "a/b"])
def test_a_bad_shard_is_a_one_line_error(text: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "crossover.cli", "operator", "--shard", text], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--shard" in result.stderr.strip().splitlines()[-1]
