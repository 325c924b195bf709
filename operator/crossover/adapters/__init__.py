"""Adapters that implement reconcile's ports against the real Kubernetes API and Prometheus."""
