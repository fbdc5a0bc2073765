"""Alembic migrations of the audit database (run by dbops.audit.migrate, never by hand)."""
