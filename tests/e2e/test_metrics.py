"""/metrics during a real restore: the values move as they should (deltas: the operator is shared)."""

from __future__ import annotations

from tests.e2e.obs_helpers import eventually, in_flight_above, scrape, value
from tests.e2e.restore_helpers import dbrestore, wait_phase
from tests.support.fakeaws_fixture import FakeAWS, seed_cluster, seed_instance
from tests.support.kube import Cluster
from tests.support.operator import Operator


def test_metrics_move_during_a_restore_and_count_throttled_attempts(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    """The shared operator, on purpose: the injected throttling faults go to whichever client calls
    next, and an operator of the test's own would race the shared one (also running) for them."""
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "metrics-src")
    before = scrape(operator.metrics_port)
    assert value(before, "dbops_build_info") == 1
    assert ("dbops_audit_spool_records", ()) in before

    fake_aws.configure(create_seconds=4)
    # Two throttled attempts that botocore retries by itself: each attempt is counted.
    fake_aws.inject_fault("DescribeDBInstances", "Throttling", status=400, times=2)
    cluster.apply(dbrestore("m1", namespace, {"dbSnapshot": src.snapshot_identifier}, "metrics-copy"))
    during = in_flight_above(operator.metrics_port, before, "DBRestore")
    assert value(during, "dbops_restores_started_total", kind="DBRestore") == (
        value(before, "dbops_restores_started_total", kind="DBRestore") + 1
    )
    wait_phase(cluster, "m1", namespace, "Available", timeout=90)

    def settled() -> dict | None:
        s = scrape(operator.metrics_port)
        labels = {"kind": "DBRestore", "outcome": "available", "reason": "Available"}
        done = value(s, "dbops_restores_total", **labels)
        return s if done == value(before, "dbops_restores_total", **labels) + 1 else None

    after = eventually(settled, what="the outcome counted")
    delta = lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)  # noqa: E731
    assert (
        value(after, "dbops_restores_in_flight", kind="DBRestore")
        == value(during, "dbops_restores_in_flight", kind="DBRestore") - 1
    )
    assert delta("dbops_restore_duration_seconds_count", kind="DBRestore", outcome="available") == 1
    assert delta("dbops_restore_duration_seconds_sum", kind="DBRestore", outcome="available") >= 3
    assert delta("dbops_restores_total", outcome="failed") == 0
    assert delta("dbops_aws_api_errors_total", operation="DescribeDBInstances", code="Throttling") == 2
    assert delta("dbops_aws_api_throttled_total", operation="DescribeDBInstances") == 2
    assert delta("dbops_aws_api_calls_total", operation="RestoreDBInstanceFromDBSnapshot") == 1
    assert delta("dbops_aws_api_calls_total", operation="DescribeDBInstances") >= 3
    assert delta("dbops_reconcile_duration_seconds_count", kind="DBRestore") >= 3  # Pending, create, polls
    assert delta("dbops_records_total", kind="DBRestore", action="available") == 1
    assert delta("dbops_audit_records_written_total") >= 3  # the default SQLite trail took them
    # Low cardinality: no namespace, name or UID in any label.
    assert not [k for k in after if any(lbl in ("namespace", "name", "uid") for lbl, _ in k[1])]


def test_a_failed_restore_is_counted_by_reason(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    before = scrape(operator.metrics_port)
    cluster.apply(dbrestore("m2", namespace, {"dbSnapshot": "no-such-snapshot"}, "metrics-fail"))
    wait_phase(cluster, "m2", namespace, "Failed")
    after = eventually(
        lambda: (
            (s := scrape(operator.metrics_port))
            and value(s, "dbops_restores_total", outcome="failed", reason="SnapshotNotFound")
            == value(before, "dbops_restores_total", outcome="failed", reason="SnapshotNotFound") + 1
            and s
        ),
        what="the failure counted",
    )
    assert value(after, "dbops_restores_in_flight", kind="DBRestore") == value(
        before, "dbops_restores_in_flight", kind="DBRestore"
    )


def test_attaches_are_counted_by_kind(cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str) -> None:
    seed_cluster(fake_aws.client("rds"), "metrics-orders")
    fake_aws.configure(create_seconds=4)
    before = scrape(operator.metrics_port)
    attach = {
        "apiVersion": "dbops.dev/v1alpha1",
        "kind": "DBAttach",
        "metadata": {"name": "ma1", "namespace": namespace},
        "spec": {"cluster": {"dbCluster": "metrics-orders"}, "identifier": "metrics-orders-reader"},
    }
    cluster.apply(attach)
    try:
        during = in_flight_above(operator.metrics_port, before, "DBAttach")
        assert value(during, "dbops_restores_started_total", kind="DBAttach") == (
            value(before, "dbops_restores_started_total", kind="DBAttach") + 1
        )
        eventually(
            lambda: (
                value(scrape(operator.metrics_port), "dbops_restore_oldest_in_flight_seconds", kind="DBAttach") >= 1
            ),
            what="the attach's age",
        )
        cluster.wait_for(
            "dbattach", "ma1", namespace, lambda o: (o.get("status") or {}).get("phase") == "Available", timeout=60
        )

        def settled() -> dict | None:
            s = scrape(operator.metrics_port)
            done = value(s, "dbops_restores_total", kind="DBAttach", outcome="available")
            return (
                s if done == value(before, "dbops_restores_total", kind="DBAttach", outcome="available") + 1 else None
            )

        after = eventually(settled, what="the attach's outcome counted")
        delta = lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)  # noqa: E731
        assert delta("dbops_restores_started_total", kind="DBAttach") == 1  # once, however many steps it took
        assert delta("dbops_restores_started_total", kind="DBRestore") == 0
        assert value(after, "dbops_restores_in_flight", kind="DBAttach") == value(
            before, "dbops_restores_in_flight", kind="DBAttach"
        )
        assert delta("dbops_restore_duration_seconds_count", kind="DBAttach", outcome="available") == 1
        assert delta("dbops_restore_duration_seconds_sum", kind="DBAttach", outcome="available") >= 3
        assert delta("dbops_aws_api_calls_total", operation="CreateDBInstance") == 1
        assert delta("dbops_records_total", kind="DBAttach", action="available") == 1
        assert delta("dbops_restores_total", kind="DBAttach", outcome="failed") == 0
    finally:
        # An attach keeps being polled while it exists: gone, it cannot add AWS calls to later tests' counts.
        cluster.kubectl("delete", "dbattach", "ma1", "-n", namespace, "--timeout=60s")
