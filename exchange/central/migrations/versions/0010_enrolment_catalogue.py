"""join the two lines that grew from 0007: enrolment codes and signed catalogues

Revision ID: 0010_enrolment_catalogue
Revises: 0009_application_receipts, 0008_signed_catalogue
Create Date: 2026-12-01 23:58:00

Nothing to change: the two lines touch different tables. Joined so that ``head`` is one
revision again. (Revision ids stay within 32 characters: the width of Alembic's version column
on PostgreSQL.)
"""

revision = "0010_enrolment_catalogue"
down_revision = ("0009_application_receipts", "0008_signed_catalogue")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
