"""enrolment codes: the serials of the certificates a code was used for, so that a gateway whose
answer was lost can ask again with the same keys and get the same certificates

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 05:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ca_enrolment_codes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signing_serial", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("tls_serial", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ca_enrolment_codes", schema=None) as batch_op:
        batch_op.drop_column("tls_serial")
        batch_op.drop_column("signing_serial")
