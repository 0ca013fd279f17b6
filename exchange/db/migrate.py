"""Run a role's Alembic migrations.

Each role keeps its own migration history (``exchange/<role>/migrations``) and its own version
table (``alembic_version_<role>``), so several roles may share one PostgreSQL database without
stepping on each other, and each database holds only the tables its role uses.
"""

from __future__ import annotations

from types import ModuleType

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, MetaData


def alembic_config(role: str, engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", f"exchange.{role}:migrations")
    config.attributes["engine"] = engine
    config.attributes["version_table"] = f"alembic_version_{role}"
    return config


def upgrade(role: str, engine: Engine, revision: str = "head") -> None:
    """Bring ``engine``'s database to ``revision`` of ``role``'s schema."""
    command.upgrade(alembic_config(role, engine), revision)


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
