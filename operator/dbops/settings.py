"""Operator settings, from environment variables prefixed DBOPS_ (see the README's table)."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dbops import redact
from dbops.defaults import LIVENESS_PORT


def _default_region() -> str:
    # The AWS SDK's own variables first, so that an operator on EKS needs no extra setting.
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DBOPS_", extra="ignore")

    region: str = Field(default_factory=_default_region, description="Default AWS region for new objects.")
    namespace: str = Field(
        "", description="Namespaces to watch, comma-separated kopf patterns (globs, !exclusions); empty: all."
    )
    cluster_scan: bool = Field(
        True,
        description="Let kopf list and watch namespaces and CRDs cluster-wide (to follow namespace patterns and "
        "CRDs that come and go). false for a namespace-scoped install, whose Role allows neither.",
    )
    # 5 s: an object shows Available within seconds of RDS saying so (the benchmark's goal is p99 under
    # 10 s), at one batched Describe call per region per 5 s, and only while something is on its way.
    poll_interval: float = Field(
        5.0, gt=0, description="Seconds between RDS status polls of objects on their way (one call per region)."
    )
    resync_interval: float = Field(
        600.0,
        gt=0,
        description="Seconds between looks at settled objects (Available, Failed): drift such as a database "
        "deleted outside dbops shows within this time, at one batched call per region for all of them.",
    )
    aws_max_attempts: int = Field(5, ge=1, description="botocore retry attempts for transient errors.")
    # RDS allows an account 300 calls at once and 12 a second per region, for every tool it runs: dbops
    # keeps below both, leaving room for the console, Terraform and the rest.
    aws_rate: float = Field(
        10.0, gt=0, description="AWS calls per second per region, shared by every object (halved on throttling)."
    )
    aws_burst: float = Field(200.0, ge=1, description="Calls allowed at once above aws_rate.")
    aws_timeout: float = Field(20.0, gt=0, description="Seconds to wait for an AWS answer before retrying.")
    max_workers: int = Field(16, ge=1, description="Reconcile passes run at once (threads for the blocking calls).")
    metrics_port: int = Field(9100, description="Port of the Prometheus /metrics endpoint (0: off).")
    liveness_port: int = Field(LIVENESS_PORT, description="Port of /healthz (liveness) and /readyz (readiness).")
    stall_seconds: float = Field(
        300.0, gt=0, description="/healthz fails when passes are due and none ran for this long."
    )
    leader_election: bool = Field(
        False, description="Run passes only while holding a Lease (set for more than one replica)."
    )
    lease_name: str = Field("dbops-operator", description="Name of the leader-election Lease.")
    lease_namespace: str = Field(
        "", description="Namespace of the Lease (default: the pod's own namespace, else default)."
    )
    pod_name: str = Field(
        default_factory=lambda: os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or "dbops",
        description="This replica's name (the Lease holder, the events' reporting instance).",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as text, or as JSON objects (one a line; the object under the key object)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO",
        description="Level of dbops' and kopf's logs. Libraries that log request bodies (botocore, urllib3, the "
        "Kubernetes client, SQLAlchemy) stay at WARNING whatever it is.",
    )
    event_component: str = Field("dbops-operator", description="The events' source (kubectl describe's From).")
    orphans: Literal["report", "snapshot"] = Field(
        "report",
        description="Databases dbops created whose object is gone: report them (metric, audit record, log), "
        "or also snapshot and delete them after orphan_grace seconds.",
    )
    orphan_grace: float = Field(
        3600.0, ge=0, description="Seconds an orphan is reported before DBOPS_ORPHANS=snapshot acts."
    )

    # Audit trail (operator/dbops/audit.py). The URL may carry a password: SecretStr keeps it out of logs and reprs.
    audit_url: SecretStr = Field(
        SecretStr("sqlite:///dbops-audit.db"),
        description="SQLAlchemy URL of the audit database (PostgreSQL in production, from a Secret).",
    )
    audit_spool: str = Field(
        "dbops-audit-spool", description="Directory where audit records wait, durably, until the database has them."
    )
    audit_retry_interval: float = Field(5.0, gt=0, description="Seconds between writes while the database is down.")

    # Tenancy (DBPolicy). enforce: a namespace that no DBPolicy selects may do nothing. namespace: the
    # namespace-scoped install (DBOPS_CLUSTER_SCAN=false), whose Role can read no cluster-scoped DBPolicy:
    # the install itself (its one namespace, its ServiceAccount, its own AWS role) is the boundary.
    policy: Literal["enforce", "open", "namespace"] = Field(
        "enforce",
        description="enforce: a namespace no DBPolicy selects is refused; open: it is allowed; namespace: no "
        "DBPolicy is read, for a namespace-scoped install (DBOPS_CLUSTER_SCAN=false), which is its own boundary.",
    )

    # Validating admission webhook (policies at admission, and the audit of requests). 0: no webhook.
    webhook_port: int = Field(0, ge=0, description="Port of the HTTPS admission webhook (0: off).")
    webhook_addr: str = Field("0.0.0.0", description="Address the webhook listens on.")  # noqa: S104 - a pod listens on its pod IP
    webhook_host: str | None = Field(
        None, description="Host name or IP the API server uses to reach the webhook (URL mode)."
    )
    webhook_service: str | None = Field(
        None, description="NAMESPACE/NAME[:PORT] of the Service in front of the webhook (service mode, in-cluster)."
    )
    webhook_certfile: str | None = Field(None, description="Serving certificate (PEM); none: self-signed.")
    webhook_keyfile: str | None = Field(None, description="Serving key (PEM) of webhook_certfile.")
    webhook_cafile: str | None = Field(None, description="CA bundle the API server trusts for the webhook.")
    webhook_client_ca: str | None = Field(
        None,
        description="CA of the client certificate the API server presents (its admission configuration): set, "
        "no one else can call the webhook, and its records are verified.",
    )
    webhook_secret: str = Field(
        "",
        description="NAMESPACE/NAME of the Secret with the replicas' shared webhook certificate and signing key "
        "(default: the pod's namespace/dbops-webhook); created by the first replica to start.",
    )

    # Restore verification (DBRestore spec.verify): the CA that RDS endpoints' certificates chain to.
    rds_ca_bundle: str = Field(
        "/etc/dbops/rds-ca/global-bundle.pem",
        description="AWS's RDS CA bundle (global-bundle.pem), trusted by probes unless a DBRestore names a CA.",
    )

    # Notifications on completion and failure (overridable per object with dbops.dev/notify-* annotations).
    slack_webhook_url: SecretStr | None = Field(None, description="Slack incoming webhook URL.")
    ses_sender: str | None = Field(None, description="Verified SES sender address for e-mail notifications.")
    notify_email: str = Field("", description="Comma-separated recipients of e-mail notifications.")
    ses_region: str | None = Field(None, description="SES region (default: DBOPS_REGION).")
    notify_attempts: int = Field(3, ge=1, description="Attempts per notification before it is counted as failed.")
    notify_timeout: float = Field(10.0, gt=0, description="Seconds per notification attempt.")

    @model_validator(mode="after")
    def _policy_fits_the_scope(self) -> Self:
        # Each the other's mistake: a cluster-wide operator that reads no DBPolicy would open every
        # namespace; a namespace-scoped one (no cluster-wide lists) cannot read the DBPolicies it enforces.
        if self.policy == "namespace" and self.cluster_scan:
            raise ValueError("DBOPS_POLICY=namespace is for a namespace-scoped install: set DBOPS_CLUSTER_SCAN=false")
        if self.policy == "namespace" and (not self.namespace or any(c in self.namespace for c in ",*?![")):
            raise ValueError("DBOPS_POLICY=namespace needs DBOPS_NAMESPACE to be the one namespace it runs in")
        return self


@lru_cache(maxsize=1)
def get() -> Settings:
    cfg = Settings()
    # SecretStr keeps them out of reprs; the redactor keeps them out of log lines (botocore, urllib3, ...).
    for name in Settings.model_fields:
        if isinstance(value := getattr(cfg, name), SecretStr):
            redact.register(value.get_secret_value())
    if cfg.slack_webhook_url:
        redact.register_webhook(cfg.slack_webhook_url.get_secret_value())
    return cfg
