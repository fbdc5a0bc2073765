"""Shared bits of the verification and drill tests: the data "in a snapshot", held by a real local database.

The fake AWS is told where a snapshot's data lives (`FakeAWS.restores_to`): an instance restored from it
answers at that address, so the operator's probes run for real against PostgreSQL (hack/postgres.sh) or
MariaDB (hack/mariadb.sh). Each test gets databases and users of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

from tests.e2e.obs_helpers import secret
from tests.support.fakeaws_fixture import FakeAWS, seed_instance
from tests.support.kube import Cluster

# Rows "in the snapshot": three orders, one with an e-mail address that must never reach status or events.
ORDERS = [(1, "alice@example.com", 120.5), (2, "bob@example.com", 80.0), (3, "carol@example.com", 42.25)]
PRIVATE = "alice@example.com"
MOTO_MANAGED_PASSWORD = "P@55w0rd!"  # what moto's RDS puts in every managed master user secret


@dataclass(frozen=True)
class SnapshotData:
    """A database holding a snapshot's data, and the master user a restore of it has."""

    host: str
    port: int
    database: str
    user: str
    password: str


def _require(variable: str, how: str) -> str:
    value = os.environ.get(variable)
    if not value:
        pytest.fail(f"{variable} is not set: {how}")
    return value


def postgres_admin() -> str:
    return _require(
        "DBOPS_TEST_POSTGRES",
        "start PostgreSQL with `make postgres` (hack/postgres.sh) and export the URL it prints",
    )


def mariadb_admin() -> tuple[str, str]:
    how = "start MariaDB with `make mariadb` (hack/mariadb.sh; `make test` does) and export what it prints"
    return _require("DBOPS_TEST_MARIADB", how), _require("DBOPS_TEST_MARIADB_CA", how)


def _load_orders(conn: Any) -> None:
    conn.execute(sqlalchemy.text("CREATE TABLE orders (id INTEGER PRIMARY KEY, email VARCHAR(200), total NUMERIC)"))
    for row in ORDERS:
        conn.execute(sqlalchemy.text("INSERT INTO orders VALUES (:i, :e, :t)"), {"i": row[0], "e": row[1], "t": row[2]})


def postgres_data() -> Iterator[SnapshotData]:
    """A PostgreSQL database with the orders, and a login role as its master user (the test server trusts
    loopback connections: any password is accepted, the secret read path is what is proven)."""
    admin = make_url(postgres_admin())
    name = f"snap_{uuid.uuid4().hex[:10]}"
    user = f"drill_{uuid.uuid4().hex[:10]}"
    engine = sqlalchemy.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE ROLE "{user}" LOGIN'))
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    db = sqlalchemy.create_engine(admin.set(database=name), isolation_level="AUTOCOMMIT")
    with db.connect() as conn:
        _load_orders(conn)
        conn.execute(sqlalchemy.text(f'GRANT SELECT ON orders TO "{user}"'))
    db.dispose()
    try:
        yield SnapshotData(admin.host or "127.0.0.1", admin.port or 5432, name, user, "drill-password-1")
    finally:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sqlalchemy.text(f'DROP ROLE IF EXISTS "{user}"'))
        engine.dispose()


def mariadb_data(password: str) -> Iterator[SnapshotData]:
    """A MariaDB database with the orders, and a user with `password` (checked by the server)."""
    url, _ = mariadb_admin()
    admin = make_url(url).set(drivername="mysql+pymysql")
    name = f"snap_{uuid.uuid4().hex[:10]}"
    user = f"drill_{uuid.uuid4().hex[:10]}"
    engine = sqlalchemy.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE DATABASE `{name}`"))
        conn.execute(sqlalchemy.text(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY :pw"), {"pw": password})
        conn.execute(sqlalchemy.text(f"GRANT SELECT ON `{name}`.* TO '{user}'@'127.0.0.1'"))
        conn.execute(sqlalchemy.text(f"USE `{name}`"))
        _load_orders(conn)
    try:
        yield SnapshotData(admin.host or "127.0.0.1", admin.port or 3306, name, user, password)
    finally:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS `{name}`"))
            conn.execute(sqlalchemy.text(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'"))
        engine.dispose()


def probes(*items: tuple[str, str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": name, "query": query, "expect": expect} for name, query, expect in items]


GOOD_PROBES = probes(
    ("orders-counted", "SELECT count(*) FROM orders", {"compare": {"op": ">=", "value": 3}}),
    ("orders-listed", "SELECT id FROM orders", {"minRows": 2}),
    ("newest-order", "SELECT max(id) FROM orders", {"equals": "3"}),
)


def restored_from(fake: FakeAWS, data: SnapshotData, name: str, engine: str = "postgres", **kw: Any) -> str:
    """A source instance whose snapshot's data is `data`: its master user is data.user."""
    rds = fake.client("rds")
    version = {"postgres": "16.3", "mariadb": "10.11.9"}[engine]
    family = {"postgres": "postgres16", "mariadb": "mariadb10.11"}[engine]
    src = seed_instance(
        rds, name, engine, engine_version=version, parameter_group_family=family, master_username=data.user, **kw
    )
    fake.restores_to(src.snapshot_identifier, data.host, data.port)
    return src.snapshot_identifier


def mariadb_over_tls(fake: FakeAWS, cluster: Cluster, namespace: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """A MariaDB snapshot whose restore's master user has the password RDS manages (the server checks it),
    and the spec.verify that reaches it over TLS verify-full against the server's CA, from the Secret
    drill-ca in `namespace`."""
    _, ca_file = mariadb_admin()
    for data in mariadb_data(MOTO_MANAGED_PASSWORD):
        snapshot = restored_from(fake, data, "shop", "mariadb")
        with open(ca_file, encoding="utf-8") as f:
            cluster.apply(secret("drill-ca", namespace, **{"ca.crt": f.read()}))
        tls = {"mode": "verify-full", "caSecretRef": {"name": "drill-ca"}}
        yield snapshot, {"database": data.database, "tls": tls, "probes": GOOD_PROBES}
