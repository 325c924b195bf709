"""Test emulators, named as such: a vLLM server and a hosted OpenAI-compatible API (crossover emulate)."""
