"""The DBRestore and DBAttach resources as pydantic models.

These models are the single source of truth for the API: `python -m dbops crds` renders the
CustomResourceDefinitions in crds/ from them (see crdgen.py), and a test fails when the committed
CRDs differ from what the models render. The operator parses every spec it receives with them.

Validation that the API server can do (patterns, enums, CEL rules) is declared here as schema
extras so that bad input is refused at admission, before any AWS call, with the field named.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.alias_generators import to_camel

GROUP = "dbops.dev"
VERSION = "v1alpha1"

# RDS identifiers: 1-63 letters, digits or hyphens, starting with a letter, no trailing hyphen and
# no two consecutive hyphens (RDS refuses those with InvalidParameterValue).
# (RE2 has no look-around, hence the shape: a letter, then letters/digits or hyphen+letter/digit.)
DB_IDENTIFIER = r"^[a-zA-Z]([a-zA-Z0-9]|-[a-zA-Z0-9])*$"
# Snapshot identifiers: as above (automated ones carry an "rds:" prefix), or a full snapshot ARN.
SNAPSHOT_REF = r"^(arn:aws[a-z-]*:rds:[a-z0-9-]+:[0-9]{12}:(snapshot|cluster-snapshot):)?(rds:)?[a-zA-Z][a-zA-Z0-9-]*$"
# RDS endpoint hostnames in every partition; never resolved through DNS or connected to.
RDS_HOSTNAME = (
    r"^[a-z][a-z0-9-]{0,62}\.(cluster-(ro-|custom-)?)?[a-z0-9]+\.[a-z]{2}(-[a-z]+)+-[0-9]\."
    r"rds\.(amazonaws\.com|amazonaws\.com\.cn|c2s\.ic\.gov|sc2s\.sgov\.gov)$"
)
INSTANCE_CLASS = r"^db\.[a-z0-9]+(-[a-z0-9]+)*\.[a-z0-9]+$"
DURATION = r"^([0-9]+(s|m|h|d))+$"
SG_ID = r"^sg-[0-9a-f]{8,17}$"
REGION = r"^[a-z]{2}(-[a-z]+)+-[0-9]$"

# Generic name for AWS-side resource names we pass through (parameter groups, subnet groups...).
AWS_NAME = r"^[a-zA-Z][a-zA-Z0-9._-]*$"


def rule(expr: str, message: str) -> dict[str, JsonValue]:
    """One CEL validation rule, in the x-kubernetes-validations shape."""
    return {"rule": expr, "message": message}


def exactly_one(*fields: str) -> dict[str, JsonValue]:
    """A CEL rule that exactly one of `fields` is set. The API server prefixes the field path."""
    has = ", ".join(f"has(self.{f})" for f in fields)
    return rule(f"[{has}].filter(x, x).size() == 1", f"set exactly one of {', '.join(fields)}")


def immutable(path: str) -> dict[str, JsonValue]:
    return {"x-kubernetes-validations": [rule("self == oldSelf", f"{path} is immutable")]}


class Model(BaseModel):
    """Base: camelCase field names on the wire, unknown fields refused (the CRD prunes them anyway)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def s(description: str, pattern: str | None = None, max_length: int = 253, **extra: Any) -> Any:
    """A string field; CEL cost estimation needs every string bounded."""
    return Field(None, description=description, pattern=pattern, max_length=max_length, **extra)


class DBReference(Model):
    """A source database: by identifier, or by an endpoint hostname as copied from the console."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [exactly_one("dbInstance", "dbCluster", "endpoint")]}
    )
    db_instance: str | None = s("Identifier of an RDS DB instance.", DB_IDENTIFIER, 63)
    db_cluster: str | None = s("Identifier of an Aurora DB cluster.", DB_IDENTIFIER, 63)
    endpoint: str | None = s(
        "Endpoint hostname of an RDS instance or Aurora cluster (writer, reader or custom endpoint), "
        "e.g. orders.abc123.eu-west-1.rds.amazonaws.com. Resolved to the identifier; never connected to.",
        RDS_HOSTNAME,
    )


class LatestSnapshot(DBReference):
    """The newest snapshot of a source DB instance or cluster."""

    snapshot_type: Literal["any", "automated", "manual"] = Field(
        "any", description="Which snapshots to consider: automated, manual, or any."
    )


class PointInTime(DBReference):
    """A point in time of a source DB instance or cluster (within its backup retention)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                DBReference.model_config["json_schema_extra"]["x-kubernetes-validations"][0],  # type: ignore[index]
                rule(
                    "!(has(self.restoreTime) && has(self.useLatestRestorableTime) && self.useLatestRestorableTime)",
                    "set restoreTime or useLatestRestorableTime, not both",
                ),
            ]
        }
    )

    restore_time: datetime | None = Field(
        None, description="UTC time to restore to (RFC 3339). Leave out to use the latest restorable time."
    )
    use_latest_restorable_time: bool | None = Field(
        None, description="Restore to the latest restorable time (the default when restoreTime is not set)."
    )


class Source(Model):
    """Where the data comes from: exactly one of the fields."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                exactly_one("dbSnapshot", "dbClusterSnapshot", "latestSnapshot", "pointInTime")
            ]
        }
    )
    db_snapshot: str | None = s("A DB (instance) snapshot identifier or ARN.", SNAPSHOT_REF, 255)
    db_cluster_snapshot: str | None = s("An Aurora DB cluster snapshot identifier or ARN.", SNAPSHOT_REF, 255)
    latest_snapshot: LatestSnapshot | None = Field(None, description="The latest snapshot of a source DB.")
    point_in_time: PointInTime | None = Field(None, description="A point in time of a source DB.")


class ClusterInstances(Model):
    """For Aurora: the DB instances created in the restored cluster (a cluster without one is useless)."""

    count: int = Field(1, ge=1, le=15, description="How many instances (the first is the writer).")
    db_instance_class: str | None = s("Instance class; default: the source cluster writer's class.", INSTANCE_CLASS, 64)


class SecretKeyRef(Model):
    name: str = Field(description="Secret in the DBRestore's namespace.", max_length=253)
    key: str = Field("password", description="Key in the Secret's data.", max_length=253)


class MasterPassword(Model):
    """How the master password is set after restore. Never shown in status, events, logs or audit."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [exactly_one("secretRef", "manageMasterUserPassword")]}
    )
    secret_ref: SecretKeyRef | None = Field(None, description="Set the password from a Kubernetes Secret.")
    manage_master_user_password: bool | None = Field(
        None, description="Hand the password to RDS managed passwords (AWS Secrets Manager)."
    )


class Target(Model):
    """The new database, and settings that override what is copied from the source."""

    identifier: str = Field(
        description="Identifier of the new DB instance (or Aurora cluster).",
        pattern=DB_IDENTIFIER,
        max_length=63,
        json_schema_extra=immutable("spec.target.identifier"),
    )
    db_instance_class: str | None = s("Instance class (instances only; see instances for Aurora).", INSTANCE_CLASS, 64)
    db_subnet_group_name: str | None = s("DB subnet group.", AWS_NAME, 255)
    vpc_security_group_ids: list[Annotated[str, Field(pattern=SG_ID, max_length=32)]] | None = Field(
        None, description="VPC security group ids.", max_length=20
    )
    db_parameter_group_name: str | None = s("DB parameter group.", AWS_NAME, 255)
    db_cluster_parameter_group_name: str | None = s("DB cluster parameter group (Aurora).", AWS_NAME, 255)
    option_group_name: str | None = s("Option group (instances only).", AWS_NAME, 255)
    multi_az: bool | None = Field(None, alias="multiAZ", description="Multi-AZ deployment (instances only).")
    storage_type: Literal["gp2", "gp3", "io1", "io2", "standard", "aurora", "aurora-iopt1"] | None = Field(
        None, description="Storage type."
    )
    port: int | None = Field(None, ge=1150, le=65535, description="Port the database listens on.")
    publicly_accessible: bool = Field(False, description="Give the database a public address (default false).")
    deletion_protection: bool | None = Field(None, description="RDS deletion protection.")
    iam_database_authentication: bool | None = Field(None, description="IAM database authentication.")
    tags: dict[str, str] | None = Field(
        None, description="Extra tags on everything dbops creates.", json_schema_extra={"maxProperties": 40}
    )
    instances: ClusterInstances | None = Field(
        None, description="Aurora only: instances to create in the restored cluster (default: 1)."
    )


class DBRestoreSpec(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                rule(
                    "!has(self.ttl) || self.deletionPolicy != 'Retain'",
                    "spec.ttl: needs deletionPolicy Delete or Snapshot (Retain would keep the database forever)",
                ),
            ]
        }
    )
    source: Source = Field(description="Where the data comes from.")
    target: Target = Field(description="The new database.")
    region: str | None = s(
        "AWS region (default: the operator's).", REGION, 32, json_schema_extra=immutable("spec.region")
    )
    master_password: MasterPassword | None = Field(None, description="Set the master password after restore.")
    deletion_policy: Literal["Retain", "Delete", "Snapshot"] = Field(
        "Retain",
        description="What happens to the database when this object is deleted: Retain (default), Delete, or "
        "Snapshot (final snapshot, then delete).",
    )
    ttl: str | None = s(
        "Remove the database this long after it became available (e.g. 72h, 1d12h), per deletionPolicy.",
        DURATION,
        32,
    )


class Condition(Model):
    """A standard Kubernetes condition (KEP-1623)."""

    type: str = Field(max_length=316)
    status: Literal["True", "False", "Unknown"]
    observed_generation: int | None = Field(None, ge=0)
    last_transition_time: datetime
    reason: str = Field(max_length=1024)
    message: str = Field("", max_length=32768)


CONDITIONS_EXTRA: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}

Phase = Literal["Pending", "Restoring", "Available", "Degraded", "Failed", "Deleting", "Expired"]


class DBRestoreStatus(Model):
    """What the operator observed, written by it each pass (status subresource) from the spec and from
    what AWS reports of the databases carrying this object's UID tag. Nothing here steers the operator:
    a value written by someone else is overwritten by the next pass."""

    phase: Phase | None = Field(
        None,
        description="Pending, Restoring, Available, Degraded (available but not usable as asked, e.g. the "
        "password Secret cannot be read), Failed, Deleting, or Expired (removed by the ttl).",
    )
    conditions: list[Condition] | None = Field(None, json_schema_extra=CONDITIONS_EXTRA)
    observed_generation: int | None = None
    source: str | None = Field(None, description="The resolved source, e.g. snapshot:orders-2026-11-20.")
    source_arn: str | None = None
    kind: Literal["instance", "cluster"] | None = Field(None, description="An RDS instance or an Aurora cluster.")
    region: str | None = None
    db_instance_identifier: str | None = None
    db_cluster_identifier: str | None = None
    instance_identifiers: list[str] | None = None
    endpoint: str | None = None
    reader_endpoint: str | None = None
    port: int | None = None
    engine: str | None = None
    engine_version: str | None = None
    rds_status: str | None = Field(None, description="The raw RDS status.")
    restore_time: datetime | None = None
    start_time: datetime | None = Field(None, description="When dbops first saw the request.")
    restore_call_time: datetime | None = Field(
        None, description="When dbops made the restore call (or found its own database after a restart)."
    )
    completion_time: datetime | None = Field(None, description="When the database first became available.")
    expires_at: datetime | None = Field(
        None, description="When the ttl removes the database: its creation time in RDS plus spec.ttl."
    )
    retry_token: str | None = Field(None, description="The dbops.dev/retry annotation value of the last failure.")


class ClusterRef(Model):
    """The Aurora cluster to extend: exactly one of the fields."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [exactly_one("dbCluster", "endpoint", "dbRestoreRef")]}
    )
    db_cluster: str | None = s("Identifier of the Aurora cluster.", DB_IDENTIFIER, 63)
    endpoint: str | None = s(
        "An endpoint hostname of the cluster (cluster, reader or custom endpoint); resolved, never connected to.",
        RDS_HOSTNAME,
    )
    db_restore_ref: str | None = s(
        "Name of a DBRestore in this namespace: wait until it is Available, then extend its cluster.",
        r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        253,
    )


class PerformanceInsights(Model):
    enabled: bool = Field(True, description="Turn Performance Insights on.")
    retention_period: int | None = Field(
        None, ge=7, le=731, description="Days to keep data: 7 (free tier), or a multiple of 31 up to 731."
    )
    kms_key_id: str | None = s("KMS key for Performance Insights data.", max_length=2048)


class Monitoring(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                rule("self.interval == 0 || has(self.roleArn)", "roleArn is required when interval is not 0")
            ]
        }
    )
    interval: Literal[0, 1, 5, 10, 15, 30, 60] = Field(0, description="Enhanced Monitoring interval in seconds.")
    role_arn: str | None = s("IAM role that lets RDS send Enhanced Monitoring metrics.", r"^arn:aws[a-z-]*:iam::", 2048)


class DBAttachSpec(Model):
    """Add reader instance(s) to an existing Aurora cluster. Engine and version always come from the
    cluster; cluster-owned settings (network, ports, storage) are never set on the instances."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                exactly_one("identifier", "identifierPrefix"),
                rule(
                    "!has(self.identifier) || self.count == 1",
                    "spec.identifier names one instance: use identifierPrefix for count > 1",
                ),
            ]
        }
    )
    cluster: ClusterRef = Field(description="The Aurora cluster to extend.")
    identifier: str | None = s(
        "Identifier of the one new instance.", DB_IDENTIFIER, 63, json_schema_extra=immutable("spec.identifier")
    )
    identifier_prefix: str | None = s(
        "Prefix of the new instances' identifiers: <prefix>-1 ... <prefix>-<count>.",
        DB_IDENTIFIER,
        60,
        json_schema_extra=immutable("spec.identifierPrefix"),
    )
    count: int = Field(1, ge=1, le=15, description="How many instances; change it to scale out or in.")
    db_instance_class: str | None = s("Instance class; default: the writer's.", INSTANCE_CLASS, 64)
    availability_zones: (
        list[Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9][a-z]$", max_length=32)]] | None
    ) = Field(None, max_length=16, description="Zones to place instances in, in turn; default: the cluster's.")
    promotion_tier: int | None = Field(None, ge=0, le=15, description="Failover priority (0 is highest).")
    db_parameter_group_name: str | None = s("DB parameter group; default: the writer's.", AWS_NAME, 255)
    performance_insights: PerformanceInsights | None = Field(None, description="Performance Insights settings.")
    monitoring: Monitoring | None = Field(None, description="Enhanced Monitoring settings.")
    publicly_accessible: bool = Field(False, description="Give the instances public addresses (default false).")
    tags: dict[str, str] | None = Field(
        None, description="Extra tags on the instances.", json_schema_extra={"maxProperties": 40}
    )
    region: str | None = s(
        "AWS region (default: the operator's).", REGION, 32, json_schema_extra=immutable("spec.region")
    )
    deletion_policy: Literal["Retain", "Delete"] = Field(
        "Retain",
        description="Retain (default) or Delete the instances when this object is deleted (never the "
        "cluster, never the writer).",
    )


class AttachedInstance(Model):
    identifier: str
    availability_zone: str | None = None
    endpoint: str | None = None
    role: Literal["writer", "reader"] | None = None
    rds_status: str | None = None


class DBAttachStatus(Model):
    phase: Literal["Pending", "Attaching", "Available", "Failed", "Deleting"] | None = None
    conditions: list[Condition] | None = Field(None, json_schema_extra=CONDITIONS_EXTRA)
    observed_generation: int | None = None
    db_cluster_identifier: str | None = None
    region: str | None = None
    engine: str | None = None
    endpoint: str | None = Field(None, description="The cluster's reader endpoint.")
    ready: str | None = Field(None, description="Ready instances / desired, e.g. 2/3.")
    instances: list[AttachedInstance] | None = Field(None, max_length=64)
    start_time: datetime | None = Field(None, description="When the current round of work (attach or scale) started.")
    completion_time: datetime | None = Field(None, description="When that round ended with all instances available.")
    retry_token: str | None = Field(None, description="The dbops.dev/retry annotation value of the last failure.")


class Resource(BaseModel):
    """How a model pair is served as a CRD."""

    kind: str
    plural: str
    short_name: str
    spec: type[BaseModel]
    status: type[BaseModel]
    columns: list[dict[str, Any]]


RESOURCES = [
    Resource(
        kind="DBRestore",
        plural="dbrestores",
        short_name="dbr",
        spec=DBRestoreSpec,
        status=DBRestoreStatus,
        columns=[
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Source", "type": "string", "jsonPath": ".status.source"},
            {"name": "Target", "type": "string", "jsonPath": ".spec.target.identifier"},
            {"name": "Endpoint", "type": "string", "jsonPath": ".status.endpoint"},
            {"name": "RDS Status", "type": "string", "jsonPath": ".status.rdsStatus"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            {
                "name": "Message",
                "type": "string",
                "priority": 1,
                "jsonPath": '.status.conditions[?(@.type=="Ready")].message',
            },
        ],
    ),
    Resource(
        kind="DBAttach",
        plural="dbattaches",
        short_name="dba",
        spec=DBAttachSpec,
        status=DBAttachStatus,
        columns=[
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Cluster", "type": "string", "jsonPath": ".status.dbClusterIdentifier"},
            {"name": "Instances", "type": "string", "jsonPath": ".status.ready"},
            {"name": "Endpoint", "type": "string", "jsonPath": ".status.endpoint"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    ),
]
