"""crossover: a Kubernetes operator that keeps LLM inference at the cheapest point between GPUs and an API."""

__version__ = "0.1.0"
