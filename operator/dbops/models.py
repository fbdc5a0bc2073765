"""The DBRestore and DBAttach resources as pydantic models.

These models are the single source of truth for the API: `python -m dbops crds` renders the
CustomResourceDefinitions in crds/ from them (see crdgen.py), and a test fails when the committed
CRDs differ from what the models render. The operator parses every spec it receives with them.

Validation that the API server can do is declared here as CEL rules in plain words (see cel.py), so that
bad input is refused at admission, before any AWS call, with the field named. The operator's own parse
checks types only: it never refuses an object that admission let through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from dbops.cel import (
    IMMUTABLE,
    Rule,
    Syntax,
    ceiling,
    cel_string,
    exactly_one,
    fixed_once_created,
    is_set,
    item,
    items,
    one_of_words,
    rule,
    text,
)

GROUP = "dbops.dev"
VERSION = "v1alpha1"

# RDS identifiers: RDS stores them (and snapshot, parameter, option and subnet group names) in lower case,
# so an upper-case one names a database other than the one dbops then looks for. No hyphen at the end and
# no two in a row (RDS refuses those). RE2 has no look-around, hence the shape: a letter, then letters or
# digits, each perhaps after one hyphen.
_ID = r"[a-z](-?[a-z0-9])*"
_ID_WORDS = (
    "lower-case letters, digits or hyphens, start with a letter, and not end with a hyphen or contain two "
    "hyphens in a row"
)
IDENTIFIER = Syntax(f"^{_ID}$", "1 to {max} " + _ID_WORDS, 63)
# Snapshots: an identifier (automated ones start with "rds:") or the snapshot's ARN; the name after the
# last colon is what RDS limits to 255. A contradicting ARN type has a rule of its own, with its own words.
_ARN_HEAD = r"arn:aws(-[a-z]+)*:rds:[a-z]{2}(-[a-z]+)+-[0-9]+:[0-9]{12}:(cluster-)?snapshot:"


def snapshot_ref(arn_type: str) -> Syntax:
    return Syntax(
        f"^({_ARN_HEAD})?(rds:)?{_ID}$",
        "a snapshot identifier (1 to {max} lower-case letters, digits or hyphens, starting with a letter, not "
        "ending with a hyphen or containing two hyphens in a row; rds: before an automated one) or its ARN, "
        f"arn:aws:rds:REGION:ACCOUNT:{arn_type}:NAME",
        255,
        measured="self.substring(self.lastIndexOf(':') + 1)",
    )


# Parameter and option groups: as identifiers, and the periods and colons of AWS's default groups
# (default.postgres16, default:mysql-8-0).
GROUP_NAME = Syntax(
    r"^[a-z](-?[a-z0-9.:])*$",
    "1 to {max} lower-case letters, digits, hyphens, periods or colons (as in default.postgres16), start with a "
    "letter, and not end with a hyphen or contain two hyphens in a row",
    255,
)
SUBNET_GROUP = Syntax(
    r"^[a-z0-9 ._-]+$", "1 to {max} lower-case letters, digits, spaces, periods, underscores or hyphens", 255
)
INSTANCE_CLASS = Syntax(
    r"^db\.[a-z0-9]+(-[a-z0-9]+)*(\.[a-z0-9]+)*$", "an instance class such as db.r6g.large or db.serverless", 64
)
SG_ID = Syntax(r"^sg-([0-9a-f]{8}|[0-9a-f]{17})$", "a security group id: sg- and 8 or 17 hexadecimal digits", 20)
REGION = Syntax(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$", "an AWS region such as us-east-1", 32)
ZONE = Syntax(
    r"^[a-z]{2}(-[a-z]+)+-[0-9]+(-[a-z]+-[0-9]+)?[a-z]$",
    "an availability zone such as eu-west-1a (or a Local Zone such as us-west-2-lax-1a)",
    32,
)
# RDS endpoint hostnames in every partition; never resolved through DNS or connected to.
RDS_HOSTNAME = (
    r"^[a-z][a-z0-9-]{0,62}\.(cluster-(ro-|custom-)?)?[a-z0-9]+\.[a-z]{2}(-[a-z]+)+-[0-9]\."
    r"rds\.(amazonaws\.com|amazonaws\.com\.cn|c2s\.ic\.gov|sc2s\.sgov\.gov)$"
)
HOSTNAME = Syntax(
    RDS_HOSTNAME, "an RDS endpoint hostname such as orders.abc123xyz.eu-west-1.rds.amazonaws.com (lower case)", 253
)
# Kubernetes' own rules: object names are DNS subdomains; Secret data keys are [-._a-zA-Z0-9]+ but not
# "." and not starting with "..".
OBJECT_NAME = Syntax(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    "a Kubernetes object name: 1 to {max} lower-case letters, digits, hyphens or periods, with a letter or digit "
    "at the start, at the end and on each side of a period",
    253,
)
SECRET_KEY = Syntax(
    r"^\.?[-_a-zA-Z0-9][-._a-zA-Z0-9]*$",
    "a Secret data key: 1 to {max} letters, digits, hyphens, underscores or periods, not . and not starting with ..",
    253,
)
ROLE_ARN = Syntax(
    r"^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/[-\w+=,.@/]+$",
    "an IAM role ARN such as arn:aws:iam::123456789012:role/rds-monitoring-role",
    2048,
)
# Durations: whole days, hours, minutes and seconds, largest first, so that CEL can add them up.
DURATION = Syntax(
    r"^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$",
    "a duration such as 30m, 72h or 1d12h (days, hours, minutes and seconds, largest first)",
    32,
)
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
# ttl bounds, as written and in seconds. Below 10 minutes a ttl is taken for a mistake (0s, or 30s for 30d):
# a restore alone takes longer, and RDS bills a started instance for 10 minutes anyway. Above ten years it
# is no preview (leave ttl out), and the operator's date arithmetic would overflow on absurd ones.
TTL_MIN = ("10m", 10 * 60)
TTL_MAX = ("3650d", 3650 * 86400)


def _seconds(value: str) -> str:
    """CEL: the seconds in `value`, a duration that DURATION accepts (each unit at most once)."""
    terms = [
        f"({value}.find('[0-9]+{u}') == '' ? 0 : int({value}.find('[0-9]+{u}').replace('{u}', '')) * {n})"
        for u, n in _UNIT_SECONDS.items()
    ]
    return " + ".join(terms)


def duration_between(low: tuple[str, int], high: tuple[str, int]) -> list[Rule]:
    """A well-formed duration (DURATION's rule reports the others) from `low` to `high`. A number of ten
    digits or more is over `high` in any unit, and is never added up (CEL's int would overflow)."""
    malformed, huge = f"!({DURATION.check()})", "self.matches('[0-9]{10}')"
    return [
        rule(f"{malformed} || {huge} || {_seconds('self')} >= {low[1]}", f"must be at least {low[0]}"),
        rule(f"{malformed} || (!{huge} && {_seconds('self')} <= {high[1]})", f"must be at most {high[0]}"),
    ]


# RDS tags, as AWS documents them: keys of 1 to 128 and values of at most 256 Unicode letters, digits,
# spaces and _ . : / = + - @; keys starting with aws: or rds: are AWS's. Keys starting with dbops.dev/ are
# the ownership tags dbops writes itself: one set by a user could pass a database off as another object's.
MAX_TAGS = 40  # RDS allows 50 on a resource; dbops adds its own
_TAG_CHARS = r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$"
_TAG_WORDS = "letters, digits, spaces or any of _ . : / = + - @"
TAG_RULES = [
    rule(f"size(self) <= {MAX_TAGS}", f"must have at most {MAX_TAGS} tags (RDS allows 50, and dbops adds its own)"),
    rule(
        f"self.all(k, size(k) >= 1 && size(k) <= 128 && k.matches({cel_string(_TAG_CHARS)}))",
        f"keys must be 1 to 128 {_TAG_WORDS}",
    ),
    rule(
        "self.all(k, !k.lowerAscii().startsWith('aws:') && !k.lowerAscii().startsWith('rds:'))",
        "keys must not start with aws: or rds: (AWS reserves those)",
    ),
    rule(
        f"self.all(k, !k.lowerAscii().startsWith('{GROUP}/'))",
        f"keys must not start with {GROUP}/ (dbops writes those tags itself)",
    ),
    rule(
        f"self.all(k, size(self[k]) <= 256 && self[k].matches({cel_string(_TAG_CHARS)}))",
        f"values must be at most 256 {_TAG_WORDS}",
    ),
]
Tags = dict[str, Annotated[str, Field(max_length=ceiling(256))]]


def tags(description: str) -> Any:
    return Field(
        None,
        description=f"{description} At most {MAX_TAGS}; keys 1 to 128 and values up to 256 {_TAG_WORDS}; "
        f"keys starting with aws:, rds: or {GROUP}/ are reserved.",
        json_schema_extra={"maxProperties": ceiling(MAX_TAGS), "x-kubernetes-validations": [*TAG_RULES]},
    )


# Which kind of database a source is, known from the spec alone: a snapshot's field says it; a source DB by
# identifier too; an endpoint hostname's second label starts with cluster- (cluster-ro-, cluster-custom-)
# for an Aurora cluster's endpoints. restore.source_ref decides it the same way.
Kind = Literal["instance", "cluster"]
_KIND_WORDS: dict[Kind, str] = {"instance": "DB instances", "cluster": "Aurora clusters"}
_SOURCE_WORDS: dict[Kind, str] = {"instance": "a DB instance", "cluster": "an Aurora cluster"}
_OTHER: dict[Kind, Kind] = {"instance": "cluster", "cluster": "instance"}


def _ref_is(ref: str, kind: Kind) -> str:
    """CEL: the DB reference at `ref` (dbInstance, dbCluster or endpoint) names a source of `kind`."""
    own = "dbCluster" if kind == "cluster" else "dbInstance"
    cluster_host = f"{ref}.endpoint.matches('^[^.]+[.]cluster-')"
    return f"has({ref}.{own}) || (has({ref}.endpoint) && {'' if kind == 'cluster' else '!'}{cluster_host})"


def source_is(kind: Kind) -> str:
    """CEL, on a DBRestore spec: its source is of `kind`."""
    snapshot = "dbClusterSnapshot" if kind == "cluster" else "dbSnapshot"
    refs = [
        f"(has(self.source.{m}) && ({_ref_is(f'self.source.{m}', kind)}))" for m in ("latestSnapshot", "pointInTime")
    ]
    return " || ".join([f"has(self.source.{snapshot})", *refs])


@dataclass(frozen=True)
class KindOnly:
    """A spec.target setting that RDS takes for one kind of source only: refused for the other kind, at
    admission (rule) and by the operator (applies) alike, in the same words."""

    field: str  # its name under spec.target
    kind: Kind
    values: tuple[str, ...] = ()  # only these values of it are kind-specific (none: any value)
    hint: str = ""

    def predicate(self) -> str:
        source = f"spec.source is {_SOURCE_WORDS[_OTHER[self.kind]]}{self.hint}"
        if self.values:
            return (
                f"must not be {one_of_words(list(self.values))}: those apply to {_KIND_WORDS[self.kind]}, and {source}"
            )
        return f"applies to {_KIND_WORDS[self.kind]} only, and {source}"

    def message(self) -> str:
        return f"spec.target.{self.field} {self.predicate()}"

    def applies(self, source: Kind, target: dict[str, Any]) -> bool:
        """Whether `target` (spec.target as written, camelCase, unset fields left out) suits a `source`."""
        if source == self.kind or self.field not in target:
            return True
        return bool(self.values) and target[self.field] not in self.values

    def rule(self) -> Rule:
        value = f"self.target.{self.field}"
        listed = f" && {value} in [{', '.join(cel_string(v) for v in self.values)}]" if self.values else ""
        expr = f"!(({source_is(_OTHER[self.kind])}) && has({value}){listed})"
        return rule(expr, self.predicate(), field=f".target.{self.field}", reason="FieldValueForbidden")


# Together, the values of Target.storage_type.
AURORA_STORAGE = ("aurora", "aurora-iopt1")
INSTANCE_STORAGE = ("gp2", "gp3", "io1", "io2", "standard")
# dbParameterGroupName is not here: on Aurora it is the parameter group of the cluster's instances.
TARGET_KIND_ONLY = (
    KindOnly("instances", "cluster"),
    KindOnly("dbClusterParameterGroupName", "cluster"),
    KindOnly("storageType", "cluster", AURORA_STORAGE),
    KindOnly("multiAZ", "instance"),
    KindOnly("dbInstanceClass", "instance", hint=": for Aurora set spec.target.instances.dbInstanceClass"),
    KindOnly("optionGroupName", "instance"),
    KindOnly("storageType", "instance", INSTANCE_STORAGE),
)


def same_region(path: str, syntax: Syntax, sep: str, index: int) -> Rule:
    """On a spec: the region that the value at `path` names (its part `index` when split at `sep`, as in an
    ARN or an endpoint hostname) is spec.region, when both are set and the value is well-formed."""
    value = f"self.{path}"
    part = f"{value}.split('{sep}')"
    expr = (
        f"!has(self.region) || !({is_set(value)}) || !({syntax.check(value)}) || {part}.size() <= {index} "
        f"|| {part}[{index}] == self.region"
    )
    message = f"'is in region ' + {part}[{index}] + ', but spec.region is ' + self.region"
    return rule(expr, message, field=f".{path}", dynamic=True)


class Model(BaseModel):
    """Base: camelCase field names on the wire, unknown fields refused (the CRD prunes them anyway)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def validations(*rules: Rule) -> ConfigDict:
    """A model's own CEL rules (across its fields)."""
    return ConfigDict(json_schema_extra={"x-kubernetes-validations": list(rules)})


_ONE_REF = exactly_one("dbInstance", "dbCluster", "endpoint")


class DBReference(Model):
    """A source database: by identifier, or by an endpoint hostname as copied from the console."""

    model_config = validations(_ONE_REF)
    db_instance: str | None = text("Identifier of an RDS DB instance.", IDENTIFIER)
    db_cluster: str | None = text("Identifier of an Aurora DB cluster.", IDENTIFIER)
    endpoint: str | None = text(
        "Endpoint hostname of an RDS instance or Aurora cluster (writer, reader or custom endpoint), "
        "e.g. orders.abc123.eu-west-1.rds.amazonaws.com. Resolved to the identifier; never connected to.",
        HOSTNAME,
    )


class LatestSnapshot(DBReference):
    """The newest snapshot of a source DB instance or cluster."""

    snapshot_type: Literal["any", "automated", "manual"] = Field(
        "any", description="Which snapshots to consider: automated, manual, or any (the default)."
    )


class PointInTime(DBReference):
    """A point in time of a source DB instance or cluster (within its backup retention)."""

    model_config = validations(
        _ONE_REF,
        rule(
            "!(has(self.restoreTime) && has(self.useLatestRestorableTime) && self.useLatestRestorableTime)",
            "must set restoreTime or useLatestRestorableTime, not both",
        ),
    )

    restore_time: datetime | None = Field(
        None, description="UTC time to restore to (RFC 3339). Leave out to use the latest restorable time."
    )
    use_latest_restorable_time: bool | None = Field(
        None, description="Restore to the latest restorable time (the default when restoreTime is not set)."
    )


class Source(Model):
    """Where the data comes from: exactly one of the fields."""

    model_config = validations(exactly_one("dbSnapshot", "dbClusterSnapshot", "latestSnapshot", "pointInTime"))
    db_snapshot: str | None = text(
        "A DB (instance) snapshot identifier or ARN.",
        snapshot_ref("snapshot"),
        rule(
            "!self.matches('^arn:[^:]+:rds:[^:]+:[^:]+:cluster-snapshot:')",
            "is a cluster snapshot ARN: name it in spec.source.dbClusterSnapshot",
        ),
    )
    db_cluster_snapshot: str | None = text(
        "An Aurora DB cluster snapshot identifier or ARN.",
        snapshot_ref("cluster-snapshot"),
        rule(
            "!self.matches('^arn:[^:]+:rds:[^:]+:[^:]+:snapshot:')",
            "is a DB instance snapshot ARN: name it in spec.source.dbSnapshot",
        ),
    )
    latest_snapshot: LatestSnapshot | None = Field(None, description="The latest snapshot of a source DB.")
    point_in_time: PointInTime | None = Field(None, description="A point in time of a source DB.")


class ClusterInstances(Model):
    """For Aurora: the DB instances created in the restored cluster (a cluster without one is useless)."""

    count: int = Field(1, ge=1, le=15, description="How many instances (the first is the writer).")
    db_instance_class: str | None = text("Instance class; default: the source cluster writer's class.", INSTANCE_CLASS)


class SecretKeyRef(Model):
    """A key of a Secret in the DBRestore's namespace."""

    name: str = text("Secret in the DBRestore's namespace.", OBJECT_NAME, default=...)
    key: str = text("Key in the Secret's data.", SECRET_KEY, default="password")


class MasterPassword(Model):
    """How the master password is set after restore. Never shown in status, events, logs or audit."""

    model_config = validations(exactly_one("secretRef", "manageMasterUserPassword"))
    secret_ref: SecretKeyRef | None = Field(None, description="Set the password from a Kubernetes Secret.")
    manage_master_user_password: bool | None = Field(
        None, description="Hand the password to RDS managed passwords (AWS Secrets Manager)."
    )


ConnectionKind = Literal["Secret", "ConfigMap"]


def _connection_name(owner: str, upkeep: str = "") -> Any:
    """spec.connection.name, worded once for both kinds: what dbops promises about the object it writes."""
    return text(
        f"Name of the Secret (or ConfigMap) in the {owner}'s namespace. dbops creates it, owned by the "
        f"{owner} (it goes with it), and keeps it up to date{upkeep}; it never writes into one it did not "
        "create.",
        OBJECT_NAME,
        default=...,
    )


def _connection_kind(keys: str) -> Any:
    return Field("Secret", description=f"Secret (the default) or ConfigMap{keys}")


class Connection(Model):
    """Where dbops writes how to reach the restored database, for the applications that use it."""

    name: str = _connection_name("DBRestore")
    kind: ConnectionKind = _connection_kind(
        ". Keys: endpoint, readerEndpoint (Aurora), port, engine, username, database (when RDS has one), "
        "password (only in a Secret, and only when spec.masterPassword.secretRef set it), masterUserSecretArn "
        "(RDS-managed passwords: the Secrets Manager secret that holds it)."
    )


class Target(Model):
    """The new database, and settings that override what is copied from the source."""

    identifier: str = text(
        "Identifier of the new DB instance (or Aurora cluster). Immutable.", IDENTIFIER, IMMUTABLE, default=...
    )
    db_instance_class: str | None = text("Instance class (instances only; see instances for Aurora).", INSTANCE_CLASS)
    db_subnet_group_name: str | None = text("DB subnet group.", SUBNET_GROUP)
    vpc_security_group_ids: list[Annotated[str, item("A VPC security group id.", SG_ID)]] | None = items(
        "VPC security group ids.", 20
    )
    db_parameter_group_name: str | None = text(
        "DB parameter group (for Aurora: of the cluster's instances).", GROUP_NAME
    )
    db_cluster_parameter_group_name: str | None = text("DB cluster parameter group (Aurora only).", GROUP_NAME)
    option_group_name: str | None = text("Option group (instances only).", GROUP_NAME)
    multi_az: bool | None = Field(None, alias="multiAZ", description="Multi-AZ deployment (instances only).")
    storage_type: Literal["gp2", "gp3", "io1", "io2", "standard", "aurora", "aurora-iopt1"] | None = Field(
        None,
        description="Storage type: gp2, gp3, io1, io2 or standard for instances, aurora or aurora-iopt1 for "
        "Aurora clusters.",
    )
    port: int | None = Field(None, ge=1150, le=65535, description="Port the database listens on.")
    publicly_accessible: bool = Field(False, description="Give the database a public address (default false).")
    deletion_protection: bool | None = Field(None, description="RDS deletion protection.")
    iam_database_authentication: bool | None = Field(None, description="IAM database authentication.")
    tags: Tags | None = tags("Extra tags on everything dbops creates.")
    instances: ClusterInstances | None = Field(
        None, description="Aurora only: instances to create in the restored cluster (default: 1)."
    )


# --- verification: SQL probes against the restored database (DBRestore spec.verify) -------------------

PROBE_NAME = Syntax(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    "1 to {max} lower-case letters, digits or hyphens, starting and ending with a letter or digit",
    63,
)
DATABASE_NAME = Syntax(
    r"^[A-Za-z_][A-Za-z0-9_$-]*$",
    "a database name: 1 to {max} letters, digits, underscores, dollar signs or hyphens, starting with a letter or "
    "an underscore",
    63,
)
MAX_PROBES = 20
MAX_QUERY = 4096
MAX_ROWS = 10000  # minRows is counted by fetching rows: a bound keeps a probe's memory small
PROBE_TIMEOUT = (("1s", 1), ("10m", 600))
CONNECT_WITHIN = (("0s", 0), ("6h", 6 * 3600))


class Comparison(Model):
    """The first column of the first row, read as a number, compared with a bound."""

    op: Literal["<", "<=", "==", "!=", ">=", ">"] = Field(description="How the value compares: <, <=, ==, !=, >= or >.")
    value: float = Field(description="The bound, e.g. 1000 for a row count.")


class Expectation(Model):
    """What the probe's result must be: exactly one of the fields."""

    model_config = validations(exactly_one("minRows", "compare", "equals"))
    min_rows: int | None = Field(
        None, ge=1, le=MAX_ROWS, description=f"The query returns at least this many rows (1 to {MAX_ROWS})."
    )
    compare: Comparison | None = Field(None, description="The first column of the first row compared with a number.")
    equals: str | None = Field(
        None, max_length=ceiling(256), description="The first column of the first row, as text, equals this."
    )


class Probe(Model):
    """One query run against the restored database, in a read-only transaction, and what it must return."""

    name: str = text("Name of the probe, as status and the audit trail show it.", PROBE_NAME, default=...)
    query: str = Field(
        description=f"A SQL query (at most {MAX_QUERY} characters), run read-only, e.g. a count of the "
        "orders of the last day.",
        max_length=ceiling(MAX_QUERY),
        json_schema_extra={
            "x-kubernetes-validations": [
                rule(f"size(self.trim()) >= 1 && size(self) <= {MAX_QUERY}", f"must be 1 to {MAX_QUERY} characters")
            ]
        },
    )
    expect: Expectation = Field(description="What the result must be.")


class CASecretRef(Model):
    """A CA certificate (PEM) in a Secret of the DBRestore's namespace."""

    name: str = text("Secret in the DBRestore's namespace.", OBJECT_NAME, default=...)
    key: str = text("Key in the Secret's data holding the PEM certificate(s).", SECRET_KEY, default="ca.crt")


class VerifyTLS(Model):
    """TLS to the restored database's endpoint."""

    model_config = validations(
        rule(
            "!has(self.caSecretRef) || self.mode == 'verify-full' || self.mode == 'verify-ca'",
            "needs mode verify-full or verify-ca (the other modes check no certificate)",
            field=".caSecretRef",
        )
    )
    mode: Literal["verify-full", "verify-ca", "require", "disable"] = Field(
        "verify-full",
        description="verify-full (default): encrypted, the server's certificate chain and host name checked; "
        "verify-ca: the chain only; require: encrypted, nothing checked; disable: no TLS.",
    )
    ca_secret_ref: CASecretRef | None = Field(
        None,
        description="The CA to trust. Default: the RDS CA bundle the operator is given (DBOPS_RDS_CA_BUNDLE, "
        "AWS's global-bundle.pem).",
    )


class Verify(Model):
    """What "the restore worked" means: SQL probes the operator runs against the restored database once it is
    available (once per generation), with the master user and the password spec.masterPassword set. Results go
    to status.verification and the Verified condition; a probe that fails, or a database that cannot be
    reached within connectWithin, fails the DBRestore. Only the value a probe checks (at most 64 characters)
    and row counts ever reach status: no other columns, no rows, no credentials."""

    probes: list[Probe] = Field(
        min_length=1,
        max_length=ceiling(MAX_PROBES),
        description=f"The probes, run in order (1 to {MAX_PROBES}; names are unique).",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "x-kubernetes-validations": [
                rule(f"size(self) >= 1 && size(self) <= {MAX_PROBES}", f"must have 1 to {MAX_PROBES} probes")
            ],
        },
    )
    database: str | None = text(
        "Database to connect to. Default: postgres for PostgreSQL engines, none for MySQL and MariaDB.",
        DATABASE_NAME,
    )
    timeout: str = text(
        "How long one probe (its connection and query) may take: a duration from "
        f"{PROBE_TIMEOUT[0][0]} to {PROBE_TIMEOUT[1][0]}.",
        DURATION,
        *duration_between(*PROBE_TIMEOUT),
        default="30s",
    )
    connect_within: str = text(
        "How long after the database became available dbops keeps trying to connect (the password being "
        "applied, DNS) before the verification fails: a duration up to "
        f"{CONNECT_WITHIN[1][0]}.",
        DURATION,
        *duration_between(*CONNECT_WITHIN),
        default="10m",
    )
    tls: VerifyTLS | None = Field(None, description="TLS to the endpoint (default: verify-full with the RDS CA).")


# The rules of a DBRestore spec that hold as they are for a drill's template (DrillTemplate) too.
RESTORE_RULES = (
    same_region("source.dbSnapshot", snapshot_ref("snapshot"), ":", 3),
    same_region("source.dbClusterSnapshot", snapshot_ref("cluster-snapshot"), ":", 3),
    same_region("source.latestSnapshot.endpoint", HOSTNAME, ".", 2),
    same_region("source.pointInTime.endpoint", HOSTNAME, ".", 2),
    *(only.rule() for only in TARGET_KIND_ONLY),
    rule(
        "!has(self.verify) || has(self.masterPassword)",
        "needs spec.masterPassword: dbops connects as the master user, with the password it set",
        field=".verify",
    ),
)


class DBRestoreSpec(Model):
    """What to restore, where, and what happens to the database afterwards."""

    model_config = validations(
        rule(
            "!has(self.ttl) || self.deletionPolicy != 'Retain'",
            "needs deletionPolicy Delete or Snapshot (Retain would keep the database forever)",
            field=".ttl",
        ),
        fixed_once_created("region"),
        *RESTORE_RULES,
        rule(
            "!has(self.connection) || self.connection.kind != 'Secret' || !has(self.masterPassword) "
            "|| !has(self.masterPassword.secretRef) || self.masterPassword.secretRef.name != self.connection.name",
            "must not name the Secret of spec.masterPassword.secretRef (dbops writes only into a Secret of its own)",
            field=".connection.name",
        ),
    )
    source: Source = Field(description="Where the data comes from.")
    target: Target = Field(description="The new database.")
    region: str | None = text("AWS region (default: the operator's). Immutable.", REGION)
    master_password: MasterPassword | None = Field(None, description="Set the master password after restore.")
    connection: Connection | None = Field(
        None, description="Write the connection details (endpoint, port, user, password) for applications."
    )
    adopt: bool = Field(
        False,
        description="Take back a database (or Aurora cluster) of spec.target.identifier that a deleted DBRestore "
        "of this namespace left behind with deletionPolicy Retain: it carries dbops' tags of that object and "
        "the dbops.dev/retained-at tag. It is retagged as this object's and not restored again; from then on "
        "this object's deletionPolicy and ttl apply to it. A database without those tags, of another "
        "namespace, or of an object that still exists is never adopted.",
    )
    deletion_policy: Literal["Retain", "Delete", "Snapshot"] = Field(
        "Retain",
        description="What happens to the database when this object is deleted: Retain (default), Delete, or "
        "Snapshot (final snapshot, then delete).",
    )
    ttl: str | None = text(
        "Remove the database this long after it became available, per deletionPolicy (Delete or Snapshot): "
        f"a duration such as 72h or 1d12h, from {TTL_MIN[0]} to {TTL_MAX[0]}. A shorter one is taken for a "
        "mistake: a restore alone takes longer, and RDS bills a started instance for 10 minutes anyway.",
        DURATION,
        *duration_between(TTL_MIN, TTL_MAX),
    )
    verify: Verify | None = Field(
        None, description="SQL probes that prove the restored database holds the right data (see Verify)."
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

Phase = Literal["Pending", "Restoring", "Verifying", "Available", "Degraded", "Failed", "Deleting", "Expired"]


class ProbeResult(Model):
    """One probe's outcome: what was expected and what was seen (a count, or the value checked, bounded)."""

    name: str = Field(max_length=63)
    result: Literal["Passed", "Failed", "Error"] = Field(
        description="Passed, Failed (the expectation was not met) or Error (the query did not run)."
    )
    expected: str | None = Field(None, max_length=512, description="The expectation in words.")
    observed: str | None = Field(None, max_length=512, description="What the query returned: a count or the value.")
    message: str | None = Field(None, max_length=1024, description="Why it failed or could not run.")
    seconds: float | None = Field(None, description="How long the probe took.")


class Verification(Model):
    """The outcome of spec.verify for the generation in the Verified condition."""

    result: Literal["Passed", "Failed"] | None = None
    reason: str | None = Field(None, max_length=128)
    message: str | None = Field(None, max_length=1024)
    engine: str | None = Field(None, max_length=64)
    database: str | None = Field(None, max_length=64)
    tls: str | None = Field(None, max_length=32, description="The TLS mode the probes connected with.")
    started_at: datetime | None = Field(None, description="When the first attempt to connect was made.")
    completed_at: datetime | None = Field(None, description="When the verification ended.")
    probes: list[ProbeResult] | None = Field(None, max_length=40)


class DBRestoreStatus(Model):
    """What the operator observed, written by it each pass (status subresource) from the spec and from
    what AWS reports of the databases carrying this object's UID tag. Nothing here steers the operator:
    a value written by someone else is overwritten by the next pass."""

    phase: Phase | None = Field(
        None,
        description="Pending, Restoring, Verifying (available, spec.verify's probes running), Available, Degraded "
        "(available but not usable as asked, e.g. the password Secret cannot be read), Failed, Deleting, or "
        "Expired (removed by the ttl).",
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
    snapshot_time: datetime | None = Field(
        None, description="When the snapshot restored was taken (its creation time in RDS): the data's age."
    )
    verification: Verification | None = Field(None, description="The outcome of spec.verify.")
    expires_at: datetime | None = Field(
        None, description="When the ttl removes the database: its creation time in RDS plus spec.ttl."
    )
    retry_token: str | None = Field(None, description="The dbops.dev/retry annotation value of the last failure.")


class ClusterRef(Model):
    """The Aurora cluster to extend: exactly one of the fields."""

    model_config = validations(exactly_one("dbCluster", "endpoint", "dbRestoreRef"))
    db_cluster: str | None = text("Identifier of the Aurora cluster.", IDENTIFIER)
    endpoint: str | None = text(
        "An endpoint hostname of the cluster (cluster, reader or custom endpoint); resolved, never connected to.",
        HOSTNAME,
    )
    db_restore_ref: str | None = text(
        "Name of a DBRestore in this namespace: wait until it is Available, then extend its cluster.", OBJECT_NAME
    )


class PerformanceInsights(Model):
    """Performance Insights on the new instances."""

    enabled: bool = Field(True, description="Turn Performance Insights on.")
    retention_period: int | None = Field(
        None, ge=7, le=731, description="Days to keep data: 7 (free tier), or a multiple of 31 up to 731."
    )
    kms_key_id: str | None = Field(None, description="KMS key for Performance Insights data.", max_length=2048)


class Monitoring(Model):
    """Enhanced Monitoring of the new instances."""

    model_config = validations(
        rule(
            "self.interval == 0 || has(self.roleArn)",
            "is required when interval is not 0",
            field=".roleArn",
            reason="FieldValueRequired",
        )
    )
    interval: Literal[0, 1, 5, 10, 15, 30, 60] = Field(
        0, description="Enhanced Monitoring interval in seconds: 0 (off, the default), 1, 5, 10, 15, 30 or 60."
    )
    role_arn: str | None = text("IAM role that lets RDS send Enhanced Monitoring metrics.", ROLE_ARN)


class AttachConnection(Model):
    """Where dbops writes how applications reach the readers this DBAttach added."""

    name: str = _connection_name("DBAttach", " as instances come and go")
    kind: ConnectionKind = _connection_kind(
        "; it holds no password. Keys: readerEndpoint (the cluster's, spread over all its readers), port, "
        "engine, username and database (when RDS has them), instanceEndpoints (this object's instances' own "
        "endpoints, comma-separated, in identifier order)."
    )


class DBAttachSpec(Model):
    """Add reader instance(s) to an existing Aurora cluster. Engine and version always come from the
    cluster; cluster-owned settings (network, ports, storage) are never set on the instances."""

    model_config = validations(
        exactly_one("identifier", "identifierPrefix"),
        rule(
            "!has(self.identifier) || self.count == 1",
            "must be 1 with spec.identifier, which names one instance: use identifierPrefix for count > 1",
            field=".count",
        ),
        fixed_once_created("identifier"),
        fixed_once_created("identifierPrefix"),
        fixed_once_created("region"),
        same_region("cluster.endpoint", HOSTNAME, ".", 2),
    )
    cluster: ClusterRef = Field(description="The Aurora cluster to extend.")
    identifier: str | None = text("Identifier of the one new instance. Immutable.", IDENTIFIER)
    identifier_prefix: str | None = text(
        "Prefix of the new instances' identifiers: <prefix>-1 ... <prefix>-<count>. Immutable.",
        IDENTIFIER.limited(60),  # room for -15
    )
    count: int = Field(1, ge=1, le=15, description="How many instances; change it to scale out or in.")
    db_instance_class: str | None = text("Instance class; default: the writer's.", INSTANCE_CLASS)
    availability_zones: list[Annotated[str, item("An availability zone.", ZONE)]] | None = items(
        "Zones to place instances in, in turn; default: the cluster's.", 16
    )
    promotion_tier: int | None = Field(None, ge=0, le=15, description="Failover priority (0 is highest).")
    db_parameter_group_name: str | None = text("DB parameter group; default: the writer's.", GROUP_NAME)
    performance_insights: PerformanceInsights | None = Field(None, description="Performance Insights settings.")
    monitoring: Monitoring | None = Field(None, description="Enhanced Monitoring settings.")
    publicly_accessible: bool = Field(False, description="Give the instances public addresses (default false).")
    tags: Tags | None = tags("Extra tags on the instances.")
    region: str | None = text("AWS region (default: the operator's). Immutable.", REGION)
    deletion_policy: Literal["Retain", "Delete"] = Field(
        "Retain",
        description="Retain (default) or Delete the instances when this object is deleted (never the "
        "cluster, never the writer).",
    )
    connection: AttachConnection | None = Field(
        None, description="Write the readers' connection details (reader endpoint, port) for applications."
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


# --- restore drills: DBRestoreSchedule ------------------------------------------------------------------

CRON = Syntax(
    r"^ *[0-9A-Za-z*/,?#-]+( +[0-9A-Za-z*/,?#-]+){4} *$",
    "a cron schedule of five fields separated by spaces (minute, hour, day of month, month, day of week), "
    "such as 0 3 * * 1",
    128,
)
TIME_ZONE = Syntax(
    r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$",
    "an IANA time zone name such as Europe/Berlin, America/New_York or UTC",
    64,
)
# Each run's DBRestore is <schedule>-<run> and restores <prefix>-<run>, where <run> is 12 characters (the run's
# time, YYYYMMDDHHMM in UTC, or now-XXXXXXXX for a run asked for with dbops.dev/run-now). The prefix leaves room
# for the run and, for Aurora, an instance number (-15): 63 - 13 - 3.
RUN_SUFFIX = 12
SCHEDULE_NAME_MAX = 63 - RUN_SUFFIX - 1  # the child's name is also a label value (at most 63 characters)
DRILL_PREFIX_MAX = 63 - RUN_SUFFIX - 1 - 3
HISTORY_LIMIT_MAX = 100
STARTING_DEADLINE = (("1s", 1), ("30d", 30 * 86400))


class DrillTarget(Target):
    """The drill databases: as a DBRestore's target, but the identifier is a prefix."""

    identifier: str = text(
        "Prefix of each run's identifier: dbops appends -<run> (the run's time, YYYYMMDDHHMM in UTC, or "
        "now-XXXXXXXX for a run asked for with dbops.dev/run-now), so that every drill restores a database of "
        "its own and never touches another.",
        IDENTIFIER.limited(DRILL_PREFIX_MAX),
        default=...,
    )


class DrillTemplate(DBRestoreSpec):
    """The DBRestore each run creates: a DBRestore spec whose target identifier is a prefix. Its database must
    not outlive the drill: deletionPolicy Delete or Snapshot, and a ttl."""

    model_config = validations(
        rule(
            "has(self.ttl)",
            "is required: it bounds how long each drill database lives (from 10m to 3650d)",
            field=".ttl",
            reason="FieldValueRequired",
        ),
        rule(
            "self.deletionPolicy != 'Retain'",
            "must be Delete or Snapshot: a drill database must never outlive its ttl",
            field=".deletionPolicy",
        ),
        *RESTORE_RULES,
    )
    target: DrillTarget = Field(description="The drill databases (the identifier is a prefix).")
    deletion_policy: Literal["Retain", "Delete", "Snapshot"] = Field(
        "Delete",
        description="What happens to a drill database when its ttl is up or its DBRestore is deleted: Delete "
        "(default) or Snapshot (final snapshot, then delete). Retain is refused.",
    )


class DBRestoreScheduleSpec(Model):
    """When to run restore drills and what each one restores and checks, with a Kubernetes CronJob's semantics."""

    schedule: str = text(
        "When runs are due, in cron's five fields (minute hour day-of-month month day-of-week), read in timeZone.",
        CRON,
        default=...,
    )
    time_zone: str = text(
        "IANA time zone the schedule is read in (default UTC). Daylight-saving changes are handled as Debian's "
        "cron does: a run due in the hour that is skipped runs when the clock jumps; one due in the hour that "
        "repeats runs once.",
        TIME_ZONE,
        default="UTC",
    )
    suspend: bool = Field(
        False, description="Start no runs while true (runs due meanwhile are not made up; run-now still works)."
    )
    starting_deadline: str | None = text(
        "A run that could not start within this time after it was due (the operator was down) is skipped and "
        "recorded as such. Default: a late run always starts (only the latest one due).",
        DURATION,
        *duration_between(*STARTING_DEADLINE),
    )
    concurrency_policy: Literal["Forbid", "Replace"] = Field(
        "Forbid",
        description="A run due while the previous one has not finished: Forbid (default) skips it and records "
        "the skip; Replace deletes the unfinished run's DBRestore (its database goes per deletionPolicy) and "
        "starts the new one.",
    )
    successful_runs_history_limit: int = Field(
        3,
        ge=0,
        le=HISTORY_LIMIT_MAX,
        description="Passed runs whose DBRestore is kept (default 3); older ones are deleted, their database "
        "removed per deletionPolicy. status.runs and the audit trail keep every result.",
    )
    failed_runs_history_limit: int = Field(
        1, ge=0, le=HISTORY_LIMIT_MAX, description="Failed runs whose DBRestore is kept (default 1), likewise."
    )
    template: DrillTemplate = Field(description="The DBRestore each run creates (a DBRestore spec).")


class DrillProbe(Model):
    name: str = Field(max_length=63)
    result: Literal["Passed", "Failed", "Error"]


DrillResult = Literal["Running", "Passed", "Failed", "Skipped"]


class DrillRun(Model):
    """One run: the evidence that a backup restored (RTO), how old its data was (RPO), and what the probes saw."""

    name: str = Field(max_length=253, description="The run's DBRestore.")
    trigger: Literal["schedule", "run-now"] = Field(description="Due by the schedule, or asked for with run-now.")
    scheduled_time: datetime = Field(description="When the run was due (or asked for).")
    result: DrillResult = Field(description="Running, Passed, Failed or Skipped.")
    reason: str | None = Field(None, max_length=128)
    message: str | None = Field(None, max_length=1024)
    target: str | None = Field(None, max_length=63, description="The drill database's identifier.")
    source: str | None = Field(None, max_length=512, description="What was restored, e.g. snapshot:orders-2026-11-20.")
    snapshot_time: datetime | None = Field(None, description="When the restored snapshot (or point in time) was.")
    started_at: datetime | None = Field(None, description="When the run's DBRestore was created.")
    available_at: datetime | None = Field(None, description="When the drill database became available.")
    verified_at: datetime | None = Field(None, description="When its probes passed (or failed).")
    rpo_seconds: int | None = Field(None, description="The data's age when restored: restore time - snapshot time.")
    rto_available_seconds: int | None = Field(None, description="Seconds from the run's start to available.")
    rto_verified_seconds: int | None = Field(None, description="Seconds from the run's start to verified.")
    probes: list[DrillProbe] | None = Field(None, max_length=40)


class DBRestoreScheduleStatus(Model):
    """What the operator observed of the runs (written only by it): the last ones' results, and a bounded history."""

    phase: Literal["Pending", "Scheduled", "Running", "Suspended", "Failed"] | None = Field(
        None, description="Scheduled (waiting for the next run), Running, Suspended, or Failed (an invalid spec)."
    )
    conditions: list[Condition] | None = Field(None, json_schema_extra=CONDITIONS_EXTRA)
    observed_generation: int | None = None
    schedule_description: str | None = Field(None, max_length=512, description="The schedule in words.")
    last_schedule_time: datetime | None = Field(None, description="The last time a run was due (started or skipped).")
    next_schedule_time: datetime | None = Field(None, description="When the next run is due.")
    last_run_time: datetime | None = Field(None, description="When the latest run started.")
    last_result: DrillResult | None = Field(None, description="The latest run's result.")
    last_successful_time: datetime | None = Field(None, description="When the latest passed run was verified.")
    last_rto: str | None = Field(None, max_length=32, description="The latest finished run's RTO, e.g. 12m30s.")
    last_rto_seconds: int | None = None
    last_rpo_seconds: int | None = None
    active: list[str] | None = Field(None, max_length=16, description="DBRestores of runs not finished yet.")
    last_run_now: str | None = Field(None, max_length=256, description="The dbops.dev/run-now value last acted on.")
    runs: list[DrillRun] | None = Field(None, max_length=40, description="The latest runs, newest first.")
    retry_token: str | None = Field(None, description="The dbops.dev/retry annotation value of the last failure.")


class Resource(BaseModel):
    """How a model pair is served as a CRD."""

    kind: str
    description: str  # of the kind, at the root of its schema (kubectl explain KIND)
    plural: str
    short_name: str
    spec: type[BaseModel]
    status: type[BaseModel]
    columns: list[dict[str, Any]]
    rules: list[Rule] = []  # CEL rules on the whole object (metadata.name), messages as written
    scope: Literal["Namespaced", "Cluster"] = "Namespaced"
    categories: list[str] = ["rds"]


# The last printer columns of a kind whose Ready condition tells what is going on (-o wide shows the message).
AGE_AND_MESSAGE = [
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Message", "type": "string", "priority": 1, "jsonPath": '.status.conditions[?(@.type=="Ready")].message'},
]

RESOURCES = [
    Resource(
        kind="DBRestore",
        description="Restores an RDS DB instance or Aurora cluster from a snapshot, the latest snapshot of a "
        "source, or a point in time, and removes it (or not) per deletionPolicy and ttl.",
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
            *AGE_AND_MESSAGE,
        ],
    ),
    Resource(
        kind="DBAttach",
        description="Adds reader instances to an existing Aurora cluster (named by identifier, endpoint hostname "
        "or DBRestore) and scales them with count.",
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
    Resource(
        kind="DBRestoreSchedule",
        description="Runs restore drills on a schedule: each run restores a DBRestore from the template, checks "
        "the data with SQL probes, records the RTO, RPO and probe results as evidence, and removes the drill "
        "database per its ttl.",
        plural="dbrestoreschedules",
        short_name="dbrs",
        spec=DBRestoreScheduleSpec,
        status=DBRestoreScheduleStatus,
        columns=[
            {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"},
            {"name": "Last Run", "type": "date", "jsonPath": ".status.lastRunTime"},
            {"name": "Last Result", "type": "string", "jsonPath": ".status.lastResult"},
            {"name": "Last RTO", "type": "string", "jsonPath": ".status.lastRto"},
            # A time to come: kubectl shows a future "date" as <invalid>, so the timestamp itself (UTC).
            {"name": "Next Run", "type": "string", "jsonPath": ".status.nextScheduleTime"},
            *AGE_AND_MESSAGE,
        ],
        rules=[
            rule(
                f"size(self.metadata.name) <= {SCHEDULE_NAME_MAX}",
                f"metadata.name must be at most {SCHEDULE_NAME_MAX} characters: each run's DBRestore is named "
                f"<schedule>-<run> ({RUN_SUFFIX + 1} more)",
            )
        ],
    ),
]


# --- DBPolicy: what the namespaces it selects may restore, attach and create, and with which AWS role --------
#
# Patterns in a policy are globs over identifiers: * stands for any run of characters and ? for one, and
# {namespace} for the namespace of the object asking. There are no character classes ([ ] is in no RDS
# identifier), so a pattern is never mistaken for a regular expression.
_GLOB_WORDS = "* (any characters), ? (one character) or {{namespace}}"
ID_GLOB = Syntax(
    r"^([a-z0-9*?-]|\{namespace\})+$",
    "a pattern of 1 to {max} lower-case letters, digits, hyphens, " + _GLOB_WORDS + ", such as {{namespace}}-*",
    255,
)
SNAPSHOT_GLOB = Syntax(
    r"^([a-z0-9*?:-]|\{namespace\})+$",
    "a pattern of 1 to {max} lower-case letters, digits, hyphens, colons (rds: starts automated snapshots), "
    + _GLOB_WORDS
    + ", such as staging-*",
    255,
)
CLASS_GLOB = Syntax(r"^[a-z0-9.*?-]+$", "an instance class or a pattern of them, such as db.t4g.* or db.r6g.large", 64)
ENGINE_GLOB = Syntax(r"^[a-z0-9.*?-]+$", "an engine name or a pattern of them, such as postgres or aurora-*", 64)
NAMESPACE_NAME = Syntax(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    "a namespace name: 1 to {max} lower-case letters, digits or hyphens, starting and ending with a letter or digit",
    63,
)
LABEL_KEY = Syntax(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
    "a label key: an optional DNS prefix and /, then 1 to 63 letters, digits, hyphens, underscores or periods, "
    "starting and ending with a letter or digit ({max} in all)",
    317,
)
_LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
_LABEL_VALUE_WORDS = (
    "at most 63 letters, digits, hyphens, underscores or periods, starting and ending with a letter or digit"
)
EXTERNAL_ID = Syntax(
    r"^[-\w+=,.@:/]{2,}$", "2 to {max} letters, digits or any of _ + = , . @ : / - (IAM's ExternalId)", 1224
)


def duration_seconds(duration: str) -> int:
    """The seconds in a duration that DURATION accepts, added up as the CEL rules add them."""
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in re.findall(r"([0-9]+)([dhms])", duration))


def label_value_rule(value: str) -> str:
    """CEL: `value` is a label value (may be empty)."""
    return f"size({value}) <= 63 && {value}.matches({cel_string(_LABEL_VALUE)})"


def globs(description: str, limit: int = 64) -> Any:
    """A list of patterns; left out, the policy does not restrict the setting; empty, it allows none."""
    return items(f"{description} Left out: not restricted by this policy; empty: none allowed.", limit)


class LabelRequirement(Model):
    """One requirement of a label selector, as in Kubernetes."""

    model_config = validations(
        rule(
            "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) "
            ": (!has(self.values) || size(self.values) == 0)",
            "must list values with In and NotIn, and none with Exists and DoesNotExist",
            field=".values",
        )
    )
    key: str = text("The label key.", LABEL_KEY, default=...)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(description="In, NotIn, Exists or DoesNotExist.")
    values: list[Annotated[str, Field(description="A label value.", max_length=ceiling(63))]] | None = Field(
        None,
        description="The label values (In, NotIn).",
        max_length=ceiling(64),
        json_schema_extra={
            "x-kubernetes-validations": [
                rule("size(self) <= 64", "must have at most 64 entries"),
                rule(f"self.all(v, {label_value_rule('v')})", f"must each be {_LABEL_VALUE_WORDS}"),
            ]
        },
    )


class NamespaceSelector(Model):
    """Selects namespaces by their labels, as a Kubernetes label selector: every requirement must hold, and
    an empty selector ({}) selects every namespace."""

    match_labels: dict[str, Annotated[str, Field(max_length=ceiling(63))]] | None = Field(
        None,
        description="Labels the namespace must carry, with these values.",
        json_schema_extra={
            "maxProperties": ceiling(64),
            "x-kubernetes-validations": [
                rule("size(self) <= 64", "must have at most 64 labels"),
                rule(f"self.all(k, {LABEL_KEY.check('k')})", f"keys must each be {LABEL_KEY.words.format(max=317)}"),
                rule(f"self.all(k, {label_value_rule('self[k]')})", f"values must each be {_LABEL_VALUE_WORDS}"),
            ],
        },
    )
    match_expressions: list[LabelRequirement] | None = items("Requirements on the namespace's labels.", 32)


class PolicySources(Model):
    """What may be restored from. A list left out does not restrict; an empty list allows nothing. A source
    must be allowed by every policy that selects the namespace."""

    db_instances: list[Annotated[str, item("An identifier pattern.", ID_GLOB)]] | None = globs(
        "DB instances that may be a source: of latestSnapshot or pointInTime, or the instance a DB snapshot "
        "was taken of.",
    )
    db_clusters: list[Annotated[str, item("An identifier pattern.", ID_GLOB)]] | None = globs(
        "Aurora clusters that may be a source: of latestSnapshot or pointInTime, or the cluster a cluster "
        "snapshot was taken of.",
    )
    db_snapshots: list[Annotated[str, item("A snapshot identifier pattern.", SNAPSHOT_GLOB)]] | None = globs(
        "DB snapshots that may be restored, named or chosen as the latest (rds:NAME-* for automated ones).",
    )
    db_cluster_snapshots: list[Annotated[str, item("A snapshot identifier pattern.", SNAPSHOT_GLOB)]] | None = globs(
        "Aurora cluster snapshots that may be restored, named or chosen as the latest."
    )
    required_tags: Tags | None = tags(
        "AWS tags the source must carry, e.g. env: staging: a named snapshot's own tags, else the source DB's. "
        "Checked on a fresh read before any create call (phase Failed, reason PolicyViolation)."
    )
    regions: list[Annotated[str, item("An AWS region.", REGION)]] | None = globs(
        "Regions that may be restored from (and so into: a restore stays in its source's region).", 32
    )


class PolicyTargets(Model):
    """What is created, and settings dbops forces on it: a request that sets a forced setting to another
    value is refused; one that leaves it out gets the policy's value instead of the source's."""

    model_config = validations(
        rule(
            "!has(self.publiclyAccessible) || !self.publiclyAccessible",
            "can only be false: a policy forbids public databases, it cannot force them",
            field=".publiclyAccessible",
        ),
        rule(
            "!(has(self.deletionProtection) && self.deletionProtection && "
            "((has(self.ttlRequired) && self.ttlRequired) || has(self.maxTTL)))",
            "contradicts ttlRequired and maxTTL: a ttl removes the database, which deletion protection forbids",
            field=".deletionProtection",
        ),
    )
    identifier_pattern: str | None = text(
        "A pattern the identifier of every database created must match, e.g. {namespace}-* (for a DBAttach: "
        "each reader's identifier).",
        ID_GLOB,
    )
    instance_classes: list[Annotated[str, item("An instance class pattern.", CLASS_GLOB)]] | None = globs(
        "Instance classes allowed, whether set in the request or copied from the source."
    )
    engines: list[Annotated[str, item("An engine pattern.", ENGINE_GLOB)]] | None = globs(
        "Engines allowed (the source's: a restore keeps its engine; a DBAttach, its cluster's)."
    )
    db_subnet_group_name: str | None = text("The DB subnet group of every restored database (forced).", SUBNET_GROUP)
    vpc_security_group_ids: list[Annotated[str, item("A VPC security group id.", SG_ID)]] | None = items(
        "The VPC security groups of every restored database (forced).", 20
    )
    publicly_accessible: bool | None = Field(
        None, description="false: no database may be publicly accessible (forced). true is refused."
    )
    deletion_protection: bool | None = Field(
        None,
        description="true: every restored database gets RDS deletion protection (forced), so requests must "
        "keep deletionPolicy Retain and set no ttl.",
    )
    storage_encrypted: bool | None = Field(
        None,
        description="true: only encrypted sources may be restored (a restore keeps its source's encryption); "
        "checked before any create call.",
    )
    tags: Tags | None = tags("Tags merged into everything created, e.g. cost-centre (forced, key by key).")
    max_ttl: str | None = text(
        f"The longest ttl a DBRestore may set: a duration from {TTL_MIN[0]} to {TTL_MAX[0]}.",
        DURATION,
        *duration_between(TTL_MIN, TTL_MAX),
        alias="maxTTL",
    )
    ttl_required: bool | None = Field(None, description="true: every DBRestore must set a ttl (preview namespaces).")


class PolicyAttach(Model):
    """Which Aurora clusters may get readers. With neither clusters nor clusterTags set, only clusters
    restored by a DBRestore of the same namespace (they carry dbops.dev/namespace and dbops.dev/kind tags)."""

    clusters: list[Annotated[str, item("A cluster identifier pattern.", ID_GLOB)]] | None = globs(
        "Clusters that may get readers: identifier patterns."
    )
    cluster_tags: Tags | None = tags("AWS tags the cluster must carry.")
    max_readers: int | None = Field(None, ge=1, le=15, description="The largest count a DBAttach may ask for.")


class PolicyLimits(Model):
    """How much a namespace may have at once. A request over a limit waits (phase Pending, reason
    QuotaExceeded) and starts when room frees, in creation order; it is never failed for it."""

    restores_in_flight: int | None = Field(
        None, ge=1, le=1000, description="DBRestores of the namespace restoring at once."
    )
    databases_owned: int | None = Field(
        None,
        ge=1,
        le=10000,
        description="Databases the namespace owns at once: each DBRestore's database and each DBAttach reader.",
    )


class PolicyAws(Model):
    """The AWS identity of the namespace's requests: dbops assumes this role (STS AssumeRole, with session
    tags naming the namespace, the object and the requester) for every AWS call made for them."""

    role_arn: str = text("The IAM role to assume (it may be in another account).", ROLE_ARN, default=...)
    external_id: str | None = text("The ExternalId the role's trust policy requires.", EXTERNAL_ID)


class DBPolicySpec(Model):
    """What DBRestores and DBAttaches of the namespaces it selects may do. A request must satisfy every
    policy that selects its namespace (the most restrictive wins); with DBOPS_POLICY=enforce (the default), a
    namespace no policy selects may do nothing."""

    model_config = validations(
        rule(
            "has(self.namespaceSelector) || has(self.namespaces)",
            "must set namespaceSelector, namespaces or both: a policy that selects no namespace does nothing",
        )
    )
    namespace_selector: NamespaceSelector | None = Field(
        None, description="Namespaces selected by their labels ({} selects every namespace)."
    )
    namespaces: list[Annotated[str, item("A namespace name.", NAMESPACE_NAME)]] | None = items(
        "Namespaces selected by name (in addition to namespaceSelector's).", 256
    )
    sources: PolicySources | None = Field(None, description="What may be restored from.")
    targets: PolicyTargets | None = Field(None, description="What is created, and the settings forced on it.")
    attach: PolicyAttach | None = Field(None, description="Which Aurora clusters may get readers.")
    limits: PolicyLimits | None = Field(None, description="How much a namespace may have at once.")
    aws: PolicyAws | None = Field(None, description="The AWS role assumed for the namespace's requests.")


class DBPolicyStatus(Model):
    """What the operator applies: written only by it."""

    observed_generation: int | None = Field(None, description="The generation of the spec being applied.")
    applied_at: datetime | None = Field(None, description="When the operator began applying this generation.")
    namespace_count: int | None = Field(None, description="How many namespaces the policy selects.")
    namespaces: list[str] | None = Field(
        None, description="The namespaces it selects (sorted; the first 100).", max_length=100
    )


POLICY = Resource(
    kind="DBPolicy",
    description="A platform team's rules for the DBRestores and DBAttaches of the namespaces it selects: which "
    "sources, clusters, identifiers, instance classes and engines, which settings are forced, how many at "
    "once, and which AWS role is assumed for them. Cluster-scoped: only cluster admins write policies.",
    plural="dbpolicies",
    short_name="dbp",
    spec=DBPolicySpec,
    status=DBPolicyStatus,
    scope="Cluster",
    categories=["dbops"],
    columns=[
        {"name": "Namespaces", "type": "integer", "jsonPath": ".status.namespaceCount"},
        {"name": "Role", "type": "string", "jsonPath": ".spec.aws.roleArn"},
        {"name": "Applied", "type": "date", "jsonPath": ".status.appliedAt"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
)
RESOURCES.append(POLICY)
