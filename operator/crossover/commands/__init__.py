"""Subcommands of the `crossover` CLI; each module exposes `register(subparsers)`."""
