"""Fixtures of the admission webhook tests (test_webhook, test_notify)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.kube import Cluster, free_port
from tests.support.operator import Operator

WEBHOOK_CONFIGS = "mutatingwebhookconfiguration,validatingwebhookconfiguration"
MANAGED = "dbops.dev"  # kopf names its webhook configurations after settings.admission.managed


@pytest.fixture
def admission_webhook(cluster: Cluster, own_operator: Operator) -> Iterator[dict[str, str]]:
    """Settings that make own_operator serve its admission webhook (TLS, URL mode on loopback), where the
    real API server calls it. Its configurations apply cluster-wide and the mutating one is persistent
    with failurePolicy Fail: once this operator is stopped they are removed, or they would refuse every
    other test's DBRestores."""
    yield {"DBOPS_WEBHOOK_PORT": str(free_port()), "DBOPS_WEBHOOK_HOST": "127.0.0.1"}
    own_operator.stop()
    cluster.kubectl("delete", WEBHOOK_CONFIGS, MANAGED, "--ignore-not-found")
