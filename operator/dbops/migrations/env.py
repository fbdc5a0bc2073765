"""Alembic environment: dbops.audit.migrate passes an open connection in config.attributes."""

from __future__ import annotations

from alembic import context

from dbops import audit

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - dbops always passes a connection
    raise RuntimeError("run migrations through dbops.audit.migrate")
context.configure(
    connection=connection,
    target_metadata=audit.metadata,
    version_table=audit.VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
