"""The InferenceDeployment resource: pydantic models that are the single source of the CRD schema."""

from crossover.api.v1alpha1 import (
    InferenceDeployment,
    InferenceDeploymentSpec,
    InferenceDeploymentStatus,
)

__all__ = [
    "InferenceDeployment",
    "InferenceDeploymentSpec",
    "InferenceDeploymentStatus",
]
