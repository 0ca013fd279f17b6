"""applicants' receipts: the code of their gateway sealed to the receipt's key

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 23:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ca_applications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("receipt_key", sa.String(length=64), nullable=True))
    with op.batch_alter_table("ca_enrolment_codes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sealed", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ca_enrolment_codes", schema=None) as batch_op:
        batch_op.drop_column("sealed")
    with op.batch_alter_table("ca_applications", schema=None) as batch_op:
        batch_op.drop_column("receipt_key")
