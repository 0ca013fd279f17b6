"""preview document: a preview of an EDM document distribution (a PDF) keeps what the registry
declared of the document (media type, length, SHA-256), shown to the person and checked again
at release

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 02:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gw_previews", schema=None) as batch_op:
        batch_op.add_column(sa.Column("document", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gw_previews", schema=None) as batch_op:
        batch_op.drop_column("document")
