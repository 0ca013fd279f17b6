"""What every role's TOML settings file shares: strict models, relative paths, one loader."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from exchange.errors import InvalidRequest

Model = TypeVar("Model", bound=BaseModel)


class Strict(BaseModel):
    """Unknown keys are mistakes (a typo must not silently fall back to a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Listen(Strict):
    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)


class OidcClient(Strict):
    """This role as a client of the OIDC issuer citizens sign in with."""

    issuer: str
    jwks_url: str
    client_id: str
    client_secret: str | None = None


def load(
    model: type[Model],
    path: Path,
    *,
    kind: str,
    paths: Sequence[str] = ("data_dir", "anchor"),
    environment: Mapping[str, tuple[str, ...]] | None = None,
) -> Model:
    """Read ``path`` as ``model``: keys in ``paths`` are taken relative to the file's folder;
    ``environment`` maps a variable to the key (path) it overrides, for secrets and URLs that
    should not live in the file."""
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidRequest(f"cannot read {kind} settings {path}: {exc}") from exc
    base = path.resolve().parent
    for key in paths:
        if key in raw:
            raw[key] = str(base / raw[key])
    for variable, keys in (environment or {}).items():
        if value := os.environ.get(variable):
            target = raw
            for key in keys[:-1]:
                target = target.setdefault(key, {})
            target[keys[-1]] = value
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(f"{kind} settings {path}: {where}: {first['msg']}") from exc
