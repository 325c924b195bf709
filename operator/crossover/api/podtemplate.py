"""`spec.engine.template`: the part of the engine pod a platform team must be able to set (KServe's predictor spec
in spirit: pod fields next to the container's), merged into what crossover generates (reconcile/children.py).

Typed field by field, so the API server refuses a typo or a wrong shape before the operator sees it. Only two
places keep unknown fields, where a full core/v1 schema would be hundreds of lines: `affinity` and a volume's
source (`persistentVolumeClaim`, `secret`, `emptyDir`, ...). The API server still validates both when the
operator applies the Deployment; a refusal there becomes the `SpecValid=False` condition (reconcile/step.py).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from costpolicy.spec import SpecModel
from crossover.contracts import COMPONENT_LABEL, INSTANCE_LABEL

# Kubernetes' own patterns (apimachinery validation): a resource quantity, a label value, a DNS-1123 label
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"

# the labels crossover selects its engine pods by: a template may not move a pod out of its own Deployment
RESERVED_LABELS = (INSTANCE_LABEL, COMPONENT_LABEL)

VOLUME_SOURCES = frozenset(
    {
        "persistentVolumeClaim",
        "secret",
        "configMap",
        "emptyDir",
        "projected",
        "downwardAPI",
        "csi",
        "ephemeral",
        "hostPath",
        "nfs",
        "image",
    }
)


def _quantity(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{value!r} is not a resource quantity such as 16Gi or 4")
    text = str(value)
    if not re.match(QUANTITY_PATTERN, text):
        raise ValueError(f"{text!r} is not a resource quantity such as 16Gi or 4")
    return text


Quantity = Annotated[
    str,
    BeforeValidator(_quantity),
    WithJsonSchema({"x-kubernetes-int-or-string": True, "pattern": QUANTITY_PATTERN}),
]

OpenObject = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]


def _volume(value: dict[str, Any]) -> dict[str, Any]:
    name = value.get("name")
    if not isinstance(name, str) or not re.match(DNS_LABEL_PATTERN, name) or len(name) > 63:
        raise ValueError(f"a volume needs a name that is a DNS label (got {name!r})")
    sources = [key for key in value if key != "name"]
    if len(sources) != 1 or sources[0] not in VOLUME_SOURCES:
        raise ValueError(f"volume {name!r} needs exactly one source such as persistentVolumeClaim (got {sources})")
    return value


Volume = Annotated[
    dict[str, Any],
    AfterValidator(_volume),
    WithJsonSchema(
        {
            "type": "object",
            "description": "A core/v1 Volume: a name and exactly one source (persistentVolumeClaim, secret, ...).",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "maxLength": 63, "pattern": DNS_LABEL_PATTERN},
                **{
                    source: {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    for source in sorted(VOLUME_SOURCES)
                },
            },
            "x-kubernetes-preserve-unknown-fields": True,
            "x-kubernetes-validations": [
                {
                    "rule": " + ".join(f"(has(self.{source}) ? 1 : 0)" for source in sorted(VOLUME_SOURCES)) + " == 1",
                    "message": "a volume needs a name and exactly one source such as persistentVolumeClaim",
                }
            ],
        }
    ),
]


class Toleration(SpecModel):
    key: str | None = Field(default=None, description="Taint key; empty with operator Exists tolerates every taint.")
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Exists or Equal.")
    value: str | None = Field(default=None, description="Taint value for operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; empty tolerates all effects."
    )
    toleration_seconds: int | None = Field(default=None, description="How long a NoExecute taint is tolerated.")


class KeyRef(SpecModel):
    name: str = Field(min_length=1, description="Name of the Secret or ConfigMap, in the resource's namespace.")
    key: str = Field(min_length=1, description="Key within it.")
    optional: bool | None = Field(default=None, description="Start even when the key is missing.")


class FieldRef(SpecModel):
    field_path: str = Field(min_length=1, description="Pod field, e.g. metadata.name or status.podIP.")
    api_version: str | None = Field(default=None, description="Schema version of fieldPath (v1).")


class ResourceFieldRef(SpecModel):
    resource: str = Field(min_length=1, description="Container resource, e.g. limits.memory.")
    container_name: str | None = Field(default=None, description="Container; defaults to the engine.")
    divisor: Quantity | None = Field(default=None, description="Unit of the exposed value.")


class EnvVarSource(SpecModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "(has(self.secretKeyRef) ? 1 : 0) + (has(self.configMapKeyRef) ? 1 : 0) + "
                    "(has(self.fieldRef) ? 1 : 0) + (has(self.resourceFieldRef) ? 1 : 0) == 1",
                    "message": "valueFrom needs exactly one of secretKeyRef, configMapKeyRef, fieldRef, "
                    "resourceFieldRef",
                }
            ]
        }
    )
    secret_key_ref: KeyRef | None = Field(default=None, description="A key of a Secret (e.g. HF_TOKEN).")
    config_map_key_ref: KeyRef | None = Field(default=None, description="A key of a ConfigMap.")
    field_ref: FieldRef | None = Field(default=None, description="A field of the pod.")
    resource_field_ref: ResourceFieldRef | None = Field(default=None, description="A resource of the container.")

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvVarSource:
        sources = (self.secret_key_ref, self.config_map_key_ref, self.field_ref, self.resource_field_ref)
        if sum(s is not None for s in sources) != 1:
            raise ValueError("valueFrom needs exactly one of secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef")
        return self


class EnvVar(SpecModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "!(has(self.value) && has(self.valueFrom))", "message": "set value or valueFrom, not both"}
            ]
        }
    )
    name: str = Field(min_length=1, pattern=ENV_NAME_PATTERN, description="Variable name.")
    value: str | None = Field(default=None, description="A literal value.")
    value_from: EnvVarSource | None = Field(default=None, description="A value read from a Secret, ConfigMap or pod.")

    @model_validator(mode="after")
    def _one_value(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError(f"env {self.name}: set value or valueFrom, not both")
        return self


class LocalRef(SpecModel):
    name: str = Field(min_length=1, description="Name of the object, in the resource's namespace.")
    optional: bool | None = Field(default=None, description="Start even when it is missing.")


class EnvFromSource(SpecModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.secretRef) != has(self.configMapRef)",
                    "message": "envFrom needs exactly one of secretRef or configMapRef",
                }
            ]
        }
    )
    prefix: str | None = Field(default=None, description="Prepended to every key.")
    secret_ref: LocalRef | None = Field(default=None, description="Every key of a Secret.")
    config_map_ref: LocalRef | None = Field(default=None, description="Every key of a ConfigMap.")

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvFromSource:
        if (self.secret_ref is None) == (self.config_map_ref is None):
            raise ValueError("envFrom needs exactly one of secretRef or configMapRef")
        return self


class VolumeMount(SpecModel):
    name: str = Field(min_length=1, max_length=63, description="A volume of template.spec.volumes.")
    mount_path: str = Field(min_length=1, pattern=r"^/", description="Absolute path in the engine container.")
    read_only: bool | None = Field(default=None, description="Mount read-only.")
    sub_path: str | None = Field(default=None, description="Path within the volume.")
    sub_path_expr: str | None = Field(default=None, description="subPath with $(VAR) expansion.")
    mount_propagation: Literal["None", "HostToContainer", "Bidirectional"] | None = Field(
        default=None, description="Mount propagation."
    )


class SeccompProfile(SpecModel):
    type: Literal["RuntimeDefault", "Localhost", "Unconfined"] = Field(description="Seccomp profile kind.")
    localhost_profile: str | None = Field(default=None, description="Profile file for type Localhost.")


class Capabilities(SpecModel):
    add: list[str] = Field(default_factory=list, description="Capabilities to add.")
    drop: list[str] = Field(default_factory=list, description="Capabilities to drop.")


class PodSecurityContext(SpecModel):
    run_as_user: int | None = Field(default=None, ge=0, description="UID of every container.")
    run_as_group: int | None = Field(default=None, ge=0, description="GID of every container.")
    run_as_non_root: bool | None = Field(default=None, description="Refuse to start as root.")
    fs_group: int | None = Field(default=None, ge=0, description="Group owning mounted volumes.")
    fs_group_change_policy: Literal["OnRootMismatch", "Always"] | None = Field(
        default=None, description="When to chown volumes to fsGroup."
    )
    supplemental_groups: list[int] = Field(default_factory=list, description="Extra groups.")
    seccomp_profile: SeccompProfile | None = Field(default=None, description="Seccomp profile of the pod.")


class ContainerSecurityContext(SpecModel):
    allow_privilege_escalation: bool | None = Field(default=None, description="Defaults to false (crossover).")
    privileged: bool | None = Field(default=None, description="Run privileged.")
    read_only_root_filesystem: bool | None = Field(default=None, description="Read-only root filesystem.")
    run_as_user: int | None = Field(default=None, ge=0, description="UID of the engine.")
    run_as_group: int | None = Field(default=None, ge=0, description="GID of the engine.")
    run_as_non_root: bool | None = Field(default=None, description="Refuse to start as root.")
    capabilities: Capabilities | None = Field(default=None, description="Defaults to dropping ALL (crossover).")
    seccomp_profile: SeccompProfile | None = Field(default=None, description="Seccomp profile of the engine.")


class Resources(SpecModel):
    requests: dict[str, Quantity] = Field(
        default_factory=dict, description="cpu, memory, ephemeral-storage, ... (the GPUs come from engine.gpu)."
    )
    limits: dict[str, Quantity] = Field(default_factory=dict, description="Limits beside the GPUs.")


class LocalObjectReference(SpecModel):
    name: str = Field(min_length=1, description="Name of the Secret.")


class ContainerTemplate(SpecModel):
    """What the engine container gets on top of crossover's image, command, ports, probes and GPUs."""

    env: list[EnvVar] = Field(
        default_factory=list, max_length=256, description="Environment, e.g. HF_TOKEN from a Secret."
    )
    env_from: list[EnvFromSource] = Field(
        default_factory=list, max_length=64, description="Whole Secrets or ConfigMaps as env."
    )
    volume_mounts: list[VolumeMount] = Field(
        default_factory=list, max_length=64, description="Mounts of template.spec.volumes."
    )
    security_context: ContainerSecurityContext | None = Field(
        default=None, description="Merged over crossover's (no privilege escalation, all capabilities dropped)."
    )
    resources: Resources = Field(default_factory=Resources, description="Resources beside the GPUs.")


class PodSpecTemplate(SpecModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.container) || !has(self.container.volumeMounts) || "
                    "self.container.volumeMounts.all(m, has(self.volumes) && self.volumes.exists(v, v.name == m.name))",
                    "message": "every volumeMount must name a volume of template.spec.volumes",
                }
            ]
        }
    )
    node_selector: dict[str, Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]] = Field(
        default_factory=dict,
        description="Node labels the engine pods require; a key set here replaces the gpu.type selector.",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=64, description="Taints the engine pods tolerate."
    )
    affinity: OpenObject | None = Field(
        default=None, description="A core/v1 Affinity (nodeAffinity, podAffinity, podAntiAffinity)."
    )
    priority_class_name: str | None = Field(default=None, min_length=1, description="PriorityClass of engine pods.")
    service_account_name: str | None = Field(default=None, min_length=1, description="ServiceAccount of engine pods.")
    runtime_class_name: str | None = Field(default=None, min_length=1, description="RuntimeClass, e.g. nvidia.")
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list, description="Secrets to pull a private engine image."
    )
    security_context: PodSecurityContext | None = Field(default=None, description="Pod security context.")
    volumes: list[Volume] = Field(default_factory=list, max_length=64, description="Volumes, e.g. a model cache PVC.")
    container: ContainerTemplate = Field(default_factory=ContainerTemplate, description="The engine container.")

    @model_validator(mode="after")
    def _mounts_name_volumes(self) -> PodSpecTemplate:
        names = {v["name"] for v in self.volumes}
        missing = sorted({m.name for m in self.container.volume_mounts} - names)
        if missing:
            raise ValueError(f"volumeMounts name volumes that template.spec.volumes does not define: {missing}")
        return self


class TemplateMetadata(SpecModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.labels) || "
                    + " && ".join(f"!('{label}' in self.labels)" for label in RESERVED_LABELS),
                    "message": "labels may not set " + ", ".join(RESERVED_LABELS) + " (crossover selects pods by them)",
                }
            ]
        }
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels on engine pods.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Extra annotations on engine pods.")

    @model_validator(mode="after")
    def _no_reserved(self) -> TemplateMetadata:
        clash = [label for label in RESERVED_LABELS if label in self.labels]
        if clash:
            raise ValueError(f"labels may not set {', '.join(clash)} (crossover selects pods by them)")
        return self


class EngineTemplate(SpecModel):
    """A partial pod template merged into the engine pods crossover generates."""

    metadata: TemplateMetadata = Field(default_factory=TemplateMetadata, description="Labels and annotations.")
    spec: PodSpecTemplate = Field(default_factory=PodSpecTemplate, description="Pod and engine container fields.")
