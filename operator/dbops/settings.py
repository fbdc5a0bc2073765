"""Operator settings, from environment variables prefixed DBOPS_ (see the README's table)."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_region() -> str:
    # The AWS SDK's own variables first, so that an operator on EKS needs no extra setting.
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DBOPS_", extra="ignore")

    region: str = Field(default_factory=_default_region, description="Default AWS region for new objects.")
    namespace: str = Field(
        "", description="Namespaces to watch, comma-separated kopf patterns (globs, !exclusions); empty: all."
    )
    poll_interval: float = Field(30.0, gt=0, description="Seconds between RDS status polls (one call per region).")
    aws_max_attempts: int = Field(5, ge=1, description="botocore retry attempts for transient errors.")
    max_workers: int = Field(16, ge=1, description="Threads for blocking AWS calls.")
    metrics_port: int = Field(9100, description="Port of the Prometheus /metrics endpoint (0: off).")
    liveness_port: int = Field(8080, description="Port of the kopf liveness endpoint /healthz.")


@lru_cache(maxsize=1)
def get() -> Settings:
    return Settings()
