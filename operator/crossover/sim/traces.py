"""Demand traces: a window series (`window_start_s, input_tokens_per_s, output_tokens_per_s`) or a request-level
trace (`TIMESTAMP, ContextTokens, GeneratedTokens`, the Azure format), told apart by the header.

Token rates are floats: they are measurements, not money. Every dollar the simulator reports is a Decimal.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


class TraceError(ValueError):
    """The file is not a trace this simulator reads; the message says why, in one line."""


MAX_WINDOWS = 2_000_000  # about two years of 30 s windows: beyond that, a typo in a timestamp, not a trace


def _rate(text: str, column: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{column} must be a finite number >= 0, got {text!r}")
    return value


def _tokens(text: str, column: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{column} must be >= 0, got {text!r}")
    return value


@dataclass(frozen=True)
class Window:
    start_s: float
    seconds: float
    input_tps: float
    output_tps: float


@dataclass(frozen=True)
class Trace:
    name: str
    windows: tuple[Window, ...]

    @property
    def duration_s(self) -> float:
        return sum(w.seconds for w in self.windows)

    def mean_tps(self) -> float:
        """Time-weighted mean of input + output tokens per second."""
        total = sum((w.input_tps + w.output_tps) * w.seconds for w in self.windows)
        return total / self.duration_s if self.duration_s else 0.0

    def scaled_to_mean(self, target_tps: float) -> Trace:
        """Both token columns times one factor, so the time-weighted mean of in + out equals `target_tps`."""
        mean = self.mean_tps()
        if mean <= 0:
            raise TraceError("cannot scale a trace with no tokens")
        if not math.isfinite(target_tps) or target_tps <= 0:
            raise TraceError(f"the target mean must be a finite number of tokens/s above 0, got {target_tps}")
        k = target_tps / mean
        return Trace(
            self.name, tuple(Window(w.start_s, w.seconds, w.input_tps * k, w.output_tps * k) for w in self.windows)
        )

    def sliced(self, start_s: float, seconds: float | None = None) -> Trace:
        """The part of the trace in [start_s, start_s + seconds), re-based to start at 0 (windows cut at the edges)."""
        end = self.duration_s if seconds is None else start_s + seconds
        if start_s < 0 or end <= start_s:
            raise TraceError("a slice needs a start >= 0 and a positive length")
        if start_s >= self.duration_s:
            raise TraceError(
                f"the slice starts at {start_s / 3600:g} h, after the trace ends ({self.duration_s / 3600:g} h)"
            )
        windows = []
        for w in self.windows:
            lo, hi = max(start_s, w.start_s), min(end, w.start_s + w.seconds)
            if hi > lo:
                windows.append(Window(lo - start_s, hi - lo, w.input_tps, w.output_tps))
        return Trace(self.name, tuple(windows))

    def rate_at(self, t: float) -> tuple[float, float]:
        """Input and output tokens/s at time t (the window containing t; zero outside the trace)."""
        lo, hi = 0, len(self.windows) - 1
        if not self.windows or t < self.windows[0].start_s or t >= self.windows[-1].start_s + self.windows[-1].seconds:
            return 0.0, 0.0
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.windows[mid].start_s <= t:
                lo = mid
            else:
                hi = mid - 1
        w = self.windows[lo]
        return w.input_tps, w.output_tps


def _window_series(name: str, rows: list[dict[str, str]]) -> Trace:
    starts, ins, outs = [], [], []
    for number, row in enumerate(rows, start=2):
        try:
            start = float(row["window_start_s"])
            if not math.isfinite(start):
                raise ValueError(f"window_start_s must be finite, got {row['window_start_s']!r}")
            starts.append(start)
            ins.append(_rate(row["input_tokens_per_s"], "input_tokens_per_s"))
            outs.append(_rate(row["output_tokens_per_s"], "output_tokens_per_s"))
        except (KeyError, TypeError, ValueError) as error:
            raise TraceError(f"line {number}: {error}") from None
    if len(starts) < 2:
        raise TraceError("a window series needs at least two rows")
    windows = []
    for i, start in enumerate(starts):
        seconds = (starts[i + 1] - start) if i + 1 < len(starts) else (start - starts[i - 1])
        if seconds <= 0:
            raise TraceError(f"line {i + 2}: window_start_s must increase")
        if i >= MAX_WINDOWS:
            raise TraceError(f"more than {MAX_WINDOWS:,} windows")
        windows.append(Window(start - starts[0], seconds, ins[i], outs[i]))
    return Trace(name, tuple(windows))


def _requests(name: str, rows: list[dict[str, str]], bucket_s: float) -> Trace:
    if not math.isfinite(bucket_s) or bucket_s <= 0:
        raise TraceError(f"the bucket (control interval) must be a finite number of seconds above 0, got {bucket_s}")
    events: list[tuple[float, int, int]] = []
    first: datetime | None = None
    for number, row in enumerate(rows, start=2):
        try:
            when = datetime.fromisoformat(row["TIMESTAMP"].strip()[:26])
            first = first or when
            at = (when - first).total_seconds()
            if events and at < events[-1][0]:
                raise ValueError(
                    f"TIMESTAMP {row['TIMESTAMP'].strip()} is earlier than the line before: sort the trace"
                )
            events.append(
                (at, _tokens(row["ContextTokens"], "ContextTokens"), _tokens(row["GeneratedTokens"], "GeneratedTokens"))
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise TraceError(f"line {number}: {error}") from None
    if not events:
        raise TraceError("no requests")
    count = int(events[-1][0] // bucket_s) + 1
    if count > MAX_WINDOWS:
        raise TraceError(
            f"the trace spans {events[-1][0] / 86400:,.0f} days: {count:,} windows of {bucket_s:g} s, more than "
            f"{MAX_WINDOWS:,}"
        )
    ins, outs = [0.0] * count, [0.0] * count
    for at, context, generated in events:
        index = int(at // bucket_s)
        ins[index] += context
        outs[index] += generated
    return Trace(
        name, tuple(Window(i * bucket_s, bucket_s, ins[i] / bucket_s, outs[i] / bucket_s) for i in range(count))
    )


def load_trace(path: Path, bucket_s: float = 30.0) -> Trace:
    """Read either format; request-level traces are bucketed into `bucket_s` windows."""
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            header = {h.strip() for h in (reader.fieldnames or [])}
            rows = list(reader)
    except OSError as error:
        raise TraceError(f"cannot read {path}: {error.strerror}") from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise TraceError(f"{path} is not CSV: {error}") from None
    if {"window_start_s", "input_tokens_per_s", "output_tokens_per_s"} <= header:
        return _window_series(path.name, rows)
    if {"TIMESTAMP", "ContextTokens", "GeneratedTokens"} <= header:
        return _requests(path.name, rows, bucket_s)
    raise TraceError(
        f"{path.name}: unknown header {sorted(header)}; want window_start_s,input_tokens_per_s,output_tokens_per_s "
        "or TIMESTAMP,ContextTokens,GeneratedTokens"
    )
