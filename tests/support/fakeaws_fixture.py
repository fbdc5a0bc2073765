"""pytest fixtures and seeding helpers for the fake AWS server (tests/support/fakeaws.py).

``fake_aws_server`` (session) runs one server subprocess; ``fake_aws`` (function) resets it before each
test. Code under test reaches it through ``FakeAWS.env()`` (``AWS_ENDPOINT_URL`` etc.) only.

PYTEST_DONT_REWRITE (no asserts here): it may be imported before pytest_plugins loads it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTROL = "/_fakeaws"
STARTUP_TIMEOUT = 120.0  # moto imports slowly on a loaded machine


class FakeAWS:
    """Handle on a running fake AWS server: endpoint, boto3 clients and the control API."""

    def __init__(self, endpoint: str, pid: int | None = None) -> None:
        self.endpoint = endpoint
        self.pid = pid  # the server process (benchmarks count its CPU)
        self._http = requests.Session()

    def env(self) -> dict[str, str]:
        """Environment for a child process (e.g. the operator) to use this server as AWS."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(
        self, service: str, region: str = "us-east-1", *, config: Config | None = None, account: str | None = None
    ) -> Any:
        """A boto3 client of the stand-in; `account`: in that account (moto serves an assumed role's
        credentials from the role's account), for what a tenant role must find there."""
        keys: dict[str, str] = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        if account is not None:
            role = f"arn:aws:iam::{account}:role/fakeaws-seeder"
            creds = self.client("sts").assume_role(RoleArn=role, RoleSessionName="seed")["Credentials"]
            keys = {
                "aws_access_key_id": creds["AccessKeyId"],
                "aws_secret_access_key": creds["SecretAccessKey"],
                "aws_session_token": creds["SessionToken"],
            }
        return boto3.client(  # type: ignore[call-overload]
            service, endpoint_url=self.endpoint, region_name=region, config=config, **keys
        )

    def _control(self, method: str, route: str, payload: dict[str, Any] | None = None) -> Any:
        response = self._http.request(method, f"{self.endpoint}{CONTROL}/{route}", json=payload, timeout=30)
        response.raise_for_status()
        return response.json()

    def configure(self, create_seconds: float | None = None, delete_seconds: float | None = None) -> dict[str, float]:
        """Set the RDS lifecycle durations (only the ones given); returns the whole config."""
        changes = {"create_seconds": create_seconds, "delete_seconds": delete_seconds}
        result: dict[str, float] = self._control(
            "POST", "config", {key: value for key, value in changes.items() if value is not None}
        )
        return result

    def config(self) -> dict[str, float]:
        result: dict[str, float] = self._control("GET", "config")
        return result

    def inject_fault(
        self,
        action: str,
        code: str,
        status: int = 400,
        message: str = "Injected by fakeaws",
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``action`` fail (``times < 0``: all of them)."""
        self._control(
            "POST",
            "faults",
            {"action": action, "code": code, "status": status, "message": message, "times": times},
        )

    def delay(self, action: str, seconds: float, times: int = 1) -> None:
        """Carry out the next ``times`` calls of ``action`` at once, but answer each after ``seconds``."""
        self._control("POST", "delays", {"action": action, "seconds": seconds, "times": times})

    def clear_faults(self) -> None:
        self._control("DELETE", "faults")

    def calls(self) -> dict[str, int]:
        """AWS calls received since the last reset, by action name (injected failures included)."""
        result: dict[str, int] = self._control("GET", "calls")
        return result

    def reset_calls(self) -> None:
        self._control("DELETE", "calls")

    def signed(self) -> tuple[list[dict[str, str]], dict[str, dict[str, Any]]]:
        """Who signed each call since the last reset: [{"action", "access_key"}] in order, and for each
        access key from AssumeRole, {"role_arn", "external_id", "session_name", "tags"}."""
        result = self._control("GET", "signed")
        return list(result["calls"]), dict(result["sessions"])

    def ses_messages(self) -> list[dict[str, Any]]:
        """E-mails sent through SES: region, source, subject, body, destinations."""
        result: list[dict[str, Any]] = self._control("GET", "ses-messages")
        return result

    def age(self, identifier: str, seconds: float) -> None:
        """Make a DB instance or cluster `seconds` older (its creation time moves into the past)."""
        aged = self._control("POST", "age", {"identifier": identifier, "seconds": seconds})["aged"]
        if not aged:
            raise LookupError(f"no DB instance or cluster {identifier} to age")

    def restores_to(self, snapshot: str, address: str, port: int, *, create_seconds: float | None = None) -> None:
        """Whatever is restored from `snapshot` answers at address:port (where a test put the snapshot's
        data), and takes `create_seconds` to become available when given."""
        payload = {"snapshot": snapshot, "address": address, "port": port, "create_seconds": create_seconds}
        self._control("POST", "restores", payload)

    def reset(self) -> None:
        """Forget all AWS state, faults, call counts and config."""
        self._control("POST", "reset")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_up(proc: subprocess.Popen[bytes], endpoint: str) -> bool:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{endpoint}{CONTROL}/config", timeout=2).ok:
                return True
        time.sleep(0.2)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_server(log_path: Path, **extra_env: str) -> tuple[FakeAWS, subprocess.Popen[bytes]]:
    """Start the fake AWS server as a subprocess (`extra_env`: e.g. FAKEAWS_ENDPOINT_HASH); the caller
    stops it with `stop_server`."""
    # moto keeps an automated snapshot of every instance and counts it against a quota of 1,000
    # snapshots: the scale benchmark's 10,000 databases need more.
    env = {"MOTO_RDS_SNAPSHOT_LIMIT": "100000", **os.environ, "PYTHONUNBUFFERED": "1", **extra_env}
    for _attempt in range(3):  # the free port may be taken between probe and bind
        port = _free_port()
        endpoint = f"http://127.0.0.1:{port}"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.support.fakeaws", "--host", "127.0.0.1", "--port", str(port)],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if _wait_until_up(proc, endpoint):
            return FakeAWS(endpoint, proc.pid), proc
        _stop(proc)
    raise RuntimeError(f"fake AWS server did not start; log {log_path}:\n{log_path.read_text()}")


stop_server = _stop


@contextlib.contextmanager
def running(log_path: Path) -> Iterator[FakeAWS]:
    """A fake AWS server subprocess for the duration of the block."""
    fake, proc = start_server(log_path)
    try:
        yield fake
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def fake_aws_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeAWS]:
    """One fake AWS server subprocess for the whole session."""
    with running(tmp_path_factory.mktemp("fakeaws") / "server.log") as fake:
        yield fake


@pytest.fixture
def fake_aws(fake_aws_server: FakeAWS) -> FakeAWS:
    """The session's fake AWS server, reset to empty with default config and no faults."""
    fake_aws_server.reset()
    return fake_aws_server


# --- Seeding --------------------------------------------------------------------------------------


@dataclass
class Seeded:
    """What a seed helper created; restores are expected to copy or reuse these."""

    identifier: str  # DB instance or cluster identifier
    snapshot_identifier: str
    subnet_group: str
    security_group_ids: list[str]
    parameter_group: str
    port: int
    tags: list[dict[str, str]]
    instance_identifiers: list[str] = field(default_factory=list)  # cluster members


@contextlib.contextmanager
def _untimed(rds: Any) -> Iterator[None]:
    """Create things available at once (create_seconds 0), then restore the server's config."""
    control = f"{rds.meta.endpoint_url.rstrip('/')}{CONTROL}/config"
    before = requests.get(control, timeout=30).json()
    requests.post(control, json={"create_seconds": 0}, timeout=30).raise_for_status()
    try:
        yield
    finally:
        requests.post(control, json={"create_seconds": before["create_seconds"]}, timeout=30)


def _network(rds: Any, name: str) -> tuple[str, list[str]]:
    """A VPC with two subnets in two AZs, a DB subnet group over them and a security group, in the
    account of the RDS client's credentials (an assumed role's are another account's)."""
    creds = rds._request_signer._credentials.get_frozen_credentials()
    ec2 = boto3.client(
        "ec2",
        endpoint_url=rds.meta.endpoint_url,
        region_name=rds.meta.region_name,
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        aws_session_token=creds.token,
    )
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet_ids = [
        ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"10.0.{index}.0/24", AvailabilityZone=f"{rds.meta.region_name}{az}")[
            "Subnet"
        ]["SubnetId"]
        for index, az in enumerate("ab")
    ]
    group_id = ec2.create_security_group(GroupName=f"{name}-db", Description=f"{name} db", VpcId=vpc_id)["GroupId"]
    rds.create_db_subnet_group(DBSubnetGroupName=f"{name}-subnets", DBSubnetGroupDescription=name, SubnetIds=subnet_ids)
    return f"{name}-subnets", [group_id]


def seed_instance(
    client: Any,
    identifier: str,
    engine: str = "postgres",
    *,
    engine_version: str = "16.3",
    parameter_group_family: str = "postgres16",
    instance_class: str = "db.t3.micro",
    port: int = 5432,
    tags: dict[str, str] | None = None,
    snapshot_identifier: str | None = None,
    master_username: str = "dbadmin",
) -> Seeded:
    """A source DB instance (with its own subnet group, security group, parameter group and tags)
    plus a manual snapshot of it, both available at once. ``client`` is an RDS client."""
    tag_list = [{"Key": key, "Value": value} for key, value in (tags or {"team": "dbops"}).items()]
    snapshot_identifier = snapshot_identifier or f"{identifier}-snapshot"
    with _untimed(client):
        subnet_group, security_group_ids = _network(client, identifier)
        parameter_group = f"{identifier}-params"
        client.create_db_parameter_group(
            DBParameterGroupName=parameter_group,
            DBParameterGroupFamily=parameter_group_family,
            Description=identifier,
        )
        client.create_db_instance(
            DBInstanceIdentifier=identifier,
            Engine=engine,
            EngineVersion=engine_version,
            DBInstanceClass=instance_class,
            AllocatedStorage=20,
            MasterUsername=master_username,
            MasterUserPassword="not-a-secret-1",
            DBSubnetGroupName=subnet_group,
            VpcSecurityGroupIds=security_group_ids,
            DBParameterGroupName=parameter_group,
            Port=port,
            Tags=tag_list,
        )
        client.create_db_snapshot(DBInstanceIdentifier=identifier, DBSnapshotIdentifier=snapshot_identifier)
    return Seeded(identifier, snapshot_identifier, subnet_group, security_group_ids, parameter_group, port, tag_list)


def seed_cluster(
    client: Any,
    identifier: str,
    engine: str = "aurora-postgresql",
    *,
    engine_version: str = "16.4",
    parameter_group_family: str = "aurora-postgresql16",
    instance_class: str = "db.r6g.large",
    port: int = 5432,
    tags: dict[str, str] | None = None,
    snapshot_identifier: str | None = None,
    network: str | None = None,
) -> Seeded:
    """A source Aurora cluster (subnet group, security group, cluster parameter group, tags) with a
    writer instance, plus a manual cluster snapshot, all available at once. ``client``: RDS client."""
    tag_list = [{"Key": key, "Value": value} for key, value in (tags or {"team": "dbops"}).items()]
    snapshot_identifier = snapshot_identifier or f"{identifier}-snapshot"
    writer = f"{identifier}-writer"
    with _untimed(client):
        # `network`: the name of its subnet and security groups, when an instance of the same name has them.
        subnet_group, security_group_ids = _network(client, network or identifier)
        parameter_group = f"{identifier}-cluster-params"
        client.create_db_cluster_parameter_group(
            DBClusterParameterGroupName=parameter_group,
            DBParameterGroupFamily=parameter_group_family,
            Description=identifier,
        )
        client.create_db_cluster(
            DBClusterIdentifier=identifier,
            Engine=engine,
            EngineVersion=engine_version,
            MasterUsername="dbadmin",
            MasterUserPassword="not-a-secret-1",
            DBSubnetGroupName=subnet_group,
            VpcSecurityGroupIds=security_group_ids,
            DBClusterParameterGroupName=parameter_group,
            Port=port,
            Tags=tag_list,
        )
        client.create_db_instance(
            DBInstanceIdentifier=writer,
            DBClusterIdentifier=identifier,
            Engine=engine,
            DBInstanceClass=instance_class,
            Tags=tag_list,
        )
        client.create_db_cluster_snapshot(
            DBClusterIdentifier=identifier, DBClusterSnapshotIdentifier=snapshot_identifier
        )
    return Seeded(
        identifier,
        snapshot_identifier,
        subnet_group,
        security_group_ids,
        parameter_group,
        port,
        tag_list,
        [writer],
    )
