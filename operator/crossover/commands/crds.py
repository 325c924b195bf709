"""`crossover crds`: write the CRD YAML generated from the pydantic models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crossover.api.crd import CRD_FILENAME, render_crd


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "crds",
        help="generate the InferenceDeployment CRD from the models",
        description="Write the InferenceDeployment CustomResourceDefinition, generated from the pydantic models.",
    )
    parser.add_argument(
        "--out", metavar="DIR", action="append", help="directory to write into, repeatable (default: stdout)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    text = render_crd()
    if args.out is None:
        sys.stdout.write(text)
        return 0
    for directory in args.out:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        (out / CRD_FILENAME).write_text(text)
        print(f"wrote {out / CRD_FILENAME}")
    return 0
