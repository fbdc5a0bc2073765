"""A DBAttach in the policies' terms (dbops.policy): the cluster it extends, the readers it creates and
their settings, and what a fresh read of AWS says of the cluster. Pure functions."""

from __future__ import annotations

from typing import Any

from dbops.attach.plan import desired_names
from dbops.core.types import tags_of
from dbops.models import DBAttachSpec
from dbops.policy.request import Found, Ref, Request
from dbops.policy.rules import Forced
from dbops.restore.source import parse_endpoint


def cluster_ref(spec: DBAttachSpec) -> Ref:
    """The cluster as the spec names it (a DBRestore's or a custom endpoint's: known only from AWS)."""
    ref = spec.cluster
    if ref.db_cluster:
        return Ref("cluster", ref.db_cluster, "spec.cluster.dbCluster")
    if ref.endpoint:
        ep = parse_endpoint(ref.endpoint)
        return Ref("cluster", None if ep.custom else ep.identifier, "spec.cluster.endpoint")
    return Ref("cluster", None, "spec.cluster.dbRestoreRef")


def request(spec: DBAttachSpec, namespace: str, default_region: str) -> Request:
    endpoint_region = parse_endpoint(spec.cluster.endpoint).region if spec.cluster.endpoint else None
    return Request(
        kind="DBAttach",
        namespace=namespace,
        region=spec.region or endpoint_region or default_region,
        paths={
            "region": "spec.region" if spec.region or not endpoint_region else "spec.cluster.endpoint",
            "identifier": "spec.identifier" if spec.identifier else "spec.identifierPrefix",
            "instance_class": "spec.dbInstanceClass",
            "public": "spec.publiclyAccessible",
            "tags": "spec.tags",
            "readers": "spec.count",
        },
        cluster=cluster_ref(spec),
        identifiers=tuple(desired_names(spec)),
        instance_class=spec.db_instance_class,
        public=spec.publicly_accessible,
        tags=dict(spec.tags or {}),
        readers=spec.count,
    )


def with_forced(spec: DBAttachSpec, forced: Forced) -> DBAttachSpec:
    """The policies' tags merged into the readers' (their network is the cluster's: nothing else to force)."""
    return spec.model_copy(update={"tags": {**(spec.tags or {}), **forced.tags}}) if forced.tags else spec


def found(cluster_id: str, cluster: dict[str, Any], field: str) -> list[Found]:
    engine = cluster.get("Engine")
    return [Found("cluster", "cluster", cluster_id, field, tags_of(cluster), str(engine) if engine else None)]
