"""Every spec.target field of a DBRestore either takes effect on what RDS creates, or is refused at
admission for that kind of source: a test per field and kind, through the real API server and the
operator, checked on what the fake AWS then holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.restore_helpers import dbrestore, tags, wait_phase
from tests.support.fakeaws_fixture import FakeAWS, Seeded, seed_cluster, seed_instance
from tests.support.kube import Cluster
from tests.support.operator import Operator

Setup = Callable[[Any, Seeded], Any]  # makes what the field names (a group...), returns the value to set
Check = Callable[[Any, Any], None]  # (what RDS holds, the value set)


def _new_subnet_group(rds: Any, src: Seeded) -> str:
    group = rds.describe_db_subnet_groups(DBSubnetGroupName=src.subnet_group)["DBSubnetGroups"][0]
    rds.create_db_subnet_group(
        DBSubnetGroupName="other-subnets",
        DBSubnetGroupDescription="other",
        SubnetIds=[s["SubnetIdentifier"] for s in group["Subnets"]],
    )
    return "other-subnets"


def _new_security_group(rds: Any, src: Seeded) -> list[str]:
    import boto3

    ec2 = boto3.client(
        "ec2",
        endpoint_url=rds.meta.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    vpc = rds.describe_db_subnet_groups(DBSubnetGroupName=src.subnet_group)["DBSubnetGroups"][0]["VpcId"]
    return [ec2.create_security_group(GroupName="other-db", Description="other", VpcId=vpc)["GroupId"]]


def _new_parameter_group(family: str) -> Setup:
    def make(rds: Any, src: Seeded) -> str:
        rds.create_db_parameter_group(
            DBParameterGroupName="other-params", DBParameterGroupFamily=family, Description="x"
        )
        return "other-params"

    return make


def _const(value: Any) -> Setup:
    return lambda rds, src: value


# --- DB instances (source: a DB snapshot) ---------------------------------------------------------

INSTANCE: dict[str, tuple[Setup, Check]] = {
    "dbInstanceClass": (_const("db.t4g.small"), lambda db, v: _eq(db["DBInstanceClass"], v)),
    "dbSubnetGroupName": (_new_subnet_group, lambda db, v: _eq(db["DBSubnetGroup"]["DBSubnetGroupName"], v)),
    "vpcSecurityGroupIds": (
        _new_security_group,
        lambda db, v: _eq([g["VpcSecurityGroupId"] for g in db["VpcSecurityGroups"]], v),
    ),
    "dbParameterGroupName": (
        _new_parameter_group("postgres16"),
        lambda db, v: _eq(db["DBParameterGroups"][0]["DBParameterGroupName"], v),
    ),
    "multiAZ": (_const(True), lambda db, v: _eq(db["MultiAZ"], v)),
    "storageType": (_const("io1"), lambda db, v: _eq(db["StorageType"], v)),
    "port": (_const(6543), lambda db, v: _eq(db["Endpoint"]["Port"], v)),
    "publiclyAccessible": (_const(True), lambda db, v: _eq(db["PubliclyAccessible"], v)),
    "deletionProtection": (_const(True), lambda db, v: _eq(db["DeletionProtection"], v)),
    "iamDatabaseAuthentication": (_const(True), lambda db, v: _eq(db["IAMDatabaseAuthenticationEnabled"], v)),
    "tags": (_const({"cost-centre": "4711"}), lambda db, v: _eq(tags(db)["cost-centre"], "4711")),
}
INSTANCE_REFUSED = {"instances": {"count": 2}, "dbClusterParameterGroupName": "some-cluster-params"}


def _eq(got: Any, want: Any) -> None:
    assert got == want, (got, want)


def _restore_with(cluster: Cluster, namespace: str, source: dict[str, str], target: dict[str, Any]) -> None:
    cluster.apply(dbrestore("f", namespace, source, target))
    obj = wait_phase(cluster, "f", namespace, "Available", "Failed")
    assert obj["status"]["phase"] == "Available", obj["status"]


@pytest.mark.parametrize("field", sorted(INSTANCE))
def test_instance_field_takes_effect(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str, field: str
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "fields")
    setup, check = INSTANCE[field]
    wanted = setup(rds, src)
    _restore_with(
        cluster, namespace, {"dbSnapshot": src.snapshot_identifier}, {"identifier": "fields-copy", field: wanted}
    )
    check(rds.describe_db_instances(DBInstanceIdentifier="fields-copy")["DBInstances"][0], wanted)


def test_option_group_takes_effect_on_an_instance(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    # moto knows option groups for MySQL (not for PostgreSQL 16): the source is a MySQL instance.
    rds = fake_aws.client("rds")
    src = seed_instance(
        rds, "og", engine="mysql", engine_version="8.0.35", parameter_group_family="mysql8.0", port=3306
    )
    rds.create_option_group(
        OptionGroupName="other-options", EngineName="mysql", MajorEngineVersion="8.0", OptionGroupDescription="x"
    )
    _restore_with(
        cluster,
        namespace,
        {"dbSnapshot": src.snapshot_identifier},
        {"identifier": "og-copy", "optionGroupName": "other-options"},
    )
    db = rds.describe_db_instances(DBInstanceIdentifier="og-copy")["DBInstances"][0]
    assert [g["OptionGroupName"] for g in db["OptionGroupMemberships"]] == ["other-options"]


@pytest.mark.parametrize("field", sorted(INSTANCE_REFUSED))
def test_cluster_field_is_refused_on_an_instance_source(cluster: Cluster, own_namespace: str, field: str) -> None:
    obj = dbrestore("r", own_namespace, {"dbSnapshot": "snap"}, {"identifier": "copy", field: INSTANCE_REFUSED[field]})
    proc = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=_yaml(obj), check=False)
    assert proc.returncode != 0 and f"spec.target.{field}" in proc.stderr, proc.stderr


# --- Aurora clusters (source: a DB cluster snapshot) -----------------------------------------------


def _members(rds: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = rds.describe_db_instances(
        Filters=[{"Name": "db-cluster-id", "Values": ["cfields-copy"]}]
    )["DBInstances"]
    assert found
    return found


def _cluster_parameter_group(rds: Any, src: Seeded) -> str:
    rds.create_db_cluster_parameter_group(
        DBClusterParameterGroupName="other-cluster-params",
        DBParameterGroupFamily="aurora-postgresql16",
        Description="x",
    )
    return "other-cluster-params"


CLUSTER: dict[str, tuple[Setup, Callable[[Any, dict[str, Any], Any], None]]] = {
    "dbSubnetGroupName": (_new_subnet_group, lambda rds, c, v: _eq(c["DBSubnetGroup"], v)),
    "vpcSecurityGroupIds": (
        _new_security_group,
        lambda rds, c, v: _eq([g["VpcSecurityGroupId"] for g in c["VpcSecurityGroups"]], v),
    ),
    "dbClusterParameterGroupName": (_cluster_parameter_group, lambda rds, c, v: _eq(c["DBClusterParameterGroup"], v)),
    "dbParameterGroupName": (
        _new_parameter_group("aurora-postgresql16"),
        lambda rds, c, v: _eq({m["DBParameterGroups"][0]["DBParameterGroupName"] for m in _members(rds)}, {v}),
    ),
    "storageType": (_const("aurora-iopt1"), lambda rds, c, v: _eq(c["StorageType"], v)),
    "port": (_const(6543), lambda rds, c, v: _eq(c["Port"], v)),
    "publiclyAccessible": (_const(True), lambda rds, c, v: _eq({m["PubliclyAccessible"] for m in _members(rds)}, {v})),
    "deletionProtection": (_const(True), lambda rds, c, v: _eq(c["DeletionProtection"], v)),
    "iamDatabaseAuthentication": (_const(True), lambda rds, c, v: _eq(c["IAMDatabaseAuthenticationEnabled"], v)),
    "tags": (
        _const({"cost-centre": "4711"}),
        lambda rds, c, v: _eq({tags(m)["cost-centre"] for m in [c, *_members(rds)]}, {"4711"}),
    ),
    "instances": (
        _const({"count": 2, "dbInstanceClass": "db.r6g.xlarge"}),
        lambda rds, c, v: _eq(
            sorted((m["DBInstanceIdentifier"], m["DBInstanceClass"]) for m in _members(rds)),
            [("cfields-copy-1", "db.r6g.xlarge"), ("cfields-copy-2", "db.r6g.xlarge")],
        ),
    ),
}
CLUSTER_REFUSED = {
    "dbInstanceClass": "db.r6g.large",
    "multiAZ": True,
    "optionGroupName": "some-options",
    "storageType": "gp3",
}


@pytest.mark.parametrize("field", sorted(CLUSTER))
def test_cluster_field_takes_effect(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str, field: str
) -> None:
    rds = fake_aws.client("rds")
    src = seed_cluster(rds, "cfields")
    setup, check = CLUSTER[field]
    wanted = setup(rds, src)
    target = {"identifier": "cfields-copy", field: wanted}
    _restore_with(cluster, namespace, {"dbClusterSnapshot": src.snapshot_identifier}, target)
    check(rds, rds.describe_db_clusters(DBClusterIdentifier="cfields-copy")["DBClusters"][0], wanted)


@pytest.mark.parametrize("field", sorted(CLUSTER_REFUSED))
def test_instance_field_is_refused_on_a_cluster_source(cluster: Cluster, own_namespace: str, field: str) -> None:
    target = {"identifier": "copy", field: CLUSTER_REFUSED[field]}
    obj = dbrestore("r", own_namespace, {"dbClusterSnapshot": "snap"}, target)
    proc = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=_yaml(obj), check=False)
    assert proc.returncode != 0 and f"spec.target.{field}" in proc.stderr, proc.stderr


def _yaml(obj: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(obj)
