"""The orphan sweep in tenant accounts: each namespace with a role is listed acting as it, one database
seen through two identities is one orphan, a tenant role removes only its own namespace's databases
(signed as itself), and an identity that cannot list stops nobody else's sweep."""

from __future__ import annotations

from typing import Any

from dbops.core.aws import AWSError, Identity, acting
from dbops.core.report import Record
from dbops.orphans import Orphan, Sweep, account_of, merged, removable
from dbops.policy.store import Tenancy

ROLE = "arn:aws:iam::222222222222:role/dbops-tenant"


def _identity(namespace: str, role: str = ROLE) -> Identity:
    tags = (("dbops.dev/namespace", namespace), ("dbops.dev/name", "orphan-sweep"))
    return Identity(role, "ext", f"dbops-{namespace}-orphan-sweep", tags, f"{role}|ext|{namespace}")


def _db(ident: str, namespace: str, account: str = "222222222222") -> dict[str, Any]:
    tags = {
        "dbops.dev/managed-by": "dbops",
        "dbops.dev/owner-uid": f"uid-of-{ident}",
        "dbops.dev/namespace": namespace,
        "dbops.dev/kind": "DBRestore",
        "dbops.dev/name": ident,
    }
    return {
        "DBInstanceIdentifier": ident,
        "DBInstanceArn": f"arn:aws:rds:us-east-1:{account}:db:{ident}",
        "TagList": [{"Key": k, "Value": v} for k, v in tags.items()],
    }


class _Aws:
    """Accounts of databases by who is asking: None (the operator) or a role ARN; every call is noted
    with the identity that signed it."""

    def __init__(self, accounts: dict[str | None, list[dict[str, Any]]], refuse: set[str] | None = None) -> None:
        self.accounts, self.refuse = accounts, refuse or set()
        self.calls: list[tuple[str, Identity | None]] = []

    def _who(self) -> str | None:
        identity = acting()
        if identity is not None and identity.session_name in self.refuse:
            raise AWSError("AccessDenied", "not trusted", transient=False, operation="assume_role")
        return identity.role_arn if identity else None

    def paginate(self, _region: str, operation: str, _key: str) -> list[dict[str, Any]]:
        who = self._who()
        self.calls.append((operation, acting()))
        return self.accounts.get(who, []) if operation == "describe_db_instances" else []

    def look_one(self, _region: str, _kind: str, ident: str) -> dict[str, Any] | None:
        who = self._who()
        return next((db for db in self.accounts.get(who, []) if db["DBInstanceIdentifier"] == ident), None)

    def call(self, _region: str, operation: str, **params: Any) -> dict[str, Any]:
        self.calls.append((operation, acting()))
        return {}


class _Kube:
    def list(self, _plural: str, _namespace: str | None = None) -> list[dict[str, Any]]:
        return []


class _Reporter:
    def __init__(self) -> None:
        self.records: list[Record] = []

    def notify(self, record: Record) -> None:
        self.records.append(record)


def _sweep(aws: _Aws, tenants: dict[str, Identity], grace: float = 0.0) -> tuple[Sweep, _Reporter]:
    reporter = _Reporter()
    sweep = Sweep(
        aws,  # type: ignore[arg-type]
        _Kube(),  # type: ignore[arg-type]
        reporter,  # type: ignore[arg-type]
        regions=lambda: {"us-east-1"},
        watched=lambda ns: ns != "elsewhere",
        handle="snapshot",
        grace=grace,
        tenants=lambda: tenants,
    )
    return sweep, reporter


def test_an_orphan_in_a_tenant_account_is_found_and_removed_signed_as_its_namespaces_role() -> None:
    b, c = _identity("team-b"), _identity("team-c")  # two namespaces, one role
    # The operator's own role is in the tenant account too: it sees b-copy as well.
    aws = _Aws(
        {
            ROLE: [_db("b-copy", "team-b"), _db("c-copy", "team-c")],
            None: [_db("own-copy", "team-a", "111111111111"), _db("b-copy", "team-b")],
        }
    )
    sweep, reporter = _sweep(aws, {"team-b": b, "team-c": c})
    found = sweep.once()
    assert sorted((o.identifier, o.account) for o in found) == [
        ("b-copy", "222222222222"),
        ("c-copy", "222222222222"),
        ("own-copy", "111111111111"),
    ]
    assert [r.action for r in reporter.records].count("orphan-found") == 3  # each once, though listed twice
    deletes = [(op, who) for op, who in aws.calls if op == "delete_db_instance"]
    assert deletes == [("delete_db_instance", None), ("delete_db_instance", b), ("delete_db_instance", c)]
    assert sweep.count == {"DBRestore": 3}
    # One listing by the operator and one by the shared role (not one per namespace that uses it).
    assert [who for op, who in aws.calls if op == "describe_db_instances"] == [None, b]


def test_a_shared_role_lists_through_the_next_session_when_one_is_refused() -> None:
    b, c = _identity("team-b"), _identity("team-c")
    aws = _Aws({ROLE: [_db("b-copy", "team-b"), _db("c-copy", "team-c")]}, refuse={b.session_name})
    sweep, _reporter = _sweep(aws, {"team-b": b, "team-c": c})
    found = {o.identifier: o.identity for o in sweep.once()}
    assert found == {"b-copy": b, "c-copy": c}  # listed as C; each still signed as its own namespace
    assert [who for op, who in aws.calls if op == "describe_db_instances"] == [None, c]
    assert [who for op, who in aws.calls if op == "delete_db_instance"] == [c]  # B's session is refused


def test_an_identity_that_cannot_list_is_logged_and_the_others_are_swept() -> None:
    b, c = _identity("team-b"), _identity("team-c", "arn:aws:iam::333333333333:role/c")
    aws = _Aws(
        {ROLE: [_db("b-copy", "team-b")], c.role_arn: [_db("c-copy", "team-c", "333333333333")]},
        refuse={b.session_name},
    )
    sweep, reporter = _sweep(aws, {"team-b": b, "team-c": c}, grace=3600)
    assert [o.identifier for o in sweep.once()] == ["c-copy"]
    aws.refuse = {c.session_name}  # now C's role refuses: what C found is still counted, nothing done to it
    assert sorted(o.identifier for o in sweep.once()) == ["b-copy", "c-copy"]
    assert sweep.count == {"DBRestore": 2}
    assert [r.target for r in reporter.records] == ["c-copy", "b-copy"]


def test_a_role_removes_only_its_own_namespaces_databases_and_the_operator_none_of_a_role() -> None:
    b = _identity("team-b")
    seen_by_b = Orphan("us-east-1", "instance", "x", "DBRestore", "team-c", "x", "u", "222222222222", b)
    assert not removable(seen_by_b, {"team-b"})
    assert removable(Orphan("us-east-1", "instance", "x", "DBRestore", "team-b", "x", "u", "2", b), {"team-b"})
    assert removable(Orphan("us-east-1", "instance", "x", "DBRestore", "gone-ns", "x", "u"), {"team-b"})
    assert not removable(Orphan("us-east-1", "instance", "x", "DBRestore", "team-b", "x", "u"), {"team-b"})


def test_one_database_seen_twice_is_one_orphan_kept_from_the_identity_that_may_remove_it() -> None:
    b, c = _identity("team-b"), _identity("team-c")
    via_b = Orphan("us-east-1", "instance", "x", "DBRestore", "team-c", "x", "u", "222222222222", b)
    via_c = Orphan("us-east-1", "instance", "x", "DBRestore", "team-c", "x", "u", "222222222222", c)
    elsewhere = Orphan("us-east-1", "instance", "x", "DBRestore", "team-c", "x", "u", "333333333333", c)
    assert merged([via_b, via_c, elsewhere], {"team-b", "team-c"}) == [via_c, elsewhere]
    assert account_of(ROLE) == account_of("arn:aws:rds:us-east-1:222222222222:db:x") == "222222222222"
    assert account_of("") == ""


def test_the_sweeps_identities_are_the_watched_namespaces_with_a_role_gone_ones_by_name_only() -> None:
    tenancy = Tenancy()
    for ns in ("team-b", "team-a", "elsewhere", "labelled"):
        tenancy.put_namespace(
            {"metadata": {"name": ns, "labels": {"team": ns, "tier": "x"} if ns == "labelled" else {"team": ns}}}
        )
    aws = {"roleArn": ROLE, "externalId": "dbops-team-b"}
    tenancy.put_policy(
        {"metadata": {"name": "b"}, "spec": {"namespaces": ["team-b", "elsewhere", "absent"], "aws": aws}}
    )
    tenancy.put_policy({"metadata": {"name": "a"}, "spec": {"namespaces": ["team-a"]}})
    other = {"roleArn": "arn:aws:iam::444444444444:role/other"}
    sel = {"namespaceSelector": {"matchLabels": {"tier": "x"}}, "aws": {"roleArn": ROLE.replace("tenant", "sel")}}
    tenancy.put_policy({"metadata": {"name": "sel"}, "spec": sel})
    tenancy.put_policy(
        {
            "metadata": {"name": "none"},
            "spec": {
                "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]},
                "aws": other,
            },
        }
    )
    found = tenancy.tenants(lambda ns: ns not in ("elsewhere", "team-a"))
    # "absent" is named by policy b but does not exist (deleted): its orphans are still looked for, as
    # policy b's role. The selector matching namespaces without a team label does not take it: its labels
    # are unknown (read as none, they would clash with b's role and leave it unswept).
    assert sorted(found) == ["absent", "labelled", "team-b"]
    assert found["absent"].role_arn == ROLE and dict(found["absent"].tags)["dbops.dev/namespace"] == "absent"
    tenancy.remove_namespace("team-b")  # deleted: still named, still swept with the same role
    assert tenancy.tenants(lambda ns: True)["team-b"].role_arn == ROLE
    tenancy.remove_namespace("labelled")  # selected by labels only: once gone, no policy says its role
    assert "labelled" not in tenancy.tenants(lambda ns: True)
    assert found["team-b"].role_arn == ROLE and found["team-b"].external_id == "dbops-team-b"
    assert dict(found["team-b"].tags) == {
        "dbops.dev/namespace": "team-b",
        "dbops.dev/name": "orphan-sweep",
        "dbops.dev/kind": "OrphanSweep",
        "dbops.dev/requester": "dbops-operator",
    }


def test_each_listing_feeds_the_slow_resync_as_the_identity_that_made_it() -> None:
    """The sweep's listings are the slow resync's poll: a tracked database is seen from the listing of
    its own identity's account (absent there: gone), and the cache makes no describe of its own."""
    from dbops.core.aws import StatusCache, acting_as

    ours, theirs = _db("ours-db", "plain"), _db("tenant-db", "team-a")
    aws = _Aws({None: [ours], ROLE: [theirs]})
    polls: list[Any] = []
    slow = StatusCache(600, fetch=lambda *args: polls.append(args) or {})
    tenant = _identity("team-a")
    slow.track("us-east-1", "instance", ["ours-db", "tenant-db"], owner="u1")
    with acting_as(tenant):
        slow.track("us-east-1", "instance", ["ours-db", "tenant-db"], owner="u2")
    sweep, _ = _sweep(aws, {"team-a": tenant})
    sweep.listed = slow.feed
    sweep.once()
    assert slow.get("us-east-1", "instance", "ours-db").db == ours
    assert slow.get("us-east-1", "instance", "tenant-db").db is None  # not in the operator's account
    with acting_as(tenant):
        assert slow.get("us-east-1", "instance", "tenant-db").db == theirs
        assert slow.get("us-east-1", "instance", "ours-db").db is None
    assert polls == []
