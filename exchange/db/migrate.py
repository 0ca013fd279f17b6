"""Run a role's Alembic migrations.

Each role keeps its own migration history (``exchange/<role>/migrations``) and its own version
table (``alembic_version_<role>``), so several roles may share one PostgreSQL database without
stepping on each other, and each database holds only the tables its role uses.

Alembic (with mako, which it imports) takes ~10 MB of a process and a quarter of a second to
import. A server checks its database at every start but migrates it only after an upgrade, so
alembic is imported only when the database is not at the newest revisions, which are read from
the role's version files (:func:`newest_revisions`); the tests hold that reading to alembic's.
"""

from __future__ import annotations

import ast
import re
from importlib import resources
from types import ModuleType
from typing import TYPE_CHECKING

from sqlalchemy import Engine, MetaData, inspect, text

from exchange.errors import ServiceUnavailable

if TYPE_CHECKING:
    from alembic.config import Config

# The lines alembic writes into every version file: ``revision = "0012"``, ``down_revision = ...``
_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)


def alembic_config(role: str, engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", f"exchange.{role}:migrations")
    config.attributes["engine"] = engine
    config.attributes["version_table"] = f"alembic_version_{role}"
    return config


def newest_revisions(role: str) -> frozenset[str] | None:
    """``role``'s head revisions, read from its version files without alembic; None when a file
    is not in the form alembic writes (then alembic itself is asked)."""
    revisions: set[str] = set()
    replaced: set[str] = set()
    versions = resources.files(f"exchange.{role}.migrations").joinpath("versions")
    for file in versions.iterdir():
        if not file.name.endswith(".py") or file.name == "__init__.py":
            continue
        found = dict(_REVISION_LINE.findall(file.read_text()))
        try:
            revision = ast.literal_eval(found["revision"])
            down = ast.literal_eval(found["down_revision"])
        except (KeyError, ValueError, SyntaxError):
            return None
        if not isinstance(revision, str):
            return None
        revisions.add(revision)
        replaced.update([down] if isinstance(down, str) else (down or ()))
    return frozenset(revisions - replaced) or None


def current_revisions(role: str, engine: Engine) -> frozenset[str]:
    """The revisions ``engine``'s database is at for ``role`` (none for a new database)."""
    table = f"alembic_version_{role}"
    if not inspect(engine).has_table(table):
        return frozenset()
    with engine.connect() as connection:
        # The table's name is this module's, never outside input.
        found = connection.execute(text(f"SELECT version_num FROM {table}"))  # noqa: S608
        return frozenset(found.scalars())


def _newest(role: str, engine: Engine) -> frozenset[str]:
    known = newest_revisions(role)
    if known is not None:
        return known
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory.from_config(alembic_config(role, engine)).get_heads())


def upgrade(role: str, engine: Engine, revision: str = "head") -> None:
    """Bring ``engine``'s database to ``revision`` of ``role``'s schema."""
    if revision == "head" and current_revisions(role, engine) == newest_revisions(role):
        return  # nothing to do: alembic stays out of the process
    from alembic import command

    command.upgrade(alembic_config(role, engine), revision)


def require_head(role: str, engine: Engine) -> None:
    """Refuse (503) a database that is not at ``role``'s newest schema: for a process that must
    not migrate it itself (a gateway's worker, whose parent migrates once for all of them)."""
    found = current_revisions(role, engine)
    wanted = _newest(role, engine)
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
