from alembic import context

from exchange.db.migrate import run_env
from exchange.portal.models import metadata

run_env(context, metadata)
