"""join the two lines that grew from 0007: enrolment codes and signed catalogues

Revision ID: 0010_merge_enrolment_signed_catalogue
Revises: 0009_application_receipts, 0008_signed_catalogue
Create Date: 2026-12-01 23:58:00

Nothing to change: the two lines touch different tables. Joined so that ``head`` is one
revision again.
"""

revision = "0010_merge_enrolment_signed_catalogue"
down_revision = ("0009_application_receipts", "0008_signed_catalogue")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
