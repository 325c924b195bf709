"""A slice of a trace as requests to send and as the demand series the simulator sees: one source for both sides.

Either trace format: a request-level trace (Azure: `TIMESTAMP, ContextTokens, GeneratedTokens`) keeps its own
requests, token counts scaled by one factor; a window series (ServeGen: `window_start_s, requests_per_s,
input_tokens_per_s, output_tokens_per_s`) becomes evenly spaced requests carrying each window's tokens, as many as
the trace says unless that exceeds `max_wall_rps` once time is compressed (a 2-core lab cannot send hundreds of
requests a second; fewer, larger requests carry the same tokens, which is what the cost depends on).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from crossover.sim.traces import Trace, TraceError, Window, load_trace
from crossover_lab.demo.loadgen import TraceRequest, read_azure_trace

SIM_BUCKET_S = 30.0  # request-level traces are bucketed like `crossover simulate` does by default


@dataclass(frozen=True)
class Workload:
    name: str
    requests: tuple[TraceRequest, ...]  # `at` in trace seconds from the slice's start
    demand: Trace  # the same tokens as windows, for the simulator (trace time)
    seconds: float  # the slice's length in trace time

    @property
    def tokens(self) -> tuple[int, int]:
        return sum(r.input_tokens for r in self.requests), sum(r.output_tokens for r in self.requests)

    def compressed(self, k: float) -> Trace:
        """The demand in wall time: windows ÷ k, rates × k (see compression.py)."""
        return Trace(
            self.demand.name,
            tuple(Window(w.start_s / k, w.seconds / k, w.input_tps * k, w.output_tps * k) for w in self.demand.windows),
        )


def _header(path: Path) -> set[str]:
    try:
        with path.open(newline="") as handle:
            return {h.strip() for h in (next(csv.reader(handle), None) or [])}
    except OSError as error:
        raise TraceError(f"cannot read {path}: {error.strerror}") from None


def _bucketed(name: str, requests: list[TraceRequest], seconds: float) -> Trace:
    count = max(1, int(-(-seconds // SIM_BUCKET_S)))
    ins, outs = [0.0] * count, [0.0] * count
    for r in requests:
        index = min(count - 1, int(r.at // SIM_BUCKET_S))
        ins[index] += r.input_tokens
        outs[index] += r.output_tokens
    windows = []
    for i in range(count):
        width = min(SIM_BUCKET_S, seconds - i * SIM_BUCKET_S)
        windows.append(Window(i * SIM_BUCKET_S, width, ins[i] / width, outs[i] / width))
    return Trace(name, tuple(windows))


def _requests_per_s(path: Path) -> list[float]:
    with path.open(newline="") as handle:
        return [float(row.get("requests_per_s") or 0) for row in csv.DictReader(handle)]


def load_workload(
    path: Path,
    start_hours: float = 0.0,
    hours: float | None = None,
    scale_mean: float | None = None,
    compress: float = 1.0,
    max_wall_rps: float = 25.0,
) -> Workload:
    """The slice [start_hours, start_hours + hours) of the trace, scaled so mean in+out tokens/s is `scale_mean`."""
    start_s = start_hours * 3600
    span = None if hours is None else hours * 3600
    header = _header(path)
    if {"TIMESTAMP", "ContextTokens", "GeneratedTokens"} <= header:
        every = read_azure_trace(path)
        end_of_trace = every[-1].at if every else 0.0
        if start_s >= end_of_trace:
            raise TraceError(f"the slice starts at {start_hours:g} h, after the trace ends ({end_of_trace / 3600:g} h)")
        seconds = (end_of_trace - start_s) if span is None else span
        chosen = [
            TraceRequest(r.at - start_s, r.input_tokens, r.output_tokens)
            for r in every
            if start_s <= r.at < start_s + seconds
        ]
        if not chosen:
            raise TraceError("no requests in the slice")
        if scale_mean is not None:
            mean = sum(r.input_tokens + r.output_tokens for r in chosen) / seconds
            factor = scale_mean / mean
            chosen = [
                TraceRequest(r.at, max(1, round(r.input_tokens * factor)), max(1, round(r.output_tokens * factor)))
                for r in chosen
            ]
        return Workload(path.name, tuple(chosen), _bucketed(path.name, chosen, seconds), seconds)
    trace = load_trace(path)  # raises TraceError for an unknown header
    rates = _requests_per_s(path) if "requests_per_s" in header else []
    sliced = trace.sliced(start_s, span)
    factor = 1.0 if scale_mean is None else scale_mean / (sliced.mean_tps() or 1.0)
    if scale_mean is not None:
        sliced = sliced.scaled_to_mean(scale_mean)
    requests: list[TraceRequest] = []
    carry = 0.0
    for w in sliced.windows:
        index = min(len(rates) - 1, int((w.start_s + start_s) // trace.windows[0].seconds)) if rates else -1
        # The trace's own request rate, scaled with the tokens, capped at what the lab can send in wall time.
        rate = rates[index] * factor if index >= 0 else 1.0
        rate = min(max(rate, 1e-9), max_wall_rps / compress)
        carry += rate * w.seconds
        count = int(carry)
        carry -= count
        if count == 0 or (w.input_tps + w.output_tps) <= 0:
            continue
        tokens_in, tokens_out = w.input_tps * w.seconds / count, w.output_tps * w.seconds / count
        for j in range(count):
            requests.append(
                TraceRequest(
                    w.start_s + (j + 0.5) * w.seconds / count, max(1, round(tokens_in)), max(1, round(tokens_out))
                )
            )
    if not requests:
        raise TraceError("no requests in the slice")
    seconds = sliced.duration_s
    return Workload(path.name, tuple(requests), _bucketed(path.name, requests, seconds), seconds)
