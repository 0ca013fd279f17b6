from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import text

from exchange.db.engine import build_engine


@pytest.mark.parametrize(("mode", "value"), [("FULL", 2), ("NORMAL", 1)])
def test_sqlite_runs_wal_with_the_chosen_durability(tmp_path: Path, mode: str, value: int) -> None:
    engine = build_engine(f"sqlite:///{tmp_path / 'x.db'}", sqlite_synchronous=mode)
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA synchronous")).scalar() == value
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_unknown_durability_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sqlite_synchronous"):
        build_engine(f"sqlite:///{tmp_path / 'x.db'}", sqlite_synchronous="OFF")


def test_a_database_an_older_version_left_open_to_every_user_is_closed(tmp_path: Path) -> None:
    older = tmp_path / "role.db"
    older.touch(mode=0o644)
    older.chmod(0o644)
    build_engine(f"sqlite:///{older}").dispose()
    assert older.stat().st_mode & 0o777 == 0o640  # the group, as its operator may have meant


def test_a_new_sqlite_database_is_private(tmp_path: Path) -> None:
    previous = os.umask(0)  # the most permissive umask: the database must not rely on it
    try:
        engine = build_engine(f"sqlite:///{tmp_path / 'role' / 'role.db'}")
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (x INTEGER)"))
            connection.execute(text("INSERT INTO t VALUES (1)"))
        files = sorted((tmp_path / "role").iterdir())
    finally:
        os.umask(previous)
    assert [f.name for f in files] == ["role.db", "role.db-shm", "role.db-wal"]
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    assert (tmp_path / "role").stat().st_mode & 0o777 == 0o700
    engine.dispose()


def test_an_existing_database_and_folder_keep_their_modes(tmp_path: Path) -> None:
    (tmp_path / "x.db").touch(mode=0o640)
    (tmp_path / "x.db").chmod(0o640)
    engine = build_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    assert (tmp_path / "x.db").stat().st_mode & 0o777 == 0o640
    engine.dispose()
