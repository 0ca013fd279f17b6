from alembic import context

from exchange.db.migrate import run_env
from exchange.gateway.models import Base

run_env(context, Base.metadata)
