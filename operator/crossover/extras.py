"""Optional parts of crossover. The operator, the router and the CLI's cost commands need none of them; plots
(matplotlib) and the test rig (`crossover_lab`: the lab, the demo and its live view, the emulators) come with the
`plots` and `lab` extras, so the runtime image carries neither."""

from __future__ import annotations

from importlib.util import find_spec

# the modules each extra brings, as `pip install 'crossover[EXTRA]'` installs them
EXTRAS: dict[str, tuple[str, ...]] = {
    "plots": ("matplotlib",),
    "lab": ("crossover_lab", "rich", "matplotlib"),
}


def missing(extra: str) -> str | None:
    """None when every module of `extra` imports; else one line saying what is missing and how to install it."""
    absent = [module for module in EXTRAS[extra] if find_spec(module) is None]
    if not absent:
        return None
    return f"needs the {extra!r} extra ({', '.join(absent)} not installed): pip install 'crossover[{extra}]'"
