"""Which look a pass starts from: the batched poll only once its object has made its first create."""

from __future__ import annotations

from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

from dbops.attach.controller import AttachController
from dbops.core.aws import StatusCache
from dbops.core.types import Kind
from dbops.models import DBAttachSpec, DBRestoreSpec
from dbops.restore.controller import RestoreController
from dbops.restore.source import source_ref

SPEC = DBRestoreSpec.model_validate({"source": {"dbSnapshot": "snap-1"}, "target": {"identifier": "db-1"}})
ATTACH = DBAttachSpec.model_validate({"cluster": {"dbCluster": "aurora-1"}, "identifier": "reader-1"})


class Polls:
    def __init__(self) -> None:
        self.calls: list[frozenset[str]] = []

    def __call__(self, _region: str, _kind: Kind, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        self.calls.append(frozenset(ids))
        if _kind == "cluster":
            return {i: {"DBClusterIdentifier": i, "Status": "available", "DBClusterMembers": []} for i in ids}
        return {i: {"DBInstanceIdentifier": i, "DBInstanceStatus": "creating"} for i in ids}


def _controller(polls: Polls) -> tuple[RestoreController, StatusCache]:
    fast = StatusCache(interval=3600, fetch=polls)
    slow = StatusCache(interval=3600, fetch=polls)
    return RestoreController(aws=None, fast=fast, slow=slow, region="us-east-1", poll=5.0), fast  # type: ignore[arg-type]


def _pass(status: dict[str, Any]) -> Any:
    return SimpleNamespace(status=status, uid="uid-1")


def test_before_the_restore_call_no_poll_is_waited_for_but_the_names_are_tracked() -> None:
    polls = Polls()
    controller, fast = _controller(polls)
    seen = controller._cached(_pass({"phase": "Pending"}), SPEC, source_ref(SPEC, "us-east-1"))
    assert seen is None  # the caller reads fresh, as it would have on any poll's answer
    assert polls.calls == []
    assert fast.tracked_count() == 1  # the poll after the create covers it


def test_after_the_restore_call_the_pass_reads_the_batched_poll() -> None:
    polls = Polls()
    controller, _ = _controller(polls)
    status = {"phase": "Restoring", "restoreCallTime": "2026-12-02T00:00:00Z"}
    seen = controller._cached(_pass(status), SPEC, source_ref(SPEC, "us-east-1"))
    assert seen is not None and seen.target is not None and seen.target["DBInstanceStatus"] == "creating"
    assert polls.calls == [frozenset({"db-1"})]


def _attach_controller(polls: Polls) -> tuple[AttachController, StatusCache]:
    fast = StatusCache(interval=3600, fetch=polls)
    slow = StatusCache(interval=3600, fetch=polls)
    return AttachController(aws=None, fast=fast, slow=slow, region="us-east-1", poll=5.0), fast  # type: ignore[arg-type]


def test_a_dbattach_before_its_first_create_waits_for_no_poll_but_has_its_names_tracked() -> None:
    polls = Polls()
    controller, fast = _attach_controller(polls)
    seen = controller._cached(_pass({"phase": "Pending"}), ATTACH, "aurora-1", "us-east-1")
    assert seen is None
    assert polls.calls == []
    assert fast.tracked_count() == 2  # the cluster and the reader's name


def test_a_dbattach_with_readers_reads_the_batched_poll() -> None:
    polls = Polls()
    controller, _ = _attach_controller(polls)
    status = {"phase": "Attaching", "instances": ["reader-1"]}
    seen = controller._cached(_pass(status), ATTACH, "aurora-1", "us-east-1")
    assert seen is not None and seen.instances["reader-1"] is not None
    assert seen.instances["reader-1"]["DBInstanceStatus"] == "creating"
    assert frozenset({"aurora-1"}) in polls.calls and frozenset({"reader-1"}) in polls.calls
