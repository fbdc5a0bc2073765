"""How AWS failures are classified: what is retried, and what fails the object with its code."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from dbops.core import aws as rds


def client_error(code: str, status: int) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": f"{code} happened"},
        "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": "req-1"},
    }
    return ClientError(response, "RestoreDBInstanceFromDBSnapshot")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "code", "transient"),
    [
        (client_error("Throttling", 400), "Throttling", True),
        (client_error("InternalFailure", 500), "InternalFailure", True),
        (client_error("SomethingNew", 503), "SomethingNew", True),  # any 5xx passes
        (client_error("DBSnapshotNotFound", 404), "DBSnapshotNotFound", False),
        (client_error("InvalidParameterCombination", 400), "InvalidParameterCombination", False),
        (EndpointConnectionError(endpoint_url="https://rds.example"), "EndpointConnectionError", True),
        # Cut mid-answer or never answered: the network, not the request (both seen with AWS going away).
        (ConnectionClosedError(endpoint_url="https://rds.example"), "ConnectionClosedError", True),
        (ReadTimeoutError(endpoint_url="https://rds.example"), "ReadTimeoutError", True),
        (ResponseParserError("invalid XML received: <!doctype html>"), "ResponseParserError", True),
        (ParamValidationError(report="bad param"), "ParamValidationError", False),
    ],
)
def test_classify(exc: Exception, code: str, transient: bool) -> None:
    failure = rds.classify(exc, "restore_db_instance_from_db_snapshot")
    assert (failure.code, failure.transient) == (code, transient)
    assert "restore_db_instance_from_db_snapshot" in str(failure)


def test_request_id_is_kept_for_the_audit_trail() -> None:
    assert rds.classify(client_error("Throttling", 400)).request_id == "req-1"
