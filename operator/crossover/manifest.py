"""Reading InferenceDeployment manifests from files, with one clear line per problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from crossover.api.v1alpha1 import InferenceDeployment
from crossover.contracts import KIND


class ManifestError(ValueError):
    """A manifest that cannot be used; the message is one line a user can act on."""


def describe_validation_error(error: ValidationError) -> str:
    """`spec.replicas: replicas.min (3) must be <= replicas.max (2)`, joined by '; ' when there are several."""
    parts = []
    for item in error.errors():
        location = ".".join(str(p) for p in item["loc"] if not str(p).startswith("function-"))
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)


def parse_inference_deployment(document: Any, source: str = "manifest") -> InferenceDeployment:
    if not isinstance(document, dict):
        raise ManifestError(f"{source}: expected a YAML mapping, got {type(document).__name__}")
    if document.get("kind") != KIND:
        raise ManifestError(f"{source}: kind is {document.get('kind')!r}, expected {KIND!r}")
    try:
        return InferenceDeployment.model_validate(document)
    except ValidationError as error:
        raise ManifestError(f"{source}: {describe_validation_error(error)}") from None


def load_inference_deployment(path: str | Path) -> InferenceDeployment:
    """The first InferenceDeployment in a (possibly multi-document) YAML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ManifestError(f"{path}: cannot read: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ManifestError(f"{path}: not UTF-8 text (byte {error.start})") from None
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ManifestError(f"{path}: not valid YAML{where}") from None
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == KIND:
            return parse_inference_deployment(document, str(path))
    raise ManifestError(f"{path}: no {KIND} found")
