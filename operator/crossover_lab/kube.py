"""Typed doorways into the kubernetes client for the lab: an explicit kubeconfig, plain-dict objects, watches."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

from kubernetes import client, config, watch


def lab_api_client(kubeconfig: Path) -> client.ApiClient:
    return cast(client.ApiClient, config.new_client_from_config(config_file=str(kubeconfig)))  # type: ignore[no-untyped-call]


def plain(api: client.ApiClient, obj: Any) -> Any:
    """A model as the JSON the API server sent (camelCase dicts), which is what the harness reasons about."""
    return api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]


def stream(list_call: Callable[..., Any], **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Watch events ({"type", "object"}) of a list call; ends when the server closes the watch."""
    events: Iterator[dict[str, Any]] = watch.Watch().stream(list_call, **kwargs)  # type: ignore[no-untyped-call]
    return events
