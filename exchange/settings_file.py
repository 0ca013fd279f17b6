"""How every role reads its settings: one loader, one naming of environment variables.

A role's settings come from three places, later ones winning:

1. its TOML file, if the role has one (``exchange gateway|consent|portal ... -c FILE``); relative
   paths in it are taken from the file's folder;
2. the environment: ``EXCHANGE_<ROLE>_<KEY>`` for a top-level key and
   ``EXCHANGE_<ROLE>_<SECTION>_<KEY>`` for a key of a ``[section]``
   (``EXCHANGE_GATEWAY_DATABASE_URL``, ``EXCHANGE_GATEWAY_PREVIEW_CLIENT_SECRET``,
   ``EXCHANGE_CENTRAL_PORT``), for single values (text, numbers, booleans, durations, paths), not
   lists or tables. A variable for a section
   that the file leaves out and that has no default is ignored; an empty variable is no value;
3. the command line's options.

The central authority has no file: it is configured by its variables and options alone.
"""

from __future__ import annotations

import os
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from exchange.errors import InvalidRequest

Model = TypeVar("Model", bound="RoleSettings")


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


class RoleSettings(Strict):
    """A role's settings, loaded by :meth:`load`."""

    prefix: ClassVar[str]  # of its environment variables, e.g. "EXCHANGE_GATEWAY_"
    kind: ClassVar[str]  # how messages name it, e.g. "gateway"
    relative: ClassVar[tuple[str, ...]] = ("data_dir", "anchor")  # paths from its file
    aliases: ClassVar[Mapping[str, tuple[str, ...]]] = {}  # older variable names -> key path

    @classmethod
    def load(
        cls,
        path: Path | None = None,
        *,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Self:
        return load(cls, path, overrides=overrides, environ=environ)

    @classmethod
    def from_file(cls, raw: dict[str, Any], folder: Path) -> None:
        """Take the file's relative paths (keys in ``relative``) from its ``folder``."""
        for key in cls.relative:
            if key in raw:
                raw[key] = str(folder / raw[key])


def load(
    model: type[Model],
    path: Path | None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Model:
    """``model`` from ``path`` (if any), then ``environ`` (default: the process's), then
    ``overrides``; every failure is an :class:`InvalidRequest` naming the key."""
    where = f"{model.kind} settings {path}" if path else f"{model.kind} settings"
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InvalidRequest(f"cannot read {where}: {exc}") from exc
        model.from_file(raw, path.resolve().parent)
    given = _from_environment(model, raw, os.environ if environ is None else environ)
    raw.update({key: value for key, value in (overrides or {}).items() if value is not None})
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(str(p) for p in first["loc"])
        source = f" (from {given[loc]})" if loc in given else ""
        raise InvalidRequest(f"{where}: {'.'.join(loc)}: {first['msg']}{source}") from exc


def _from_environment(
    model: type[RoleSettings], raw: dict[str, Any], environ: Mapping[str, str]
) -> dict[tuple[str, ...], str]:
    """Write the role's variables into ``raw``; answer which key came from which variable."""
    given: dict[tuple[str, ...], str] = {}

    def put(keys: tuple[str, ...], variable: str) -> None:
        value = environ.get(variable)
        if not value:
            return
        target = raw
        if len(keys) == 2:  # a key of a section
            section, field = keys[0], model.model_fields[keys[0]]
            if section not in raw:
                if isinstance(field.default, BaseModel):
                    raw[section] = field.default.model_dump()
                elif field.default_factory is not None:  # a section made whole by default
                    raw[section] = field.get_default(call_default_factory=True).model_dump()
                elif field.is_required():
                    raw[section] = {}
                else:
                    return  # an optional section the file leaves out stays out
            target = raw[section]
        target[keys[-1]] = value
        given[keys] = variable

    for name, field in model.model_fields.items():
        section = _section(field.annotation)
        if section is None:
            if _single(field.annotation):
                put((name,), f"{model.prefix}{name.upper()}")
            continue
        for key, inner in section.model_fields.items():
            if _single(inner.annotation):
                put((name, key), f"{model.prefix}{name.upper()}_{key.upper()}")
    for variable, keys in model.aliases.items():
        put(keys, variable)
    return given


def _choices(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(a for a in get_args(annotation) if a is not type(None))
    return (annotation,)


def _section(annotation: Any) -> type[BaseModel] | None:
    for choice in _choices(annotation):
        if isinstance(choice, type) and issubclass(choice, BaseModel):
            return choice
    return None


def _single(annotation: Any) -> bool:
    """A value an environment variable can carry: not a list, table or section."""
    return not any(
        get_origin(choice) in (list, dict, tuple, set)
        or (isinstance(choice, type) and issubclass(choice, list | dict | tuple | set | BaseModel))
        for choice in _choices(annotation)
    )
