"""Database plumbing shared by every role: engines from URLs and Alembic migrations."""
