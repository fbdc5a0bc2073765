"""Which look a DBRestore pass starts from: the batched poll only once its restore call is made."""

from __future__ import annotations

from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

from dbops.core.aws import StatusCache
from dbops.core.types import Kind
from dbops.models import DBRestoreSpec
from dbops.restore.controller import RestoreController
from dbops.restore.source import source_ref

SPEC = DBRestoreSpec.model_validate({"source": {"dbSnapshot": "snap-1"}, "target": {"identifier": "db-1"}})


class Polls:
    def __init__(self) -> None:
        self.calls: list[frozenset[str]] = []

    def __call__(self, _region: str, _kind: Kind, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        self.calls.append(frozenset(ids))
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
