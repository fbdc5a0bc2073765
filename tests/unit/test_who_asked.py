"""Who asked: the deleter persisted on the object (signed, bound to its UID), requesters that cannot be
proven shown as unverified, and stored fields bounded."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import yaml

from dbops import audit
from dbops.core import keys, report

KEYS = keys.Keys(b"cert", b"key", b"k" * 32)
UID = "0b6a1c2e-uid"


def body(annotations: dict[str, str], deleting: bool = True, uid: str = UID) -> dict[str, Any]:
    meta: dict[str, Any] = {"uid": uid, "annotations": annotations}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    return {"kind": "DBRestore", "metadata": meta, "spec": {}}


def test_a_signed_deleter_is_verified_for_its_own_object_only() -> None:
    bob = report.Requester("bob", ("team-b",), verified=True)
    value = report.deleter_annotation(KEYS, UID, bob)
    assert report.deleter(KEYS, body({report.DELETED_BY: value})) == bob
    # Copied onto another object, or read without the key: the name stays, proven it is not.
    assert report.deleter(KEYS, body({report.DELETED_BY: value}, uid="other")) == report.Requester("bob", ("team-b",))
    assert report.deleter(None, body({report.DELETED_BY: value})) == report.Requester("bob", ("team-b",))
    # Signed by a webhook that could not authenticate its caller: signed, and unverified all the same.
    told = report.deleter_annotation(KEYS, UID, report.Requester("mallory", (), verified=False))
    assert report.deleter(KEYS, body({report.DELETED_BY: told})) == report.Requester("mallory", ())


def test_a_deleter_written_by_hand_is_unverified() -> None:
    forged = json.dumps({"username": "bob", "groups": [], "verified": True, "sig": "0" * 64})
    assert report.deleter(KEYS, body({report.DELETED_BY: forged})) == report.Requester("bob", ())
    unsigned = json.dumps({"username": "bob"})
    assert report.deleter(KEYS, body({report.DELETED_BY: unsigned})) == report.Requester("bob", ())


def test_deletion_records_name_the_deleter_never_the_creator() -> None:
    reporter = report.Reporter(None)
    reporter.signer = KEYS
    reporter.stamped = lambda: True
    created = {report.REQUESTED_BY: report.Requester("alice").to_annotation()}
    assert reporter.requester_of(body(created), "deleted") is None  # nobody known: not alice
    signed = report.deleter_annotation(KEYS, UID, report.Requester("bob", verified=True))
    who = reporter.requester_of(body({**created, report.DELETED_BY: signed}), "deleted")
    assert who == report.Requester("bob", verified=True)
    # Not being deleted (a ttl removing the database): the creator asked for it.
    assert reporter.requester_of(body(created, deleting=False), "deleting") == report.Requester("alice", verified=True)


def test_the_requester_is_verified_only_while_the_api_server_stamps_it() -> None:
    reporter = report.Reporter(None)
    stamped = body({report.REQUESTED_BY: report.Requester("alice").to_annotation()}, deleting=False)
    assert reporter.requester_of(stamped, "requested") == report.Requester("alice", verified=False)
    reporter.stamped = lambda: True
    assert reporter.requester_of(stamped, "requested") == report.Requester("alice", verified=True)


def test_every_stored_field_is_bounded_the_same_way_for_writes_and_queries() -> None:
    long_user = "system:serviceaccount:" + "n" * 63 + ":" + "s" * 600
    record = report.Record(
        "DBRestore", "ns", "n" * 300, "uid", "requested", "R" * 200, "m" * 40000, requester=long_user
    )
    row = audit.to_row(record)
    for column in audit.records.columns:
        limit = getattr(column.type, "length", None) or audit.TEXT_LIMIT
        value = row.get(column.name)
        assert not isinstance(value, str) or len(value) <= limit, column.name
    assert row["requester"] == audit.bounded("requester", long_user) and row["requester"].endswith("…")
    assert audit.bounded("message", "a\x00b") == "a\\0b"  # PostgreSQL takes no NUL in text


def test_the_table_says_unverified() -> None:
    rows = [{"requester": "bob", "requester_verified": False}, {"requester": "alice", "requester_verified": True}]
    table = audit.render_table(rows, ("requester",)).splitlines()
    assert table[1:] == ["bob(unverified)", "alice"]


def test_the_api_server_stamps_the_requester_on_every_kind_whose_records_name_one() -> None:
    """The operator reads dbops.dev/requested-by from any namespaced kind it records (schedules too) and
    calls it verified while the policy is installed: a kind the policy does not match would let its
    user write the name the audit trail shows."""
    root = pathlib.Path(__file__).resolve().parents[2]
    crds = [yaml.safe_load(p.read_text()) for p in sorted((root / "crds").glob("*.yaml"))]
    namespaced = {c["spec"]["names"]["plural"] for c in crds if c["spec"]["scope"] == "Namespaced"}
    policy = next(yaml.safe_load_all((root / "manifests" / "base" / "admission-requested-by.yaml").read_text()))
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert set(rule["resources"]) == namespaced == {"dbrestores", "dbattaches", "dbrestoreschedules"}
    assert set(rule["operations"]) == {"CREATE", "UPDATE"}
