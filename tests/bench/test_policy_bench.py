"""Benchmark: what policy evaluation adds to an admission review, with 100 DBPolicies in the cache.

The webhook's own work per review (dbops.webhook._judge): the spec parsed into a Request and judged by the
policies that select the namespace. Measured in process, without TLS and the API server's round trip;
prints p50 and p99. Run with `make bench`."""

from __future__ import annotations

import statistics
import time

import pytest

from dbops import webhook
from dbops.policy.store import Tenancy

POLICIES = 100
REVIEWS = 2000


def policy(n: int) -> dict[str, object]:
    """Every tenth selects team-b (by label), the others other teams' namespaces: several match."""
    selector = {"matchLabels": {"team": "b" if n % 10 == 0 else f"t{n}"}}
    return {
        "metadata": {"name": f"p{n:03d}", "generation": 1},
        "spec": {
            "namespaceSelector": selector,
            "namespaces": [f"ns-{n}"],
            "sources": {"dbSnapshots": ["{namespace}-*", f"shared-{n}-*"], "regions": ["us-east-1"]},
            "targets": {
                "identifierPattern": "{namespace}-*",
                "instanceClasses": ["db.t4g.*", "db.r6g.large"],
                "publiclyAccessible": False,
                "tags": {"cost-centre": "b"},
                "maxTTL": "7d",
            },
            "limits": {"restoresInFlight": 3},
        },
    }


@pytest.mark.bench
def test_admission_latency_added_by_100_policies() -> None:
    tenancy = Tenancy(enforce=True)
    for n in range(POLICIES):
        tenancy.put_policy(policy(n))
    spec = {
        "source": {"dbSnapshot": "team-b-nightly"},
        "target": {"identifier": "team-b-copy", "dbInstanceClass": "db.t4g.medium", "tags": {"cost-centre": "b"}},
        "ttl": "1d",
        "deletionPolicy": "Delete",
    }
    seconds = []
    for n in range(REVIEWS):
        # A namespace event between reviews clears the selection cache, as label changes do: worst case.
        tenancy.put_namespace({"metadata": {"name": "team-b", "labels": {"team": "b", "n": str(n)}}})
        begun = time.perf_counter()
        asked = webhook.request_of("DBRestore", spec, "team-b", "us-east-1")
        assert asked is not None
        violations = tenancy.review(asked)
        seconds.append(time.perf_counter() - begun)
        assert violations == [], violations
    assert len(tenancy.policies_for("team-b")) == POLICIES // 10
    cuts = statistics.quantiles(seconds, n=100)
    print(
        f"\npolicy evaluation per admission review, {POLICIES} policies ({POLICIES // 10} select the namespace), "
        f"{REVIEWS} reviews, selection recomputed each time: p50 {cuts[49] * 1000:.3f} ms, p99 {cuts[98] * 1000:.3f} ms"
    )
