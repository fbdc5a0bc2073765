"""The PostgreSQL fixture gives each test its own empty database on the server .ci/run started."""

from __future__ import annotations

import sqlalchemy


def test_each_test_gets_a_fresh_database(pg_url: str) -> None:
    engine = sqlalchemy.create_engine(pg_url)
    with engine.begin() as conn:
        assert conn.execute(sqlalchemy.text("select current_database()")).scalar() == pg_url.rsplit("/", 1)[1]
        tables = conn.execute(sqlalchemy.text("select count(*) from pg_tables where schemaname = 'public'")).scalar()
        assert tables == 0
        version = conn.execute(sqlalchemy.text("show server_version")).scalar()
        assert str(version).split(".")[0].isdigit()
    engine.dispose()
