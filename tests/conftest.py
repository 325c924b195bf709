"""Shared pytest configuration. Lab fixtures (real control plane, Prometheus, emulators) live in
`tests/fixtures/lab.py` and are loaded as a plugin so unit tests stay free of them."""

pytest_plugins: list[str] = []
