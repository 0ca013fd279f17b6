from alembic import context

from exchange.consent.models import Base
from exchange.db.migrate import run_env

run_env(context, Base.metadata)
