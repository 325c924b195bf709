"""The InferenceDeployment resource: pydantic models that are the single source of the CRD schema."""

from crossover.api.v1alpha1 import (
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    InferenceDeployment,
    InferenceDeploymentSpec,
    InferenceDeploymentStatus,
)

__all__ = [
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "InferenceDeployment",
    "InferenceDeploymentSpec",
    "InferenceDeploymentStatus",
]
