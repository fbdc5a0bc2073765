"""The batched poll: one Describe call per region and kind per interval, whatever the object count."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from dbops.core.aws import StatusCache
from dbops.core.batch import Coalescer, Recent
from dbops.core.types import Kind


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, frozenset[str]]] = []
        self.existing: dict[str, dict[str, Any]] = {}

    def __call__(self, region: str, kind: Kind, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids = frozenset(ids)
        self.calls.append((region, kind, ids))
        return {i: self.existing[i] for i in ids if i in self.existing}


def test_many_objects_share_one_call_per_interval() -> None:
    fetch = Recorder()
    fetch.existing = {f"db{i}": {"DBInstanceStatus": "creating"} for i in range(200)}
    cache = StatusCache(interval=3600, fetch=fetch)
    for i in range(200):
        cache.track("us-east-1", "instance", [f"db{i}"], owner=f"uid{i}")
    results = [cache.get("us-east-1", "instance", f"db{i}") for i in range(200)]
    assert len(fetch.calls) == 1 and len(fetch.calls[0][2]) == 200
    assert all(r.seen and r.db for r in results)


def test_regions_and_kinds_are_polled_separately() -> None:
    fetch = Recorder()
    cache = StatusCache(interval=3600, fetch=fetch)
    cache.track("us-east-1", "instance", ["a"], owner="1")
    cache.track("eu-west-1", "instance", ["b"], owner="2")
    cache.track("us-east-1", "cluster", ["c"], owner="3")
    cache.get("us-east-1", "instance", "a")
    cache.get("eu-west-1", "instance", "b")
    cache.get("us-east-1", "cluster", "c")
    assert sorted((r, k) for r, k, _ in fetch.calls) == [
        ("eu-west-1", "instance"),
        ("us-east-1", "cluster"),
        ("us-east-1", "instance"),
    ]


def test_concurrent_askers_wait_for_one_refresh() -> None:
    fetch = Recorder()
    cache = StatusCache(interval=3600, fetch=fetch)
    for i in range(50):
        cache.track("r", "instance", [f"db{i}"], owner=str(i))
    threads = [threading.Thread(target=cache.get, args=("r", "instance", f"db{i}")) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fetch.calls) == 1


def test_an_identifier_tracked_after_the_poll_waits_for_the_next_one() -> None:
    fetch = Recorder()
    cache = StatusCache(interval=3600, fetch=fetch)
    cache.track("r", "instance", ["old"], owner="1")
    cache.get("r", "instance", "old")
    cache.track("r", "instance", ["new"], owner="2")
    assert not cache.get("r", "instance", "new").seen
    assert len(fetch.calls) == 1


def test_forget_hides_a_poll_made_before_the_create_call() -> None:
    fetch = Recorder()
    cache = StatusCache(interval=3600, fetch=fetch)
    cache.track("r", "cluster", ["c"], owner="old-object")
    assert cache.get("r", "cluster", "c").db is None  # polled before the restore call
    fetch.existing["c"] = {"Status": "creating"}
    cache.forget("r", "cluster", ["c"])
    assert not cache.get("r", "cluster", "c").seen  # not "missing": unknown until the next poll


def test_untrack_stops_polling_an_owners_identifiers() -> None:
    fetch = Recorder()
    cache = StatusCache(interval=0, fetch=fetch)
    cache.track("r", "instance", ["a", "b"], owner="1")
    cache.track("r", "instance", ["b"], owner="2")
    cache.untrack("1")
    cache.get("r", "instance", "b")
    assert fetch.calls[-1][2] == frozenset({"b"})


def test_what_was_seen_for_an_owner_that_left_is_never_shown_to_the_next() -> None:
    """A DBAttach deleted and another created with the same instance name (or a fresh test after a
    reset): the new owner must not see the old owner's instance from a poll made before it came."""
    fetch = Recorder()
    fetch.existing = {"crm-ro-1": {"DBInstanceStatus": "available", "TagList": [{"Key": "owner", "Value": "a"}]}}
    cache = StatusCache(interval=3600, fetch=fetch)
    cache.track("us-east-1", "instance", ["crm-ro-1"], owner="a")
    assert cache.get("us-east-1", "instance", "crm-ro-1").db
    cache.untrack("a")
    del fetch.existing["crm-ro-1"]  # gone in AWS too
    cache.track("us-east-1", "instance", ["crm-ro-1"], owner="b")
    seen = cache.get("us-east-1", "instance", "crm-ro-1")
    assert not seen.seen and seen.db is None  # not yet polled for b: nothing to decide on


def test_what_the_cache_keeps_comes_back_as_aws_said_it() -> None:
    """Kept packed (memory), handed back equal: nested lists and dicts, numbers, booleans, None, and
    datetimes with their time zone (a ttl counts from InstanceCreateTime)."""
    import datetime

    from dateutil.tz import tzutc  # the zone of boto3's datetimes

    db = {
        "DBInstanceIdentifier": "a",
        "InstanceCreateTime": datetime.datetime(2026, 12, 1, 10, 30, 5, 123000, tzinfo=tzutc()),
        "Endpoint": {"Address": "a.example", "Port": 5432},
        "VpcSecurityGroups": [{"VpcSecurityGroupId": "sg-1", "Status": "active"}],
        "MultiAZ": False,
        "AllocatedStorage": 20,
        "PendingModifiedValues": {},
        "LatestRestorableTime": None,
    }
    fetch = Recorder()
    fetch.existing = {"a": db}
    cache = StatusCache(interval=3600, fetch=fetch)
    cache.track("us-east-1", "instance", ["a"], owner="1")
    seen = cache.get("us-east-1", "instance", "a").db
    assert seen == db and seen is not db
    assert seen["InstanceCreateTime"] - db["InstanceCreateTime"] == datetime.timedelta(0)
    assert seen["InstanceCreateTime"].utcoffset() == datetime.timedelta(0)


# --- feed: the orphan sweep's listing stands for the slow resync's poll ----------------------------------


def _listing(*names: str, status: str = "available") -> list[dict[str, Any]]:
    return [{"DBInstanceIdentifier": n, "DBInstanceStatus": status} for n in names]


def test_a_listing_answers_the_next_polls_of_every_tracked_db_and_absent_means_gone() -> None:
    fetch = Recorder()
    cache = StatusCache(interval=600, fetch=fetch)
    cache.track("r", "instance", ["a", "b"], owner="1")
    cache.feed("r", "instance", _listing("a", "stranger"), since=time.monotonic())
    a, b = cache.get("r", "instance", "a"), cache.get("r", "instance", "b")
    assert a.seen and a.db == {"DBInstanceIdentifier": "a", "DBInstanceStatus": "available"}
    assert b.seen and b.db is None  # not in a listing of the whole region: deleted
    assert fetch.calls == []  # no poll of its own
    cache.track("r", "instance", ["stranger"], owner="2")  # untracked at the listing: not kept from it
    assert not cache.get("r", "instance", "stranger").seen


def test_a_listing_older_than_a_poll_or_a_fresh_read_does_not_overwrite_them() -> None:
    fetch = Recorder()
    fetch.existing = {"a": {"DBInstanceIdentifier": "a", "DBInstanceStatus": "available"}}
    cache = StatusCache(interval=600, fetch=fetch)
    cache.track("r", "instance", ["a", "b", "c"], owner="1")
    began = time.monotonic()
    cache.get("r", "instance", "a")  # a poll after the listing began
    cache.feed("r", "instance", _listing(status="deleting"), since=began)
    assert cache.get("r", "instance", "a").db == fetch.existing["a"]
    began = time.monotonic()
    cache.put("r", "instance", {"b": {"DBInstanceIdentifier": "b", "DBInstanceStatus": "modifying"}})
    cache.forget("r", "instance", ["c"])  # created after the listing began
    cache.feed("r", "instance", _listing("a", status="stopped"), since=began - 1.0)  # (older than the poll)
    assert cache.get("r", "instance", "a").db == fetch.existing["a"]
    cache2 = StatusCache(interval=600, fetch=fetch)
    cache2.track("r", "instance", ["a", "b", "c"], owner="1")
    began = time.monotonic()
    cache2.put("r", "instance", {"b": {"DBInstanceIdentifier": "b", "DBInstanceStatus": "modifying"}})
    cache2.forget("r", "instance", ["c"])
    cache2.feed("r", "instance", _listing("a", "b", status="stopped"), since=began)
    assert cache2.get("r", "instance", "a").db == {"DBInstanceIdentifier": "a", "DBInstanceStatus": "stopped"}
    assert cache2.get("r", "instance", "b").db == {"DBInstanceIdentifier": "b", "DBInstanceStatus": "modifying"}
    assert not cache2.get("r", "instance", "c").seen  # forgotten after the listing began: still unknown


def test_a_listing_stands_for_more_than_one_interval_and_the_cache_polls_when_they_stop() -> None:
    fetch = Recorder()
    cache = StatusCache(interval=0.2, fetch=fetch)
    cache.track("r", "instance", ["a"], owner="1")
    cache.feed("r", "instance", _listing("a"), since=time.monotonic())
    time.sleep(0.22)  # past a poll's interval, within the listing's 1.5 intervals
    assert cache.get("r", "instance", "a").seen and fetch.calls == []
    time.sleep(0.1)  # no listing came: the cache polls by itself
    cache.get("r", "instance", "a")
    assert len(fetch.calls) == 1


# --- Recent: the source reads of a burst ------------------------------------------------------------------


def test_a_source_read_serves_the_passes_of_the_next_moment_only() -> None:
    reads: list[str] = []
    recent = Recent(ttl=0.2)

    def read() -> dict[str, Any]:
        reads.append("x")
        return {"DBSnapshotIdentifier": "snap", "TagList": [{"Key": "k", "Value": "v"}]}

    first = recent.get(("", "us-east-1", "snapshot", "snap"), read)
    second = recent.get(("", "us-east-1", "snapshot", "snap"), read)
    assert first == second and len(reads) == 1
    second["TagList"].append({"Key": "changed", "Value": "by one pass"})  # one pass's change stays its own
    assert recent.get(("", "us-east-1", "snapshot", "snap"), read) == first
    recent.get(("other-role", "us-east-1", "snapshot", "snap"), read)  # another identity reads for itself
    assert len(reads) == 2
    time.sleep(0.25)
    recent.get(("", "us-east-1", "snapshot", "snap"), read)
    assert len(reads) == 3  # older than the ttl: read again


def test_a_source_not_found_is_never_kept() -> None:
    answers: list[dict[str, Any] | None] = [None, {"DBInstanceIdentifier": "src"}]
    recent = Recent(ttl=60)
    assert recent.get(("", "r", "instance", "src"), lambda: answers.pop(0)) is None
    assert recent.get(("", "r", "instance", "src"), lambda: answers.pop(0)) == {"DBInstanceIdentifier": "src"}


def test_a_lone_fresh_read_waits_one_window_and_a_growing_burst_shares_one_call() -> None:
    calls: list[list[str]] = []

    def fetch(region: str, kind: str, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        calls.append(sorted(ids))
        return {i: {"DBInstanceIdentifier": i} for i in ids}

    fresh = Coalescer(fetch, window=0.3, longest=10.0)
    started = time.monotonic()
    assert fresh.get("r", "instance", ["alone"]) == {"alone": {"DBInstanceIdentifier": "alone"}}
    assert time.monotonic() - started < 5.0  # one window, not the longest
    # Passes joining one after the other, each within a window of the previous: one call for all.
    threads = [threading.Thread(target=fresh.get, args=("r", "instance", [f"db-{n}"])) for n in range(6)]
    for thread in threads:
        thread.start()
        time.sleep(0.02)
    for thread in threads:
        thread.join()
    assert calls == [["alone"], [f"db-{n}" for n in range(6)]]


class SlowFetch(Recorder):
    """A describe that takes until the test lets it answer, with what AWS said when it was made."""

    def __init__(self) -> None:
        super().__init__()
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, region: str, kind: Kind, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        answer = super().__call__(region, kind, ids)
        self.started.set()
        assert self.release.wait(10)
        return answer


def _polling(cache: StatusCache, fetch: SlowFetch, ident: str) -> threading.Thread:
    thread = threading.Thread(target=cache.get, args=("r", "instance", ident))
    thread.start()
    assert fetch.started.wait(10)
    return thread


def test_track_put_and_forget_do_not_wait_for_a_poll_in_flight() -> None:
    fetch = SlowFetch()
    cache = StatusCache(interval=3600, fetch=fetch)
    cache.track("r", "instance", ["a"], owner="1")
    poll = _polling(cache, fetch, "a")
    done = threading.Event()

    def others() -> None:
        cache.track("r", "instance", ["b"], owner="2")
        cache.put("r", "instance", {"b": None})
        cache.forget("r", "instance", ["b"])
        done.set()

    threading.Thread(target=others).start()
    try:
        assert done.wait(5), "track/put/forget waited for the poll's AWS call"
    finally:
        fetch.release.set()
        poll.join(5)


def test_a_fresh_read_during_a_poll_is_not_undone_by_the_poll_s_older_answer() -> None:
    fetch = SlowFetch()
    fetch.existing = {"a": {"DBInstanceStatus": "creating"}}
    cache = StatusCache(interval=3600, fetch=fetch)
    cache.track("r", "instance", ["a", "gone"], owner="1")
    poll = _polling(cache, fetch, "a")  # asked while "a" was creating
    cache.put("r", "instance", {"a": {"DBInstanceStatus": "available"}})  # read fresh after the poll began
    fetch.release.set()
    poll.join(5)
    assert cache.get("r", "instance", "a").db == {"DBInstanceStatus": "available"}
    assert cache.get("r", "instance", "gone").seen and cache.get("r", "instance", "gone").db is None
    assert len(fetch.calls) == 1


def test_what_is_untracked_during_a_poll_is_not_kept() -> None:
    fetch = SlowFetch()
    fetch.existing = {"a": {"DBInstanceStatus": "creating"}, "b": {"DBInstanceStatus": "creating"}}
    cache = StatusCache(interval=3600, fetch=fetch)
    cache.track("r", "instance", ["a"], owner="1")
    cache.track("r", "instance", ["b"], owner="old")
    poll = _polling(cache, fetch, "a")
    cache.untrack("old")  # its object went: a later object named the same must not see its data
    fetch.release.set()
    poll.join(5)
    cache.track("r", "instance", ["b"], owner="new")
    assert not cache.get("r", "instance", "b").seen


def test_passes_waiting_for_a_poll_in_flight_take_its_answer() -> None:
    fetch = SlowFetch()
    fetch.existing = {f"db{i}": {"DBInstanceStatus": "creating"} for i in range(20)}
    cache = StatusCache(interval=3600, fetch=fetch)
    for i in range(20):
        cache.track("r", "instance", [f"db{i}"], owner=str(i))
    first = _polling(cache, fetch, "db0")
    seen: list[bool] = []

    def ask(i: int) -> None:
        seen.append(cache.get("r", "instance", f"db{i}").seen)

    waiting = [threading.Thread(target=ask, args=(i,)) for i in range(1, 20)]
    for t in waiting:
        t.start()
    time.sleep(0.2)
    fetch.release.set()
    for t in [first, *waiting]:
        t.join(5)
    assert seen == [True] * 19
    assert len(fetch.calls) == 1
