from alembic import context

from audit.models import Base as AuditBase
from exchange.db.migrate import run_env
from exchange.gateway.models import Base

run_env(context, [Base.metadata, AuditBase.metadata])
