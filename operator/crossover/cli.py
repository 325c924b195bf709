"""The `crossover` console command: one entry point, one subcommand per job.

Each subcommand lives in its own module under `crossover.commands` (or next to what it drives) and exposes
`register(subparsers)`, which adds a parser whose `func` default runs the command and returns an exit code.
Modules are imported lazily by name so that `crossover breakeven` does not pay for kopf or matplotlib.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from crossover import __version__

# Module paths that define subcommands, in the order `--help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "crossover.commands.breakeven",
    "crossover.commands.simulate",
    "crossover.commands.bench",
    "crossover.commands.crds",
    "crossover.commands.operator",
    "crossover.commands.lab",
    "crossover.commands.router",
    "crossover.commands.emulate",
    "crossover.commands.replay",
    "crossover.commands.whatif",
    "crossover.commands.demo",
)


class _OneLineErrors(argparse.ArgumentParser):
    """Usage mistakes as one line on stderr and exit status 2 (`--help` still shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(
        prog="crossover",
        description=(
            "Cost-aware LLM inference on Kubernetes: scale vLLM GPU replicas or spill traffic to a hosted "
            "OpenAI-compatible API whenever the live cost per token crosses the break-even."
        ),
    )
    parser.add_argument("--version", action="version", version=f"crossover {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
