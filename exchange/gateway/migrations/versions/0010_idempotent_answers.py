"""idempotent answers: what a request with an Idempotency-Key was answered, for its retries

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 11:00:00
"""

import sqlalchemy as sa
from alembic import op

import exchange.db.types

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gw_idempotent_answers",
        sa.Column("client", sa.String(length=1100), nullable=False),
        sa.Column("service", sa.String(length=1100), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("content_type", sa.String(length=255), nullable=True),
        sa.Column("error_type", sa.String(length=255), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=True),
        sa.Column("legal_basis", sa.String(length=500), nullable=True),
        sa.Column("consent", sa.String(length=255), nullable=True),
        sa.Column("created_at", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", exchange.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client", "service", "key", name=op.f("pk_gw_idempotent_answers")),
    )
    with op.batch_alter_table("gw_idempotent_answers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_gw_idempotent_answers_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("gw_idempotent_answers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gw_idempotent_answers_expires_at"))
    op.drop_table("gw_idempotent_answers")
