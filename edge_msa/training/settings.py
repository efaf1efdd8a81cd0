"""Training configs: TOML files read into strict pydantic models.

Every trainer's config is a :class:`Strict` model (unknown keys are errors)
with a ``kind`` field; ``--set KEY=VALUE`` overrides a key for one run (the
value in TOML syntax, a bare word as a string), and the manifest's command
records it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from edge_msa.config import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def default_data() -> str:
    """The data sets folder: ``$EDGE_MSA_DATA``, else ``../shared/datasets`` from the cwd."""
    return os.environ.get("EDGE_MSA_DATA", "../shared/datasets")


def expand(path: str | Path) -> Path:
    """``~`` and ``$VARS`` expanded: configs name cache folders under the home directory."""
    return Path(os.path.expandvars(str(path))).expanduser()


def read_toml(path: str | Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: {e}") from None


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, such as fold=\"0/2\"")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text  # a bare word: a string
        node = out
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``; a numeric key reaches into a list (``stages.1.lr``)."""
    out = dict(base)
    for key, value in extra.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            out[key] = merge(old, value)
        elif isinstance(value, dict) and isinstance(old, list) and all(k.isdigit() for k in value):
            items = list(old)
            for index, part in value.items():
                i = int(index)
                if i >= len(items):
                    raise ConfigError(f"--set {key}.{index}: {key} has {len(items)} entries")
                items[i] = merge(items[i], part) if isinstance(part, dict) else part
            out[key] = items
        else:
            out[key] = value
    return out


def validate(model: type[M], raw: dict[str, Any], source: str | Path) -> M:
    """``model`` from ``raw``; a bad field is one line naming it."""
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{source}: {where}: {err['msg']}") from None


def load(model: type[M], path: str | Path, overrides: Iterable[str] = ()) -> M:
    return validate(model, merge(read_toml(path), parse_overrides(overrides)), path)
