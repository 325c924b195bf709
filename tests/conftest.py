"""Shared pytest configuration. Lab fixtures (real control plane, Prometheus, emulators) live in
`tests/fixtures/lab.py` and are loaded as a plugin; they start the lab only when a test asks for it."""

pytest_plugins: list[str] = ["tests.fixtures.lab"]
