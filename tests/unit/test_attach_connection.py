"""What a DBAttach writes for applications: the readers, as AWS reports them (attach.plan)."""

from __future__ import annotations

from dbops.attach.plan import connection_details

CLUSTER = {
    "ReaderEndpoint": "orders.cluster-ro-x.us-east-1.rds.amazonaws.com",
    "Endpoint": "orders.cluster-x.us-east-1.rds.amazonaws.com",
    "Port": 5432,
    "Engine": "aurora-postgresql",
    "MasterUsername": "dbadmin",
}


def test_the_readers_are_listed_in_order_and_the_writer_endpoint_is_not_given() -> None:
    instances = [
        {"identifier": "ro-1", "endpoint": "ro-1.x.rds.amazonaws.com", "role": "reader"},
        {"identifier": "ro-2", "endpoint": "ro-2.x.rds.amazonaws.com", "role": "writer"},  # promoted by a failover
        {"identifier": "ro-3", "endpoint": None, "role": "reader"},  # still being created: no endpoint yet
        {"identifier": "ro-4", "endpoint": "ro-4.x.rds.amazonaws.com", "role": "reader"},
    ]
    assert connection_details(CLUSTER, instances) == {
        "readerEndpoint": "orders.cluster-ro-x.us-east-1.rds.amazonaws.com",
        "port": "5432",
        "engine": "aurora-postgresql",
        "username": "dbadmin",
        "instanceEndpoints": "ro-1.x.rds.amazonaws.com,ro-4.x.rds.amazonaws.com",
    }


def test_what_rds_does_not_report_is_left_out_rather_than_written_empty() -> None:
    assert connection_details({"Port": 3306}, []) == {"port": "3306"}
