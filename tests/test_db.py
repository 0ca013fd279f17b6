from __future__ import annotations

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
