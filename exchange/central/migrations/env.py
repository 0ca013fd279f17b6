from alembic import context

from exchange.central.models import Base
from exchange.db.migrate import run_env

run_env(context, Base.metadata)
