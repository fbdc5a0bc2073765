"""Who asked, stored in PostgreSQL (which, unlike SQLite, enforces column lengths): the longest usernames
fit, and a record the database refuses is set aside without holding up the others."""

from __future__ import annotations

import pathlib

from dbops import audit
from dbops.core import report

# A ServiceAccount's username at its longest: system:serviceaccount: + a 63-character namespace + a
# 253-character name, about 340 characters: more than the 253 the first schema kept.
LONG_USER = "system:serviceaccount:" + "n" * 63 + ":" + "s" * 253


def record(name: str, requester: str, message: str = "restore requested") -> report.Record:
    return report.Record(
        "DBRestore", "team-b", name, f"uid-{name}", "requested", "Admission", message, requester=requester
    )


def test_long_requesters_and_messages_are_stored_and_found(pg_url: str, tmp_path: pathlib.Path) -> None:
    engine = audit.engine_for(pg_url)
    audit.migrate(engine)
    spool = audit.Spool(tmp_path / "spool")
    spool.put(audit.to_row(record("long", LONG_USER, "m" * 100_000)))
    spool.put(audit.to_row(record("nul", "bob", "a\x00b")))  # PostgreSQL refuses NUL in text
    assert audit.write_batch(engine, spool.pending(), spool) == 2
    assert spool.depth() == 0 and spool.rejected() == 0
    (row,) = audit.query(engine, audit.Query(user=LONG_USER))  # the query bounds the user the same way
    assert row["name"] == "long" and row["requester"] == LONG_USER and len(row["message"]) <= audit.TEXT_LIMIT
    (nul,) = audit.query(engine, audit.Query(name="nul"))
    assert nul["message"] == "a\\0b"
    engine.dispose()


def test_a_record_the_database_refuses_is_set_aside_and_the_rest_are_written(
    pg_url: str, tmp_path: pathlib.Path
) -> None:
    engine = audit.engine_for(pg_url)
    audit.migrate(engine)
    spool = audit.Spool(tmp_path / "spool")
    rejected: list[int] = []
    spool.on_rejected = lambda: rejected.append(1)
    spool.put(audit.to_row(record("before", "alice")))
    # A spool file from elsewhere (an older operator, a hand edit) that bounds nothing: too long for its column.
    spool.put({**audit.to_row(record("bad", "mallory")), "action": "x" * 500})
    spool.put(audit.to_row(record("after", "bob")))
    assert audit.write_batch(engine, spool.pending(), spool) == 3
    names = {r["name"] for r in audit.query(engine, audit.Query(namespace="team-b"))}
    assert names == {"before", "after"}
    assert spool.depth() == 0 and spool.rejected() == 1 and rejected == [1]
    (error,) = (tmp_path / "spool" / audit.REJECTED).glob("*.error")
    assert "value too long" in error.read_text()
    # And the next record still goes in: nothing is blocked behind the refused one.
    spool.put(audit.to_row(record("later", "carol")))
    audit.write_batch(engine, spool.pending(), spool)
    assert {r["name"] for r in audit.query(engine, audit.Query(name="later"))} == {"later"}
    engine.dispose()
