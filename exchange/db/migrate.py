"""Run a role's Alembic migrations.

Each role keeps its own migration history (``exchange/<role>/migrations``) and its own version
table (``alembic_version_<role>``), so several roles may share one PostgreSQL database without
stepping on each other, and each database holds only the tables its role uses.
"""

from __future__ import annotations

from types import ModuleType

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData

from exchange.errors import ServiceUnavailable


def alembic_config(role: str, engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", f"exchange.{role}:migrations")
    config.attributes["engine"] = engine
    config.attributes["version_table"] = f"alembic_version_{role}"
    return config


def upgrade(role: str, engine: Engine, revision: str = "head") -> None:
    """Bring ``engine``'s database to ``revision`` of ``role``'s schema."""
    command.upgrade(alembic_config(role, engine), revision)


def require_head(role: str, engine: Engine) -> None:
    """Refuse (503) a database that is not at ``role``'s newest schema: for a process that must
    not migrate it itself (a gateway's worker, whose parent migrates once for all of them)."""
    config = alembic_config(role, engine)
    wanted = set(ScriptDirectory.from_config(config).get_heads())
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": config.attributes["version_table"]}
        )
        found = set(context.get_current_heads())
    if found != wanted:
        raise ServiceUnavailable(
            f"the {role} database is at schema {', '.join(sorted(found)) or 'none'}, this "
            f"code needs {', '.join(sorted(wanted))}: restart the whole gateway to migrate it"
        )


def run_env(context: ModuleType, metadata: MetaData | list[MetaData]) -> None:
    """Body of every role's ``env.py``: migrate the engine handed over in the config."""
    config = context.config
    engine: Engine = config.attributes["engine"]
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table=config.attributes["version_table"],
            render_as_batch=engine.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
