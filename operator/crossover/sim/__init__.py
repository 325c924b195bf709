"""Trace replay: the decision engine and reference policies on real demand, before any cluster exists."""
