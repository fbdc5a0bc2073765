"""Fixtures of the admission webhook tests (test_webhook, test_notify, test_tenancy)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.kube import Cluster, free_port
from tests.support.operator import Operator

CONFIGURATION = "validatingwebhookconfiguration/dbops.dev"  # the operator keeps it (dbops.webhook)


def webhook_settings(cluster: Cluster, namespace: str) -> dict[str, str]:
    """An operator's settings to serve the validating webhook on loopback (URL mode), where the real API
    server calls it presenting its client certificate, with its keys Secret in `namespace`."""
    assert cluster.webhook_client_ca is not None
    return {
        "DBOPS_WEBHOOK_PORT": str(free_port()),
        "DBOPS_WEBHOOK_HOST": "127.0.0.1",
        "DBOPS_WEBHOOK_CLIENT_CA": str(cluster.webhook_client_ca),
        "DBOPS_WEBHOOK_SECRET": f"{namespace}/dbops-webhook",
    }


@pytest.fixture
def admission_webhook(cluster: Cluster, own_operator: Operator, own_namespace: str) -> Iterator[dict[str, str]]:
    """Settings that make own_operator serve its admission webhook. Its configuration applies cluster-wide
    (failurePolicy Ignore, so a stopped operator blocks nothing, but every other test's request would
    wait for a connection refused): once this operator is stopped it is removed."""
    yield webhook_settings(cluster, own_namespace)
    own_operator.stop()
    cluster.kubectl("delete", CONFIGURATION, "--ignore-not-found")


@pytest.fixture
def policies(cluster: Cluster) -> Iterator[Callable[..., str]]:
    """Apply a DBPolicy (cluster-scoped, so shared by every test): `policies(name, **spec)`. Each is
    deleted when the test ends; name them after the test's own namespaces, which alone they select."""
    made: list[str] = []

    def apply(name: str, **spec: Any) -> str:
        cluster.apply(
            {"apiVersion": "dbops.dev/v1alpha1", "kind": "DBPolicy", "metadata": {"name": name}, "spec": spec}
        )
        made.append(name)
        return name

    yield apply
    for name in made:
        cluster.kubectl("delete", "dbpolicy", name, "--ignore-not-found")
