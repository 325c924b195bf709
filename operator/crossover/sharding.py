"""Shards: several active operators, each reconciling its own share of the InferenceDeployments.

A resource belongs to shard `sha256("namespace/name") mod n` (the first 8 bytes of the digest, big-endian): stable
across restarts, machines and Python versions (unlike `hash()`), and even across shards. Every shard watches all
resources but its kopf handlers are filtered by ownership, so a shard never reconciles, patches, annotates or adds a
finalizer to a resource it does not own. Each shard is its own kopf peering group (active/standby within the shard).
Changing n moves resources between shards; the new owner removes the old layout's finalizer (see main.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


def shard_of(namespace: str, name: str, count: int) -> int:
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= i < n and n >= 1")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`i/n`, e.g. `0/2`."""
        index, slash, count = text.partition("/")
        if not slash or not index.strip().isdigit() or not count.strip().isdigit():
            raise ValueError(f"--shard {text!r}: expected i/n with whole numbers, e.g. 0/2")
        return cls(int(index), int(count))

    @property
    def sharded(self) -> bool:
        return self.count > 1

    def owns(self, namespace: str, name: str) -> bool:
        return not self.sharded or shard_of(namespace, name, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
