"""audit_records: room for the longest usernames, and whether the requester was verified.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        batch.alter_column("requester", type_=sa.String(512), existing_type=sa.String(253), existing_nullable=True)
        batch.add_column(sa.Column("requester_verified", sa.Boolean, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        batch.drop_column("requester_verified")
        batch.alter_column("requester", type_=sa.String(253), existing_type=sa.String(512), existing_nullable=True)
